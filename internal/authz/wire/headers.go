// Package wire is what the data plane's clients send and receive, parsed and built without
// anything but the standard library: the credential sources of a request (headers, Bearer,
// licence headers; a session cookie next), the route requirements a proxy states, the licence
// activation request, the identity an allowed answer carries and the stable reason codes and
// denial bodies. Every parser of outside input lives here, so its fuzz targets build in seconds.
package wire

import "net/textproto"

// Header names the data plane reads and writes. Identity headers are set on allowed requests for
// the upstream; the proxy must overwrite or remove any the client sent (Envoy does, as they are
// answered with OVERWRITE_IF_EXISTS_OR_ADD and listed in headers_to_remove when absent; for nginx
// see internal/e2e/authz/testdata/nginx.conf.tmpl).
const (
	HeaderAPIKey        = "x-api-key"
	HeaderAuthorization = "authorization"
	HeaderKind          = "x-keycap-kind"
	HeaderNamespace     = "x-keycap-namespace"
	HeaderName          = "x-keycap-name"
	HeaderKeyID         = "x-keycap-key-id"
	HeaderScopes        = "x-keycap-scopes"
	HeaderAgent         = "x-keycap-agent"
	HeaderParent        = "x-keycap-parent"
	// HeaderSubject is an AppToken's sub.
	HeaderSubject = "x-keycap-subject"
	// HeaderEntitlements is a licence's entitlements, comma-separated.
	HeaderEntitlements = "x-keycap-entitlements"
	// HeaderAuthMethod is "session" when the SSO session cookie authenticated the request.
	HeaderAuthMethod = "x-keycap-auth-method"
	// HeaderUpstreamCookie carries, on an allowed forward-auth answer to a request the session
	// cookie authenticated, the request's Cookie header without keycap's cookie, for proxies that
	// can replace the upstream Cookie from the answer (nginx: auth_request_set +
	// proxy_set_header Cookie).
	HeaderUpstreamCookie = "x-keycap-cookie"
	// HeaderLicenseKey and HeaderInstanceID carry a licence on a request and on activation.
	HeaderLicenseKey = "licensekey"
	HeaderInstanceID = "instanceid"
	// HeaderReason carries the reason code on every answer (allowed: OK).
	HeaderReason = "x-keycap-reason"
	// HeaderErrorBody carries the JSON denial body as a header too, because nginx's auth_request
	// drops the subrequest's body; the nginx config returns it from an error_page.
	HeaderErrorBody = "x-keycap-error-body"
	// HeaderEnvoyRemove lists, on an allowed HTTP answer, the request headers Envoy's HTTP
	// ext_authz filter removes before the request goes upstream (the gRPC answer's
	// headers_to_remove).
	HeaderEnvoyRemove = "x-envoy-auth-headers-to-remove"
)

// Canonical returns a header name in http.Header's canonical form.
func Canonical(name string) string { return textproto.CanonicalMIMEHeaderKey(name) }

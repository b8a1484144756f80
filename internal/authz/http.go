package authz

import (
	"net/http"
	"time"

	"github.com/keycap-dev/keycap/internal/activation"
	"github.com/keycap-dev/keycap/internal/authz/wire"
	"github.com/keycap-dev/keycap/internal/routepolicy"
	"github.com/keycap-dev/keycap/internal/session"
	"github.com/keycap-dev/keycap/internal/signing"
)

// CheckPath is the forward-auth endpoint on the HTTP port.
const CheckPath = "/check"

// serveCheck answers forward-auth: 200 with identity headers, or 401/403 with a JSON body, the
// reason in x-keycap-reason and the body again in x-keycap-error-body for nginx.
//
// Requirements are read from the query of exactly /check, which is the proxy's configuration: an
// unknown parameter refuses the request (UNKNOWN_PARAMETER) and repeated ones narrow
// (wire.ParseQuery). Under /check/ (Envoy's HTTP ext_authz appends the client's own path and
// query to its path_prefix) the query is the client's, so it is neither read nor refused, and
// the route requires what a RoutePolicy states (or gRPC context_extensions).
func (dp *DataPlane) serveCheck(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	reason := wire.ReasonInternal
	defer func() {
		if recover() != nil {
			reason = wire.ReasonInternal
			dp.httpDenied(w, wire.ReasonInternal)
		}
		durationByProt[1].Observe(time.Since(start).Seconds())
		checkCounters[1][reason].Inc()
	}()
	var form wire.Form
	dp.sources.FromHTTP(r.Header, &form)
	// The original request's method: the check request's own (Envoy's HTTP ext_authz) and any a
	// proxy states (Traefik, Caddy; nginx's auth_request subrequest is always a GET, so its
	// location sets X-Original-Method). Any unsafe one counts.
	form.SetOrigin(r.Header.Get("Sec-Fetch-Site"), r.Header.Get("Origin"),
		r.Method, r.Header.Get("X-Forwarded-Method"), r.Header.Get("X-Original-Method"))
	var req Requirements
	var aud Audience
	var scopes, namespaces, entitlements [4]string
	if r.URL.Path == CheckPath {
		req, aud = wire.ParseQuery(r.URL.RawQuery, scopes[:0], namespaces[:0], entitlements[:0])
		if reason = req.Refusal(); reason != wire.ReasonOK {
			dp.refuseQuery(w, r, reason)
			return
		}
	}
	// A RoutePolicy holding the original request's host adds its matching rules' requirements;
	// where the original host, path and method come from is the deployment's choice
	// (--trusted-request-attributes).
	var rules [4]*routepolicy.Rule
	rc := dp.routes.route(&routepolicy.View{Host: r.Host, Target: r.RequestURI, Method: r.Method, Header: r.Header, CheckPath: CheckPath}, rules[:0])
	rc.addTo(&req, &aud)
	p, d := dp.check(&form, &req, aud)
	rc.judge(&d)
	reason = d.Reason
	if !d.Allowed() {
		dp.httpDeniedBody(w, reason, reason.BodyFor(dp.opts.CompatBodies, p.License))
		return
	}
	// One backing array for every header value: the identity headers (those this kind does not
	// set are sent empty, so that proxies copying the answer's headers upstream, such as
	// Traefik's authResponseHeaders, replace any the client forged), the reason and the headers
	// Envoy's HTTP ext_authz removes upstream (x-envoy-auth-headers-to-remove: the credential
	// headers used and the identity headers this kind does not set, as gRPC's headers_to_remove).
	id := &d.Identity
	vals := make([]string, wire.IdentityHeaderCount+2)
	h := w.Header()
	for i := range wire.IdentityHeaderCount {
		_, canonical, set := id.IdentityHeader(i)
		if set {
			vals[i] = id.Value(i)
		}
		h[canonical] = vals[i : i+1 : i+1]
	}
	vals[wire.IdentityHeaderCount] = wire.ReasonOK.String()
	h[canonicalReason] = vals[wire.IdentityHeaderCount : wire.IdentityHeaderCount+1 : wire.IdentityHeaderCount+1]
	vals[wire.IdentityHeaderCount+1] = dp.sources.Removal(&p, id.Fields).Joined
	h[canonicalEnvoyRemove] = vals[wire.IdentityHeaderCount+1:]
	if p.Session || form.HasCookie() {
		// The Cookie header without keycap's session cookie, for a proxy that replaces the
		// upstream's Cookie from the answer (nginx), so the upstream never sees the session.
		h[canonicalUpstreamCookie] = []string{session.StripCookie(form.CookieHeader())}
	}
	w.WriteHeader(http.StatusOK)
}

var (
	canonicalReason    = wire.Canonical(wire.HeaderReason)
	canonicalErrorBody = wire.Canonical(wire.HeaderErrorBody)
	// canonicalEnvoyRemove is set on allowed answers only (httpDenied never sets it).
	canonicalEnvoyRemove = wire.Canonical(wire.HeaderEnvoyRemove)

	canonicalUpstreamCookie = wire.Canonical(wire.HeaderUpstreamCookie)
	identityHeaders         = wire.IdentityHeaderNames()
)

func (dp *DataPlane) httpDenied(w http.ResponseWriter, r Reason) {
	dp.httpDeniedBody(w, r, r.Body(dp.opts.CompatBodies))
}

// httpDeniedBody is httpDenied with the given body (a licence's words: Reason.BodyFor).
func (dp *DataPlane) httpDeniedBody(w http.ResponseWriter, r Reason, body string) {
	h := w.Header()
	for _, k := range identityHeaders {
		h.Del(k)
	}
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h[canonicalReason] = []string{r.String()}
	h[canonicalErrorBody] = []string{body}
	if r.HTTPStatus() == http.StatusUnauthorized {
		h.Set("WWW-Authenticate", `Bearer realm="keycap"`)
	}
	w.WriteHeader(r.HTTPStatus())
	_, _ = w.Write([]byte(body)) //nolint:gosec // G705: body is one of keycap's fixed JSON error bodies (Reason.BodyFor), never request data
}

// newHTTPMux returns the HTTP port's routes: forward-auth, licence activation and the
// /.well-known/ documents (JWKS, OpenID configuration, licence public key). It never redirects
// (neverRedirect, httpserver.go).
func (dp *DataPlane) newHTTPMux() http.Handler {
	mux := http.NewServeMux()
	mux.Handle(activation.Path, dp.guardActivation(dp.activator))
	mux.Handle("/.well-known/", signing.Handler(dp.publicKeys))
	if dp.sso != nil {
		dp.sso.Register(mux)
	}
	return dp.neverRedirect(mux)
}

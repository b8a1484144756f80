package authz

import (
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/keycap-dev/keycap/internal/activation"
	"github.com/keycap-dev/keycap/internal/signing"
)

// CheckPath is the forward-auth endpoint on the HTTP port.
const CheckPath = "/check"

// Query parameters of the forward-auth URL that state a route's requirements, e.g.
// /check?scopes=videos:read,videos:write&namespace=acme. They live in the proxy's configuration
// (nginx auth_request's proxy_pass, Traefik forwardAuth's address), where clients cannot change
// them. Both may repeat and both take comma-separated lists.
const (
	QueryScopes    = "scopes"
	QueryNamespace = "namespace"
	// QueryAudience is the audience an AppToken must be for.
	QueryAudience = "audience"
	// QueryEntitlements are the entitlements a licence must hold.
	QueryEntitlements = "entitlements"
)

// serveCheck answers forward-auth: 200 with identity headers, or 401/403 with a JSON body, the
// reason in x-keycap-reason and the body again in x-keycap-error-body for nginx.
//
// Requirements are read from the query of exactly /check. Under /check/ (Envoy's HTTP ext_authz
// appends the client's own path and query to its path_prefix) the query is the client's, so it is
// ignored and the route requires nothing beyond a valid credential; use gRPC context_extensions
// for per-route requirements with Envoy.
func (dp *DataPlane) serveCheck(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	reason := ReasonInternal
	defer func() {
		if recover() != nil {
			reason = ReasonInternal
			dp.httpDenied(w, ReasonInternal)
		}
		durationByProt[1].Observe(time.Since(start).Seconds())
		checkCounters[1][reason].Inc()
	}()
	var hv headerValues
	dp.extractor.fromHTTP(r.Header, &hv)
	p, reason := dp.extractor.extract(&hv)
	licenseKeys, hasLicense := r.Header[canonicalLicenseKey]
	switch {
	case hasLicense && reason == ReasonMissing:
		reason = ReasonOK
	case hasLicense && reason == ReasonOK:
		reason = ReasonAmbiguous
	}
	if reason != ReasonOK {
		if reason == ReasonMissing && !dp.ready() {
			reason = ReasonNotReady
		}
		dp.httpDenied(w, reason)
		return
	}
	var req Requirements
	var scopes, namespaces, entitlements [4]string
	if r.URL.Path == CheckPath {
		req = parseRequirements(r.URL.RawQuery, scopes[:0], namespaces[:0], entitlements[:0])
	}
	var d Decision
	if hasLicense {
		d = dp.decideLicense(single(licenseKeys), single(r.Header[canonicalInstanceID]), req)
	} else {
		d = dp.decide(p.key, req)
	}
	reason = d.Reason
	if !d.Allowed() {
		dp.httpDenied(w, reason)
		return
	}
	c := d.Credential
	var ents string
	if c.License != nil {
		ents = c.License.EntitlementsHeader
	}
	// One backing array for every header value.
	v := [...]string{c.Kind, c.Namespace, c.Name, c.KeyID, d.Scopes, ReasonOK.String(), c.Agent, c.ParentName, d.Subject, ents}
	// The agent headers are sent empty for an ApiKey, so that proxies copying the answer's
	// headers upstream (Traefik's authResponseHeaders) replace any the client forged.
	vals := append([]string(nil), v[:]...)
	h := w.Header()
	h[canonicalKind] = vals[0:1:1]
	h[canonicalNamespace] = vals[1:2:2]
	h[canonicalName] = vals[2:3:3]
	h[canonicalKeyID] = vals[3:4:4]
	h[canonicalScopes] = vals[4:5:5]
	h[canonicalReason] = vals[5:6:6]
	h[canonicalAgent] = vals[6:7:7]
	h[canonicalParent] = vals[7:8:8]
	h[canonicalSubject] = vals[8:9:9]
	h[canonicalEntitlements] = vals[9:10:10]
	w.WriteHeader(http.StatusOK)
}

// single returns the one value of a header, or an invalid value when it is repeated with
// different values (a licence or instance must be unambiguous).
func single(values []string) string {
	switch len(values) {
	case 0:
		return ""
	case 1:
		return trimSpace(values[0])
	}
	for _, v := range values[1:] {
		if v != values[0] {
			return "\x00repeated"
		}
	}
	return trimSpace(values[0])
}

// parseRequirements reads the scopes, namespace, audience and entitlements parameters of a
// forward-auth query into the given slices (the caller's stack arrays, so the common case
// allocates nothing). A parameter that cannot be unescaped counts as a requirement no credential
// meets; so does a repeated audience with different values.
func parseRequirements(rawQuery string, scopes, namespaces, entitlements []string) Requirements {
	var audience string
	for rawQuery != "" {
		var pair string
		pair, rawQuery, _ = strings.Cut(rawQuery, "&")
		k, v, _ := strings.Cut(pair, "=")
		if k != QueryScopes && k != QueryNamespace && k != QueryAudience && k != QueryEntitlements {
			continue
		}
		if u, err := url.QueryUnescape(v); err == nil {
			v = u
		} else {
			v = "\x00invalid"
		}
		switch k {
		case QueryScopes:
			scopes = append(scopes, v)
		case QueryNamespace:
			namespaces = append(namespaces, v)
		case QueryEntitlements:
			entitlements = append(entitlements, v)
		default:
			if audience != "" && audience != v {
				v = "\x00ambiguous"
			}
			audience = v
		}
	}
	return Requirements{Scopes: scopes, Namespaces: namespaces, Audience: audience, Entitlements: entitlements}
}

var (
	canonicalKind         = http.CanonicalHeaderKey(HeaderKind)
	canonicalNamespace    = http.CanonicalHeaderKey(HeaderNamespace)
	canonicalName         = http.CanonicalHeaderKey(HeaderName)
	canonicalKeyID        = http.CanonicalHeaderKey(HeaderKeyID)
	canonicalScopes       = http.CanonicalHeaderKey(HeaderScopes)
	canonicalAgent        = http.CanonicalHeaderKey(HeaderAgent)
	canonicalParent       = http.CanonicalHeaderKey(HeaderParent)
	canonicalReason       = http.CanonicalHeaderKey(HeaderReason)
	canonicalSubject      = http.CanonicalHeaderKey(HeaderSubject)
	canonicalEntitlements = http.CanonicalHeaderKey(HeaderEntitlements)
	canonicalLicenseKey   = http.CanonicalHeaderKey(HeaderLicenseKey)
	canonicalInstanceID   = http.CanonicalHeaderKey(HeaderInstanceID)
	canonicalErrorBody    = http.CanonicalHeaderKey(HeaderErrorBody)
)

func (dp *DataPlane) httpDenied(w http.ResponseWriter, r Reason) {
	body := r.Body(dp.opts.CompatBodies)
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
	_, _ = w.Write([]byte(body))
}

// newHTTPMux returns the HTTP port's routes: forward-auth, licence activation and the
// /.well-known/ documents (JWKS, OpenID configuration, licence public key).
func (dp *DataPlane) newHTTPMux() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc(CheckPath, dp.serveCheck)
	mux.HandleFunc(CheckPath+"/", dp.serveCheck)
	mux.Handle(activation.Path, dp.activator)
	mux.Handle("/.well-known/", signing.Handler(dp.publicKeys))
	return mux
}

package authz

import (
	"net/http"
	"strings"
	"time"
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
	p, reason := dp.extractor.extract(httpHeaders{h: r.Header, canonical: dp.canonical})
	if reason != ReasonOK {
		if reason == ReasonMissing && !dp.ready() {
			reason = ReasonNotReady
		}
		dp.httpDenied(w, reason)
		return
	}
	var req Requirements
	if r.URL.Path == CheckPath {
		q := r.URL.Query()
		for _, v := range q[QueryScopes] {
			req.Scopes = append(req.Scopes, parseList(v)...)
		}
		for _, v := range q[QueryNamespace] {
			req.Namespaces = append(req.Namespaces, parseList(v)...)
		}
	}
	d := dp.decide(p.key, req)
	reason = d.Reason
	if !d.Allowed() {
		dp.httpDenied(w, reason)
		return
	}
	c := d.Credential
	h := w.Header()
	h[canonicalKind] = []string{c.Kind}
	h[canonicalNamespace] = []string{c.Namespace}
	h[canonicalName] = []string{c.Name}
	h[canonicalKeyID] = []string{c.KeyID}
	h[canonicalScopes] = []string{d.Scopes}
	if c.Agent != "" {
		h[canonicalAgent] = []string{c.Agent}
		h[canonicalParent] = []string{c.ParentName}
	}
	h[canonicalReason] = []string{ReasonOK.String()}
	w.WriteHeader(http.StatusOK)
}

var (
	canonicalKind      = http.CanonicalHeaderKey(HeaderKind)
	canonicalNamespace = http.CanonicalHeaderKey(HeaderNamespace)
	canonicalName      = http.CanonicalHeaderKey(HeaderName)
	canonicalKeyID     = http.CanonicalHeaderKey(HeaderKeyID)
	canonicalScopes    = http.CanonicalHeaderKey(HeaderScopes)
	canonicalAgent     = http.CanonicalHeaderKey(HeaderAgent)
	canonicalParent    = http.CanonicalHeaderKey(HeaderParent)
	canonicalReason    = http.CanonicalHeaderKey(HeaderReason)
	canonicalErrorBody = http.CanonicalHeaderKey(HeaderErrorBody)
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

// newHTTPMux returns the HTTP port's routes. Other endpoints of the data plane (activation, SSO,
// JWKS) are added to the same mux.
func (dp *DataPlane) newHTTPMux() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc(CheckPath, dp.serveCheck)
	mux.HandleFunc(CheckPath+"/", dp.serveCheck)
	return mux
}

func canonicalNames(names []string) map[string]string {
	out := make(map[string]string, len(names))
	for _, n := range names {
		out[strings.ToLower(n)] = http.CanonicalHeaderKey(n)
	}
	return out
}

package authz

import (
	"net/http"
	"strings"

	"github.com/keycap-dev/keycap/internal/authz/wire"
)

// neverRedirect routes the HTTP port so that it never answers a redirect (DESIGN: "The HTTP port
// never redirects"): Go's ServeMux answers 307 to a path that is not clean (`//`, `/./`, `/../`)
// and to /tree for a registered /tree/, and a redirect from an authorization server is denied by
// every proxy with the Location header going back to the client.
//
//   - /check and /check/<anything> are forward-auth, answered as they come: under Envoy's HTTP
//     ext_authz (and Istio's and Envoy Gateway's) the client's own path, as the client sent it,
//     follows the path prefix /check.
//   - every other path is served by mux only when mux has a handler for it exactly as written;
//     a path mux would clean or redirect, and a path it does not know, get keycap's JSON 404.
func (dp *DataPlane) neverRedirect(mux *http.ServeMux) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := r.URL.Path
		if p == CheckPath || strings.HasPrefix(p, CheckPath+"/") {
			dp.serveCheck(w, r)
			return
		}
		if !cleanHTTPPath(r.URL.EscapedPath()) {
			writeNotFound(w)
			return
		}
		_, pattern := mux.Handler(r)
		if pattern == "" || redirectsToSubtree(pattern, p) {
			// No handler (ServeMux's plain-text 404 or 405), or its /tree -> /tree/ redirect.
			writeNotFound(w)
			return
		}
		mux.ServeHTTP(w, r)
	})
}

// cleanHTTPPath reports whether ServeMux would serve p as it is (no `//`, `.` or `..` segment).
func cleanHTTPPath(p string) bool {
	if p == "" || p[0] != '/' {
		return false
	}
	for seg := range strings.SplitSeq(p[1:], "/") {
		if seg == "." || seg == ".." {
			return false
		}
	}
	return !strings.Contains(p, "//")
}

// redirectsToSubtree reports whether pattern (a registered "/tree/") was returned by
// ServeMux.Handler for path "/tree", i.e. ServeMux would redirect path to pattern.
func redirectsToSubtree(pattern, path string) bool {
	if i := strings.IndexByte(pattern, '/'); i > 0 {
		pattern = pattern[i:] // a method or host before the path
	}
	return strings.HasSuffix(pattern, "/") && !strings.HasSuffix(path, "/") && pattern == path+"/"
}

var notFoundBody = wire.NotFoundBody()

// writeNotFound answers a path the HTTP port does not serve with keycap's JSON refusal body.
func writeNotFound(w http.ResponseWriter) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusNotFound)
	_, _ = w.Write([]byte(notFoundBody))
}

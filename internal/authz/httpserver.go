package authz

import (
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	logf "sigs.k8s.io/controller-runtime/pkg/log"

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
			if r.ContentLength != 0 {
				// A check never reads a body. Without this the server would try to drain an
				// announced body before answering (so `Content-Length: 100000` and no body
				// would wait for the read timeout); closing the connection after the answer
				// lets it answer at once.
				w.Header().Set("Connection", "close")
			}
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
		dp.limitBody(mux).ServeHTTP(w, r)
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

// lastQueryRefusalLog throttles refuseQuery's log line (unix seconds of the last one).
var lastQueryRefusalLog atomic.Int64

// refuseQuery denies a check whose forward-auth query (the proxy's configuration) could not be
// read. It is a proxy misconfiguration, so besides the reason in the answer and in
// keycap_authz_checks_total the operator gets a log line, at most one every 10 seconds, naming
// the first parameter keycap does not know (never a value).
func (dp *DataPlane) refuseQuery(w http.ResponseWriter, r *http.Request, reason wire.Reason) {
	now := time.Now().Unix()
	if last := lastQueryRefusalLog.Load(); now-last >= 10 && lastQueryRefusalLog.CompareAndSwap(last, now) {
		logf.Log.WithName("authz").Info("forward-auth query refused: the proxy's /check URL has a parameter keycap does not know; "+
			"known are scopes, namespace, audience and entitlements, separated by &",
			"reason", reason.String(), "parameter", unknownParameter(r.URL.RawQuery))
	}
	dp.httpDenied(w, reason)
}

// unknownParameter returns the first parameter name of a query that wire.ParseQuery does not
// know (quoted, at most 64 bytes), or ";" when the query holds a semicolon.
func unknownParameter(rawQuery string) string {
	if strings.IndexByte(rawQuery, ';') >= 0 {
		return ";"
	}
	for pair := range strings.SplitSeq(rawQuery, "&") {
		k, _, _ := strings.Cut(pair, "=")
		switch k {
		case "", wire.QueryScopes, wire.QueryNamespace, wire.QueryAudience, wire.QueryEntitlements:
			continue
		}
		if len(k) > 64 {
			k = k[:64]
		}
		return strconv.Quote(k)
	}
	return ""
}

// httpLimits are the HTTP port's timeouts and sizes (a variable so that tests can shorten them).
var httpLimits = struct {
	readHeader, read, write, idle time.Duration
	maxHeader                     int
}{readHeader: 10 * time.Second, read: 15 * time.Second, write: 30 * time.Second, idle: 120 * time.Second, maxHeader: 64 << 10}

// NewHTTPServer returns the HTTP port's server for handler. Every timeout is set: a client
// trickling its headers or body is cut off after readHeader or read, a client not reading its
// answer after write (longer than activation's deadline, so a slow apiserver still gets its 503
// out), an idle keep-alive connection after idle. hack/bench serves its bare baseline handler
// with it too, so that the two servers differ only in what they answer.
func NewHTTPServer(handler http.Handler) *http.Server {
	return &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: httpLimits.readHeader,
		ReadTimeout:       httpLimits.read,
		WriteTimeout:      httpLimits.write,
		IdleTimeout:       httpLimits.idle,
		MaxHeaderBytes:    httpLimits.maxHeader,
	}
}

// maxRequestBody bounds the body of every request the HTTP port reads (activation, SSO); /check
// reads none.
const maxRequestBody = 64 << 10

// limitBody limits the body next may read to maxRequestBody.
func (dp *DataPlane) limitBody(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.Body = http.MaxBytesReader(w, r.Body, maxRequestBody)
		next.ServeHTTP(w, r)
	})
}

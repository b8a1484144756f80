package authz

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/keycap-dev/keycap/internal/keys"
	"github.com/keycap-dev/keycap/internal/session"
)

// benchSessions gives dp the session credential source with one key and returns a session
// cookie ("keycap_session=...", after a cookie of the portal's own) for each of the n ApiKeys of
// benchDataPlaneN, as the SSO login link would issue them.
func benchSessions(b *testing.B, dp *DataPlane, ks []string) []string {
	now := dp.authz.clock.Now()
	k, err := session.NewKey(now.Add(-time.Hour))
	if err != nil {
		b.Fatal(err)
	}
	set := &session.KeySet{Keys: []session.Key{k}}
	dp.authz.sessions = &sessions{keys: func() *session.KeySet { return set }}
	cookies := make([]string, len(ks))
	for i, key := range ks {
		id := session.Identity{Kind: "ApiKey", Namespace: "bench", Name: fmt.Sprintf("bench-%06d", i), KeyID: keys.KeyID(keys.Digest(key))}
		c, err := session.NewClaims(id, now, 24*time.Hour)
		if err != nil {
			b.Fatal(err)
		}
		v, err := set.Seal(session.PurposeSession, c, now)
		if err != nil {
			b.Fatal(err)
		}
		cookies[i] = "portal_pref=dark; " + session.CookieName + "=" + v
	}
	return cookies
}

// BenchmarkCheckSession is one allowed Check authenticated by the SSO session cookie (gRPC and
// HTTP, transport excluded) at N loaded keys, each request carrying the next key's session, next
// to BenchmarkCheckN's keys. Each answer also rewrites the upstream's Cookie without keycap's.
func BenchmarkCheckSession(b *testing.B) {
	for _, n := range []int{100, 100_000} {
		dp, ks := benchDataPlaneN(b, n)
		cookies := benchSessions(b, dp, ks)
		b.Run(fmt.Sprintf("grpc/N=%d", n), func(b *testing.B) {
			s := &grpcServer{dp: dp}
			headers := map[string]string{"cookie": cookies[0], ":path": "/", "user-agent": "bench"}
			req := &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
				Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
					Method: http.MethodGet, Headers: headers,
				}},
				ContextExtensions: map[string]string{ContextExtensionScopes: "bench:read"},
			}}
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				headers["cookie"] = cookies[i]
				resp, _ := s.Check(context.Background(), req)
				if resp.GetOkResponse() == nil {
					b.Fatal("denied: ", resp.GetDeniedResponse().GetBody())
				}
				if i++; i == len(cookies) {
					i = 0
				}
			}
		})
		b.Run(fmt.Sprintf("http/N=%d", n), func(b *testing.B) {
			mux := dp.newHTTPMux()
			req := httptest.NewRequest(http.MethodGet, "/check?scopes=bench:read", nil)
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				req.Header = http.Header{"Cookie": cookies[i : i+1]}
				rec := httptest.NewRecorder()
				mux.ServeHTTP(rec, req)
				if rec.Code != http.StatusOK {
					b.Fatal(rec.Code, rec.Header().Get("X-Keycap-Reason"))
				}
				if i++; i == len(cookies) {
					i = 0
				}
			}
		})
	}
}

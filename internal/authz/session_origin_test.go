package authz

import (
	"context"
	"net/http"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/onsi/gomega"
	"google.golang.org/grpc/codes"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clocktesting "k8s.io/utils/clock/testing"

	keycapv1alpha1 "github.com/keycap-dev/keycap/api/v1alpha1"
	"github.com/keycap-dev/keycap/internal/index"
	"github.com/keycap-dev/keycap/internal/keys"
	"github.com/keycap-dev/keycap/internal/session"
)

// TestSessionCSRFAllowedOrigin: an unsafe method authenticated only by the session cookie passes
// with an Origin from --sso-allowed-origins (Options.SessionOrigins) when the browser sends no
// Sec-Fetch-Site, and is refused with CSRF from any other Origin, over HTTP and gRPC.
func TestSessionCSRFAllowedOrigin(t *testing.T) {
	g := gomega.NewWithT(t)
	clk := clocktesting.NewFakeClock(time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC))
	ix := index.New()
	key, _ := keys.Generate("kc")
	k := &keycapv1alpha1.ApiKey{ObjectMeta: metav1.ObjectMeta{Namespace: "acme", Name: "portal"}}
	k.Spec.Scopes = []string{"videos:read"}
	k.Status.Digests = []string{keys.Digest(key)}
	k.Status.KeyID = keys.KeyID(k.Status.Digests[0])
	ix.Upsert(project(k))
	dp := testDataPlane(ix, clk, true, false)
	dp.sources.SetSessionOrigins([]string{"https://portal.example.com"})
	sk, err := session.NewKey(clk.Now().Add(-time.Hour))
	g.Expect(err).NotTo(gomega.HaveOccurred())
	set := &session.KeySet{Keys: []session.Key{sk}}
	dp.authz.sessions = &sessions{keys: func() *session.KeySet { return set }}
	claims, err := session.NewClaims(session.Identity{Kind: "ApiKey", Namespace: "acme", Name: "portal", KeyID: k.Status.KeyID}, clk.Now(), time.Hour)
	g.Expect(err).NotTo(gomega.HaveOccurred())
	value, err := set.Seal(session.PurposeSession, claims, clk.Now())
	g.Expect(err).NotTo(gomega.HaveOccurred())
	cookie := session.CookieName + "=" + value

	s := &grpcServer{dp: dp}
	grpcPost := func(origin string) (codes.Code, string) {
		req := &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
			Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
				Method: http.MethodPost, Headers: map[string]string{"cookie": cookie, "origin": origin},
			}},
		}}
		resp, err := s.Check(context.Background(), req)
		g.Expect(err).NotTo(gomega.HaveOccurred())
		reason := ""
		for _, h := range resp.GetDeniedResponse().GetHeaders() {
			if h.GetHeader().GetKey() == "x-keycap-reason" {
				reason = h.GetHeader().GetValue()
			}
		}
		return codes.Code(resp.GetStatus().GetCode()), reason
	}

	for origin, want := range map[string]int{
		"https://portal.example.com":      http.StatusOK,
		"https://portal.example.com:8443": http.StatusForbidden,
		"http://portal.example.com":       http.StatusForbidden,
		"https://evil.example":            http.StatusForbidden,
		"null":                            http.StatusForbidden,
		"":                                http.StatusForbidden,
	} {
		rec := serveCheck(dp, "/check?scopes=videos:read", http.Header{"Cookie": {cookie}, "Origin": {origin}, "X-Original-Method": {"POST"}})
		g.Expect(rec.Code).To(gomega.Equal(want), origin)
		code, reason := grpcPost(origin)
		if want == http.StatusOK {
			g.Expect(code).To(gomega.Equal(codes.OK), origin)
			g.Expect(rec.Header().Get("X-Keycap-Auth-Method")).To(gomega.Equal("session"))
			continue
		}
		g.Expect(rec.Header().Get("X-Keycap-Reason")).To(gomega.Equal("CSRF"), origin)
		g.Expect(code).To(gomega.Equal(codes.PermissionDenied), origin)
		g.Expect(reason).To(gomega.Equal("CSRF"), origin)
	}
	// A GET needs no evidence.
	g.Expect(serveCheck(dp, "/check", http.Header{"Cookie": {cookie}, "Origin": {"https://evil.example"}}).Code).To(gomega.Equal(http.StatusOK))
}

package authz

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clocktesting "k8s.io/utils/clock/testing"

	keycapv1alpha1 "github.com/keycap-dev/keycap/api/v1alpha1"
	"github.com/keycap-dev/keycap/internal/index"
	"github.com/keycap-dev/keycap/internal/keys"
)

func benchDataPlane(b testing.TB) (*DataPlane, string) {
	clk := clocktesting.NewFakeClock(time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC))
	ix := index.New()
	key, _ := keys.Generate("kc")
	k := &keycapv1alpha1.ApiKey{ObjectMeta: metav1.ObjectMeta{Namespace: "acme", Name: "main"}}
	k.Spec.Scopes = []string{"videos:read"}
	k.Status.Digests = []string{keys.Digest(key)}
	ix.Upsert(index.FromApiKey(k))
	return testDataPlane(ix, clk, true, false), key
}

// BenchmarkCheckGRPC is the in-process cost of one allowed Check, transport excluded.
func BenchmarkCheckGRPC(b *testing.B) {
	dp, key := benchDataPlane(b)
	s := &grpcServer{dp: dp}
	req := &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Headers: map[string]string{"x-api-key": key, ":path": "/", "user-agent": "bench"},
		}},
		ContextExtensions: map[string]string{ContextExtensionScopes: "videos:read"},
	}}
	b.ReportAllocs()
	for b.Loop() {
		if resp, _ := s.Check(context.Background(), req); resp.GetOkResponse() == nil {
			b.Fatal("denied")
		}
	}
}

// BenchmarkServeCheck is the in-process cost of one allowed HTTP /check, transport excluded.
func BenchmarkServeCheck(b *testing.B) {
	dp, key := benchDataPlane(b)
	mux := dp.newHTTPMux()
	req := httptest.NewRequest(http.MethodGet, "/check?scopes=videos:read", nil)
	req.Header.Set("X-Api-Key", key)
	b.ReportAllocs()
	for b.Loop() {
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			b.Fatal(rec.Code)
		}
	}
}

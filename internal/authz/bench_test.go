package authz

import (
	"context"
	"fmt"
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
	ix.Upsert(project(k))
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

// benchDataPlaneN loads n ApiKeys shaped as hack/bench creates them (namespace bench, scopes
// bench:read and bench:write) and returns their keys.
func benchDataPlaneN(b testing.TB, n int) (*DataPlane, []string) {
	clk := clocktesting.NewFakeClock(time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC))
	ix := index.New()
	ks := make([]string, n)
	for i := range ks {
		key, _ := keys.Generate("kc")
		k := &keycapv1alpha1.ApiKey{ObjectMeta: metav1.ObjectMeta{Namespace: "bench", Name: fmt.Sprintf("bench-%06d", i)}}
		k.Spec.Scopes = []string{"bench:read", "bench:write"}
		k.Status.Digests = []string{keys.Digest(key)}
		k.Status.KeyID = keys.KeyID(k.Status.Digests[0])
		ix.Upsert(project(k))
		ks[i] = key
	}
	return testDataPlane(ix, clk, true, false), ks
}

// BenchmarkCheckN is one allowed Check (gRPC and HTTP, transport excluded) at N loaded keys,
// each request carrying the next key, as hack/bench spreads its requests over every key.
func BenchmarkCheckN(b *testing.B) {
	for _, n := range []int{100, 100_000} {
		dp, ks := benchDataPlaneN(b, n)
		b.Run(fmt.Sprintf("grpc/N=%d", n), func(b *testing.B) {
			s := &grpcServer{dp: dp}
			// One request whose key changes, so that the heap holds the index and not 100 000
			// requests (a server decodes each request and drops it).
			headers := map[string]string{"x-api-key": ks[0], ":path": "/", "user-agent": "bench"}
			req := &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
				Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
					Headers: headers,
				}},
				ContextExtensions: map[string]string{ContextExtensionScopes: "bench:read"},
			}}
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				headers["x-api-key"] = ks[i]
				if resp, _ := s.Check(context.Background(), req); resp.GetOkResponse() == nil {
					b.Fatal("denied")
				}
				if i++; i == len(ks) {
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
				req.Header = http.Header{"X-Api-Key": ks[i : i+1]}
				rec := httptest.NewRecorder()
				mux.ServeHTTP(rec, req)
				if rec.Code != http.StatusOK {
					b.Fatal(rec.Code)
				}
				if i++; i == len(ks) {
					i = 0
				}
			}
		})
	}
}

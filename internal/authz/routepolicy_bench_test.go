package authz

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	keycapv1alpha1 "github.com/keycap-dev/keycap/api/v1alpha1"
	"github.com/keycap-dev/keycap/internal/routepolicy"
)

// benchRoutePolicy gives dp the RoutePolicy hack/bench creates: host bench.example.com, one rule
// for /api requiring bench:write (which benchDataPlaneN's keys hold).
func benchRoutePolicy(dp *DataPlane) {
	rp := &routePolicies{src: routepolicy.SourceEnvoy}
	rp.index.Store(routepolicy.Build([]*keycapv1alpha1.RoutePolicy{{
		ObjectMeta: metav1.ObjectMeta{Namespace: "bench", Name: "bench"},
		Spec: keycapv1alpha1.RoutePolicySpec{
			Hosts: []string{"bench.example.com"},
			Rules: []keycapv1alpha1.RoutePolicyRule{{Paths: []string{"/api"}, Scopes: []string{"bench:write"}}},
		},
	}}))
	dp.routes = rp
}

// BenchmarkCheckRoutePolicy is BenchmarkCheckN with the request on a host a RoutePolicy holds and
// a path its rule matches (gRPC: Envoy's attributes, plus the proxy's own scope; HTTP: Envoy's
// HTTP ext_authz form, /check followed by the client's path, so the policy states every
// requirement), as hack/bench's RoutePolicy rows send them.
func BenchmarkCheckRoutePolicy(b *testing.B) {
	for _, n := range []int{100, 100_000} {
		dp, ks := benchDataPlaneN(b, n)
		benchRoutePolicy(dp)
		b.Run(fmt.Sprintf("grpc/N=%d", n), func(b *testing.B) {
			s := &grpcServer{dp: dp}
			headers := map[string]string{"x-api-key": ks[0], ":path": "/api/items", ":authority": "bench.example.com", "user-agent": "bench"}
			req := &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
				Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
					Method: http.MethodGet, Host: "bench.example.com", Path: "/api/items", Headers: headers,
				}},
				ContextExtensions: map[string]string{ContextExtensionScopes: "bench:read"},
			}}
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				headers["x-api-key"] = ks[i]
				if resp, _ := s.Check(context.Background(), req); resp.GetOkResponse() == nil {
					b.Fatal("denied: ", resp.GetStatus().GetMessage())
				}
				if i++; i == len(ks) {
					i = 0
				}
			}
		})
		b.Run(fmt.Sprintf("http/N=%d", n), func(b *testing.B) {
			mux := dp.newHTTPMux()
			req := httptest.NewRequest(http.MethodGet, "/check/api/items", nil)
			req.Host = "bench.example.com"
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				req.Header = http.Header{"X-Api-Key": ks[i : i+1]}
				rec := httptest.NewRecorder()
				mux.ServeHTTP(rec, req)
				if rec.Code != http.StatusOK {
					b.Fatal(rec.Code, rec.Header().Get("X-Keycap-Reason"))
				}
				if i++; i == len(ks) {
					i = 0
				}
			}
		})
	}
}

package routepolicy

import (
	"fmt"
	"testing"
	"time"

	keycapv1alpha1 "github.com/keycap-dev/keycap/api/v1alpha1"
)

// BenchmarkRoute is the per-request cost the policies add to a check, with 10 000 policies in the
// index (one exact host each, and wildcards): a lookup per host label and one map lookup per path
// segment, whatever the number of policies.
func BenchmarkRoute(b *testing.B) {
	policies := []*keycapv1alpha1.RoutePolicy{shop()}
	for i := range 10000 {
		policies = append(policies, policy("t", fmt.Sprintf("p%d", i), time.Minute,
			[]string{fmt.Sprintf("h%d.example.com", i), fmt.Sprintf("*.w%d.example.org", i)},
			keycapv1alpha1.RoutePolicyRule{Paths: []string{"/"}, Scopes: []string{"s"}}))
	}
	ix := Build(policies)
	for name, v := range map[string]*View{
		"clean path":          {GRPC: true, Host: "shop.example.com", Target: "/admin/users/42?x=1", Method: "POST"},
		"path to normalise":   {GRPC: true, Host: "shop.example.com", Target: "/public/../Admin//users", Method: "POST"},
		"wildcard host":       {GRPC: true, Host: "a.w77.example.org", Target: "/x", Method: "GET"},
		"host without policy": {GRPC: true, Host: "other.example.net", Target: "/admin", Method: "POST"},
	} {
		b.Run(name, func(b *testing.B) {
			var buf [4]*Rule
			b.ReportAllocs()
			for b.Loop() {
				ix.Route(SourceEnvoy, v, buf[:0])
			}
		})
	}
}

package activation

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/keycap-dev/keycap/internal/authz/wire"
	"github.com/keycap-dev/keycap/internal/keys"
)

// BenchmarkActivation measures activations through the HTTP handler against the real apiserver
// (one fresh read and one optimistic status patch each): a heartbeat of an active instance, and
// activations of new instances, sequential and from parallel clients on one licence (where
// conflicts cost retries).
func BenchmarkActivation(b *testing.B) {
	ctx := context.Background()
	lic, key := newLicense(b, ctx, 100000, nil)
	srv := httptest.NewServer(NewActivator(mapFinder{keys.Digest(key): client.ObjectKeyFromObject(lic)}, k8s, k8s, clock.RealClock{}))
	defer srv.Close()
	do := func(instance string) {
		req, _ := http.NewRequest(http.MethodPost, srv.URL+Path, strings.NewReader(`{"reset":false}`))
		req.Header.Set(wire.HeaderLicenseKey, key)
		req.Header.Set(wire.HeaderInstanceID, instance)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			b.Fatalf("status %d", resp.StatusCode)
		}
	}
	b.Run("heartbeat", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			do("steady")
		}
	})
	var n atomic.Int64
	b.Run("new instance", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			do(fmt.Sprintf("seq-%d", n.Add(1)))
		}
	})
	b.Run("new instance parallel", func(b *testing.B) {
		b.SetParallelism(4)
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				do(fmt.Sprintf("par-%d", n.Add(1)))
			}
		})
	})
}

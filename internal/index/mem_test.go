package index_test

import (
	"fmt"
	"runtime"
	"runtime/metrics"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	keycapv1alpha1 "github.com/keycap-dev/keycap/api/v1alpha1"
	. "github.com/keycap-dev/keycap/internal/index"
	"github.com/keycap-dev/keycap/internal/keys"
	"github.com/keycap-dev/keycap/internal/registry"
)

// benchApiKey returns an ApiKey as hack/bench creates it, every string separately allocated as
// the informer's JSON decoding allocates it.
func benchApiKey(i int) *keycapv1alpha1.ApiKey {
	key, _ := keys.Generate("kc")
	k := &keycapv1alpha1.ApiKey{ObjectMeta: metav1.ObjectMeta{
		Namespace: strings.Clone("bench"), Name: fmt.Sprintf("bench-%06d", i),
		UID:             types.UID(fmt.Sprintf("%08x-0000-4000-8000-%012x", i, i)),
		ResourceVersion: fmt.Sprint(100000 + i),
	}}
	k.Spec.Scopes = []string{strings.Clone("bench:read"), strings.Clone("bench:write")}
	k.Status.Digests = []string{keys.Digest(key)}
	k.Status.KeyID = keys.KeyID(k.Status.Digests[0])
	return k
}

// BenchmarkMemoryPerKey reports the live heap per credential of a data plane holding n ApiKeys
// as its feed does: each decoded object is projected and upserted into the index, then dropped
// (there is no informer store).
func BenchmarkMemoryPerKey(b *testing.B) {
	const n = 100_000
	for b.Loop() {
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		scanBefore := scannableHeap()
		ix := New()
		for i := range n {
			ix.Upsert(registry.Project(benchApiKey(i)))
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/n, "heapB/key")
		b.ReportMetric(float64(after.HeapObjects-before.HeapObjects)/n, "objects/key")
		b.ReportMetric(float64(scannableHeap()-scanBefore)/n, "scanB/key")
		runtime.KeepAlive(ix)
	}
}

// scannableHeap is the heap the collector had to scan in its last cycle (pointer-bearing objects'
// bytes): what each collection's mark phase walks, unlike noscan memory such as strings and
// digests, which it only marks.
func scannableHeap() uint64 {
	sample := []metrics.Sample{{Name: "/gc/scan/heap:bytes"}}
	metrics.Read(sample)
	return sample[0].Value.Uint64()
}

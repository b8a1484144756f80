package index_test

import (
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"testing"
	"time"

	. "github.com/keycap-dev/keycap/internal/index"
	"github.com/keycap-dev/keycap/internal/registry"
)

// BenchmarkIndexAtScale is the index alone, as the data plane's feed fills it (no informer store),
// at KEYCAP_INDEX_KEYS credentials, default 1 000 000:
//
//	go test -run '^$' -bench IndexAtScale -benchtime 1x ./internal/index
//
// It reports the live heap per key, the time of one lookup of a random loaded key and of reading
// what a decision reads of it (b.N lookups on one goroutine over all the keys, so mostly cache
// misses), the wall time of a forced full collection with the index live (the concurrent mark of
// the whole index: what every GC cycle of a data plane at this size costs in CPU) and the longest
// stop-the-world pause of that collection. Informational only: no test asserts a time.
func BenchmarkIndexAtScale(b *testing.B) {
	n := 1_000_000
	if s := os.Getenv("KEYCAP_INDEX_KEYS"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || v <= 0 {
			b.Fatalf("KEYCAP_INDEX_KEYS=%q: a positive number of keys", s)
		}
		n = v
	}
	if scale == nil || scale.n != n {
		scale = nil
		scale = buildAtScale(n)
	}
	ix, digests := scale.ix, scale.digests
	rng := uint64(0x9e3779b97f4a7c15)
	b.ResetTimer()
	for range b.N {
		rng ^= rng << 13
		rng ^= rng >> 7
		rng ^= rng << 17
		// What a decision reads: the entry, its credential's state and its slot's throttle mark.
		e, ok := ix.Lookup(&digests[rng%uint64(n)])
		if !ok || e.Credential.Disabled || e.Slot.LastUsedMark().Load() < 0 {
			b.Fatal("a loaded key was not found")
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(n), "keys")
	b.ReportMetric(scale.heapPerKey, "heapB/key")
	b.ReportMetric(float64(scale.load.Milliseconds()), "load-ms")
	b.ReportMetric(float64(scale.gcWall.Microseconds())/1000, "fullGC-ms")
	b.ReportMetric(float64(scale.maxPause.Microseconds()), "maxSTW-µs")
}

// atScale is BenchmarkIndexAtScale's loaded index, built once for every b.N it is run with.
type atScale struct {
	n          int
	ix         *Index
	digests    []Digest
	heapPerKey float64
	load       time.Duration
	gcWall     time.Duration
	maxPause   time.Duration
}

var scale *atScale

func buildAtScale(n int) *atScale {
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	ix := New()
	digests := make([]Digest, n)
	loadStart := time.Now()
	for i := range n {
		k := benchApiKey(i)
		cred, ds := registry.Project(k)
		ix.Upsert(cred, ds)
		digests[i] = ds[0].Digest
	}
	load := time.Since(loadStart)
	runtime.GC()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	// The digests slice is the benchmark's own (32 B a key), not the data plane's.
	heapPerKey := float64(after.HeapAlloc-before.HeapAlloc)/float64(n) - 32

	var pauses debug.GCStats
	debug.ReadGCStats(&pauses)
	gcStart := time.Now()
	runtime.GC()
	gcWall := time.Since(gcStart)
	var pausesAfter debug.GCStats
	debug.ReadGCStats(&pausesAfter)
	var maxPause time.Duration
	for _, p := range pausesAfter.Pause[:int(pausesAfter.NumGC-pauses.NumGC)] {
		maxPause = max(maxPause, p)
	}

	return &atScale{n: n, ix: ix, digests: digests, heapPerKey: heapPerKey, load: load, gcWall: gcWall, maxPause: maxPause}
}

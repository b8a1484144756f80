package index_test

import (
	"crypto/sha256"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	keycapv1alpha1 "github.com/keycap-dev/keycap/api/v1alpha1"
	. "github.com/keycap-dev/keycap/internal/index"
	"github.com/keycap-dev/keycap/internal/keys"
	"github.com/keycap-dev/keycap/internal/registry"
)

func apiKey(name string, digests ...string) *keycapv1alpha1.ApiKey {
	k := &keycapv1alpha1.ApiKey{ObjectMeta: metav1.ObjectMeta{Namespace: "acme", Name: name}}
	k.Spec.Scopes = []string{"videos:write", "videos:read", "videos:read"}
	k.Status.Digests = digests
	k.Status.KeyID = "kid_" + name
	return k
}

func digestOf(key string) Digest { return sha256.Sum256([]byte(key)) }

func lookup(ix *Index, key string) *Credential {
	d := digestOf(key)
	e, ok := ix.Lookup(&d)
	if !ok || e.Conflict {
		return nil
	}
	return e.Slot.Load()
}

func TestIndexFollowsObjects(t *testing.T) {
	g := gomega.NewWithT(t)
	ix := New()
	k1, k2 := "kc_one", "kc_two"

	ix.Upsert(registry.Project(apiKey("a", keys.Digest(k1))))
	c := lookup(ix, k1)
	g.Expect(c).NotTo(gomega.BeNil())
	g.Expect(c.Scopes).To(gomega.Equal([]string{"videos:read", "videos:write"}))
	g.Expect(c.ScopesHeader).To(gomega.Equal("videos:read,videos:write"))
	g.Expect(ix.Len(keycapv1alpha1.KindApiKey)).To(gomega.Equal(1))

	// Rotation with grace: both keys valid, the previous one until its deadline.
	rotated := apiKey("a", keys.Digest(k2), keys.Digest(k1))
	until := metav1.NewTime(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC))
	rotated.Status.PreviousKeyValidUntil = &until
	ix.Upsert(registry.Project(rotated))
	d1 := digestOf(k1)
	e, ok := ix.Lookup(&d1)
	g.Expect(ok).To(gomega.BeTrue())
	g.Expect(e.NotAfter.Time()).To(gomega.BeTemporally("==", until.Time))
	g.Expect(lookup(ix, k2)).NotTo(gomega.BeNil())

	// Grace over: the previous key is dropped.
	ix.Upsert(registry.Project(apiKey("a", keys.Digest(k2))))
	g.Expect(lookup(ix, k1)).To(gomega.BeNil())

	// Disable is visible through the same slot.
	disabled := apiKey("a", keys.Digest(k2))
	disabled.Spec.Disabled = true
	ix.Upsert(registry.Project(disabled))
	g.Expect(lookup(ix, k2).Disabled).To(gomega.BeTrue())

	ix.Delete(ObjectKey{Kind: keycapv1alpha1.KindApiKey, Namespace: "acme", Name: "a"})
	g.Expect(lookup(ix, k2)).To(gomega.BeNil())
	g.Expect(ix.Len(keycapv1alpha1.KindApiKey)).To(gomega.Equal(0))
}

func TestIndexRefusesADigestTwoObjectsClaim(t *testing.T) {
	g := gomega.NewWithT(t)
	ix := New()
	ix.Upsert(registry.Project(apiKey("a", keys.Digest("shared"))))
	ix.Upsert(registry.Project(apiKey("b", keys.Digest("shared"))))
	d := digestOf("shared")
	e, ok := ix.Lookup(&d)
	g.Expect(ok).To(gomega.BeTrue())
	g.Expect(e.Conflict).To(gomega.BeTrue())

	ix.Delete(ObjectKey{Kind: keycapv1alpha1.KindApiKey, Namespace: "acme", Name: "a"})
	g.Expect(lookup(ix, "shared").Name).To(gomega.Equal("b"))
}

func TestAgentKeyPointsToItsParent(t *testing.T) {
	g := gomega.NewWithT(t)
	ix := New()
	agent := &keycapv1alpha1.AgentKey{ObjectMeta: metav1.ObjectMeta{Namespace: "acme", Name: "bot"}}
	agent.Spec.APIKeyRef.Name = "a"
	agent.Spec.Agent = "agent-7"
	agent.Status.Digests = []string{keys.Digest("agent")}

	// The agent key arrives before its parent: the parent slot exists, empty.
	ix.Upsert(registry.Project(agent))
	c := lookup(ix, "agent")
	g.Expect(c.Parent).NotTo(gomega.BeNil())
	g.Expect(c.Parent.Load()).To(gomega.BeNil())

	ix.Upsert(registry.Project(apiKey("a", keys.Digest("parent"))))
	g.Expect(c.Parent.Load().Name).To(gomega.Equal("a"))

	ix.Delete(ObjectKey{Kind: keycapv1alpha1.KindApiKey, Namespace: "acme", Name: "a"})
	g.Expect(c.Parent.Load()).To(gomega.BeNil())
}

func TestParseDigestRejectsOtherForms(t *testing.T) {
	g := gomega.NewWithT(t)
	_, ok := ParseDigest(keys.Digest("x"))
	g.Expect(ok).To(gomega.BeTrue())
	for _, bad := range []string{"", "sha256:" + keys.Digest("x"), "ABCDEF" + keys.Digest("x")[6:], keys.Digest("x")[:63] + "g"} {
		_, ok := ParseDigest(bad)
		g.Expect(ok).To(gomega.BeFalse(), bad)
	}
}

// BenchmarkLookupParallel measures lookups from every core while a writer keeps updating objects,
// at 100 000 credentials: the read path's cost and how much a writer slows it.
func BenchmarkLookupParallel(b *testing.B) {
	ix := New()
	const n = 100_000
	probes := make([]Digest, n)
	for i := range n {
		key := fmt.Sprintf("kc_%d", i)
		probes[i] = digestOf(key)
		ix.Upsert(registry.Project(apiKey(fmt.Sprintf("k%d", i), keys.Digest(key))))
	}
	var stop atomic.Bool
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; !stop.Load(); i++ {
			k := apiKey(fmt.Sprintf("k%d", i%n), keys.Digest(fmt.Sprintf("kc_%d", i%n)))
			k.Spec.Disabled = i%2 == 0
			ix.Upsert(registry.Project(k))
		}
	}()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			if _, ok := ix.Lookup(&probes[i%n]); !ok {
				b.Error("missing")
			}
			i += 7919
		}
	})
	b.StopTimer()
	stop.Store(true)
	wg.Wait()
}

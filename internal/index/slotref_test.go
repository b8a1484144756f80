package index

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
)

// A slot's number in the digest table is given to the next new object once its own is deleted.
// A reader that read a digest's entry just before the delete then reaches the new object's slot:
// Lookup must not take the new object for the owner of the old digest.
func TestLookupBelievesOnlyTheCredentialThatListsTheDigest(t *testing.T) {
	ix := New()
	a := &Credential{Kind: "ApiKey", Namespace: "acme", Name: "a"}
	digestA := Digest{1}
	ix.Upsert(a, []KeyDigest{{Digest: digestA}})
	ref := ix.Slot(a.Key()).ref
	ix.Delete(a.Key())

	b := &Credential{Kind: "ApiKey", Namespace: "acme", Name: "b"}
	digestB := Digest{2}
	ix.Upsert(b, []KeyDigest{{Digest: digestB}})
	if got := ix.Slot(b.Key()).ref; got != ref {
		t.Fatalf("b's slot number = %d, want a's %d reused", got, ref)
	}
	if e, ok := ix.Lookup(&digestB); !ok || e.Credential != b {
		t.Fatalf("Lookup(b's digest) = %+v, %v; want b", e, ok)
	}

	// The entry as a reader saw it before the delete.
	ix.setLocked(digestA, ref, true)
	if e, ok := ix.Lookup(&digestA); ok {
		t.Fatalf("Lookup(a's digest) after a was deleted = %+v (credential %q), want not found", e, e.Credential.Name)
	}
}

// Credentials with the same scopes share one list, which goes once nobody uses it.
func TestScopeListsAreSharedAndReleased(t *testing.T) {
	ix := New()
	cred := func(name string) *Credential {
		c := &Credential{Kind: "ApiKey", Namespace: "acme", Name: name}
		c.Scopes, c.ScopesHeader = InternedList([]string{"write", "read"})
		return c
	}
	a, b := cred("a"), cred("b")
	ix.Upsert(a, nil)
	ix.Upsert(b, nil)
	if &a.Scopes[0] != &b.Scopes[0] {
		t.Fatal("two credentials with the same scopes hold two lists")
	}
	if l := ix.scopeLists["read,write"]; l == nil || l.refs != 2 {
		t.Fatalf("shared list = %+v, want 2 users", l)
	}
	ix.Upsert(cred("a"), nil) // an update releases the version it replaces
	ix.Delete(b.Key())
	if l := ix.scopeLists["read,write"]; l == nil || l.refs != 1 {
		t.Fatalf("shared list = %+v, want 1 user", l)
	}
	ix.Delete(a.Key())
	if len(ix.scopeLists) != 0 {
		t.Fatalf("scope lists left after every credential went: %v", ix.scopeLists)
	}
}

// Readers looking digests up while a writer deletes and creates objects (so slot numbers are
// reused all the time) never get a credential other than the one that lists the digest.
func TestLookupUnderChurnNeverMixesObjects(t *testing.T) {
	ix := New()
	const objects = 64
	digestOf := func(i int) Digest { return Digest{byte(i), byte(i >> 8), 0xaa} }
	name := func(i int) string { return fmt.Sprintf("k%d", i) }
	upsert := func(i int) {
		ix.Upsert(&Credential{Kind: "ApiKey", Namespace: "acme", Name: name(i)}, []KeyDigest{{Digest: digestOf(i)}})
	}
	for i := range objects {
		upsert(i)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var lookups atomic.Int64
	for r := range 2 {
		wg.Go(func() {
			for n := r; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				i := n % objects
				d := digestOf(i)
				if e, ok := ix.Lookup(&d); ok {
					lookups.Add(1)
					if e.Conflict || e.Credential.Name != name(i) {
						t.Errorf("digest of %s found %+v (credential %q)", name(i), e, e.Credential.Name)
						return
					}
				}
			}
		})
	}
	for n := range 20000 {
		// Two objects go and come back in the other order: freed numbers are reused last in,
		// first out, so each comes back under the other's old number.
		i, j := n%objects, (n+1)%objects
		ix.Delete(ObjectKey{Kind: "ApiKey", Namespace: "acme", Name: name(i)})
		ix.Delete(ObjectKey{Kind: "ApiKey", Namespace: "acme", Name: name(j)})
		upsert(i)
		upsert(j)
	}
	close(stop)
	wg.Wait()
	if lookups.Load() == 0 {
		t.Fatal("no lookup found anything")
	}
}

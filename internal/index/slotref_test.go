package index

import "testing"

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

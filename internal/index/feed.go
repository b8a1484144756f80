package index

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"
	"unique"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	toolscache "k8s.io/client-go/tools/cache"

	keycapv1alpha1 "github.com/keycap-dev/keycap/api/v1alpha1"
	"github.com/keycap-dev/keycap/internal/lifecycle"
)

// Projection turns a credential object into what the index holds of it: its Credential and the
// digests it lists. Each kind's projection is part of its registry entry (internal/registry); the
// index's consumer passes one that dispatches on the kind and may add what it derives.
type Projection func(keycapv1alpha1.Credential) (*Credential, []KeyDigest)

// Source is one list-and-watch the index follows: the objects of one credential kind, in one
// namespace or (Namespace "") in all of them.
type Source struct {
	// Kind is the credential kind (keycapv1alpha1.KindApiKey, ...).
	Kind string
	// Namespace is the one namespace listed and watched; "" is every namespace.
	Namespace string
	// New returns an empty object of the kind (the reflector's expected type).
	New func() keycapv1alpha1.Credential
	// ListerWatcher lists and watches the kind (in Namespace).
	ListerWatcher toolscache.ListerWatcher
}

// FeedBackoff is how a Source retries a failed list or watch: from 250 ms, doubling, up to 2 s,
// each delay stretched by up to half again at random. client-go's default (0.8 s doubling up to a
// 30 s cap, stretched by up to 100 %) is made for thousands of clients of one apiserver; a data
// plane is a handful of replicas whose whole job is to learn of a revocation quickly, and with the
// default a disable made just after a one-minute apiserver outage reached it 40 s later. A replica
// retries at most five sources about once every 2–3 s while the apiserver is away.
var FeedBackoff = wait.Backoff{Duration: 250 * time.Millisecond, Factor: 2, Jitter: 0.5, Steps: 4, Cap: 2 * time.Second}

// Feed keeps the index current from its sources: one reflector per source, each writing straight
// into the index. There is no informer store in between: an object is projected as it arrives
// (during a streamed initial list, by the reflector's transform, so the list's decoded objects are
// garbage at once) and only the index keeps anything of it — which saves most of a data plane's
// memory per credential, and lets the feed retry with FeedBackoff rather than client-go's.
type Feed struct {
	ix      *Index
	sources []Source
	stores  []*sourceStore
}

// NewFeed returns the feed of ix from sources; Run starts it.
func (ix *Index) NewFeed(sources []Source, project Projection) *Feed {
	f := &Feed{ix: ix, sources: sources, stores: make([]*sourceStore, len(sources))}
	for i, src := range sources {
		f.stores[i] = &sourceStore{ix: ix, kind: src.Kind, namespace: src.Namespace, project: project}
	}
	return f
}

// Run lists and watches every source until ctx ends.
func (f *Feed) Run(ctx context.Context) {
	var wg sync.WaitGroup
	for i, src := range f.sources {
		wg.Go(func() {
			Reflect(ctx, fmt.Sprintf("%s %q", src.Kind, src.Namespace), src.ListerWatcher, src.New(), f.stores[i])
		})
	}
	wg.Wait()
}

// Reflect lists and watches lw into store until ctx ends, retrying a failed list or watch with
// FeedBackoff. It is how everything the data plane decides with reaches it.
func Reflect(ctx context.Context, name string, lw toolscache.ListerWatcher, expected runtime.Object, store toolscache.ReflectorStore) {
	backoff := FeedBackoff
	toolscache.NewReflectorWithOptions(lw, expected, store, toolscache.ReflectorOptions{
		Name:            "keycap data plane " + name,
		TypeDescription: fmt.Sprintf("%T", expected),
		Backoff:         &backoff,
	}).RunWithContext(ctx)
}

// Synced reports whether every source has delivered its initial list.
func (f *Feed) Synced() bool {
	for _, st := range f.stores {
		if !st.synced.Load() {
			return false
		}
	}
	return true
}

// sourceStore is the reflector's store of one Source: the index itself. Replace (the initial
// list, and every relist after a watch could not resume) removes the source's objects the list no
// longer has.
type sourceStore struct {
	ix        *Index
	kind      string
	namespace string
	project   Projection
	synced    atomic.Bool
}

var _ toolscache.TransformingStore = (*sourceStore)(nil)

// Transformer projects each object of a streamed initial list as it arrives, so the reflector's
// temporary store holds Records rather than decoded objects.
func (s *sourceStore) Transformer() toolscache.TransformFunc {
	return func(obj any) (any, error) {
		if c, ok := obj.(keycapv1alpha1.Credential); ok {
			cred, digests := s.project(c)
			return NewRecord(cred, digests), nil
		}
		return obj, nil
	}
}

func (s *sourceStore) Add(obj any) error    { s.ix.apply(obj, s.project); return nil }
func (s *sourceStore) Update(obj any) error { s.ix.apply(obj, s.project); return nil }
func (s *sourceStore) Delete(obj any) error { s.ix.remove(obj); return nil }
func (s *sourceStore) Resync() error        { return nil }

// Replace makes the source's part of the index exactly list.
func (s *sourceStore) Replace(list []any, _ string) error {
	keep := make(map[ObjectKey]struct{}, len(list))
	for _, obj := range list {
		if key, ok := s.ix.apply(obj, s.project); ok {
			keep[key] = struct{}{}
		}
	}
	for _, key := range s.ix.keys(s.kind, s.namespace) {
		if _, ok := keep[key]; !ok {
			s.ix.Delete(key)
		}
	}
	s.synced.Store(true)
	return nil
}

// apply upserts an object arriving decoded or already as a Record, and returns its key.
func (ix *Index) apply(o any, project Projection) (ObjectKey, bool) {
	var (
		cred    *Credential
		digests []KeyDigest
	)
	switch obj := o.(type) {
	case *Record:
		cred, digests = obj.Credential, obj.Digests
	case keycapv1alpha1.Credential:
		cred, digests = project(obj)
	default:
		return ObjectKey{}, false
	}
	ix.Upsert(cred, digests)
	return ObjectKey{Kind: cred.Kind, Namespace: cred.Namespace, Name: cred.Name}, true
}

func (ix *Index) remove(o any) {
	if tomb, ok := o.(toolscache.DeletedFinalStateUnknown); ok {
		o = tomb.Obj
	}
	switch obj := o.(type) {
	case *Record:
		ix.Delete(ObjectKey{Kind: obj.Credential.Kind, Namespace: obj.Credential.Namespace, Name: obj.Credential.Name})
	case keycapv1alpha1.Credential:
		ix.Delete(ObjectKey{Kind: obj.CredentialKind(), Namespace: obj.GetNamespace(), Name: obj.GetName()})
	}
}

// NewCredential fills what the index knows of every kind: identity, key ID, disabled, expiry
// (lifecycle.CredentialExpiry: the earliest of the spec's and the status's), scopes and when it
// was last used. A kind's projection adds the rest.
func NewCredential(obj keycapv1alpha1.Credential) *Credential {
	spec, status := obj.GetCredentialSpec(), obj.GetCredentialStatus()
	// The name and the key ID share one string: one object fewer per credential for the
	// collector to mark (the decoded object's copies become garbage).
	nameAndKeyID := obj.GetName() + status.KeyID
	nameLen := len(obj.GetName())
	c := &Credential{
		Kind:      obj.CredentialKind(),
		Namespace: Intern(obj.GetNamespace()),
		Name:      nameAndKeyID[:nameLen],
		KeyID:     nameAndKeyID[nameLen:],
		Disabled:  spec.Disabled,
		ExpiresAt: InstantOf(lifecycle.CredentialExpiry(obj)),
		CreatedAt: InstantOf(obj.GetCreationTimestamp().Time),
	}
	c.Scopes, c.ScopesHeader = InternedList(spec.Scopes)
	if status.LastUsedAt != nil {
		c.LastUsedAt = InstantOf(status.LastUsedAt.Time)
	}
	return c
}

// InternedList returns list sorted, without duplicates or blanks, each element interned, and
// joined with "," (the header form, interned too).
func InternedList(list []string) ([]string, string) {
	out := NormalizeScopes(list)
	for i, s := range out {
		out[i] = Intern(s)
	}
	return out, Intern(JoinScopes(out))
}

// Intern returns the canonical copy of s, so that the namespaces and scopes many credentials
// share are held once rather than once per credential (the decoded object's copies become
// garbage). Canonical copies nobody uses any more are collected.
func Intern(s string) string { return unique.Make(s).Value() }

// JoinScopes joins scopes with "," for the x-keycap-scopes header.
func JoinScopes(scopes []string) string {
	n := 0
	for _, s := range scopes {
		n += len(s) + 1
	}
	b := make([]byte, 0, n)
	for i, s := range scopes {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, s...)
	}
	return string(b)
}

// KeyDigests returns the digests a status lists (hex, current first): every one after the first
// is a previous key, valid until previousValidUntil when that is set. Malformed and repeated
// digests are skipped.
func KeyDigests(digests []string, previousValidUntil *metav1.Time) []KeyDigest {
	out := make([]KeyDigest, 0, len(digests))
	for i, hexDigest := range digests {
		d, ok := ParseDigest(hexDigest)
		if !ok || slices.ContainsFunc(out, func(k KeyDigest) bool { return k.Digest == d }) {
			continue
		}
		kd := KeyDigest{Digest: d}
		if i > 0 && previousValidUntil != nil {
			kd.NotAfter = InstantOf(previousValidUntil.Time)
		}
		out = append(out, kd)
	}
	return out
}

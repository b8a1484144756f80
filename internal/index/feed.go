package index

import (
	"context"
	"fmt"
	"slices"
	"unique"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	keycapv1alpha1 "github.com/keycap-dev/keycap/api/v1alpha1"
	"github.com/keycap-dev/keycap/internal/lifecycle"
)

// Projection turns a credential object into what the index holds of it: its Credential and the
// digests it lists. Each kind's projection is part of its registry entry (internal/registry); the
// index's consumer passes one that dispatches on the kind and may add what it derives.
type Projection func(keycapv1alpha1.Credential) (*Credential, []KeyDigest)

// Feed registers the index's event handlers on the informers of objs (one empty object of each
// credential kind, as the kind registry lists them) and returns a function reporting whether
// every handler has received the informers' initial list. Objects arrive either decoded (then
// project turns them into Credentials) or already as Records (a cache transform projected them).
// Informers come from the manager's cache; nothing here reads Secrets.
func (ix *Index) Feed(ctx context.Context, informers cache.Informers, objs []client.Object, project Projection) (synced func() bool, err error) {
	var regs []toolscache.ResourceEventHandlerRegistration
	for _, obj := range objs {
		inf, err := informers.GetInformer(ctx, obj, cache.BlockUntilSynced(false))
		if err != nil {
			return nil, fmt.Errorf("getting the %T informer: %w", obj, err)
		}
		reg, err := inf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
			AddFunc:    func(o any) { ix.apply(o, project) },
			UpdateFunc: func(_, o any) { ix.apply(o, project) },
			DeleteFunc: ix.remove,
		})
		if err != nil {
			return nil, fmt.Errorf("watching %T: %w", obj, err)
		}
		regs = append(regs, reg)
	}
	return func() bool {
		for _, r := range regs {
			if !r.HasSynced() {
				return false
			}
		}
		return true
	}, nil
}

func (ix *Index) apply(o any, project Projection) {
	switch obj := o.(type) {
	case *Record:
		ix.Upsert(obj.Credential, obj.Digests)
	case keycapv1alpha1.Credential:
		ix.Upsert(project(obj))
	}
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
	c := &Credential{
		Kind:      obj.CredentialKind(),
		Namespace: Intern(obj.GetNamespace()),
		Name:      obj.GetName(),
		KeyID:     status.KeyID,
		Disabled:  spec.Disabled,
		ExpiresAt: lifecycle.CredentialExpiry(obj),
	}
	c.Scopes, c.ScopesHeader = InternedList(spec.Scopes)
	if status.LastUsedAt != nil {
		c.LastUsedAt = status.LastUsedAt.Time
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
			kd.NotAfter = previousValidUntil.Time
		}
		out = append(out, kd)
	}
	return out
}

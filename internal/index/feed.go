package index

import (
	"context"
	"fmt"
	"slices"
	"time"
	"unique"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	keycapv1alpha1 "github.com/keycap-dev/keycap/api/v1alpha1"
	"github.com/keycap-dev/keycap/internal/activation"
)

// Feed registers the index's event handlers on the informers of the credential kinds (ApiKey,
// AgentKey, AppToken, License) and returns a function reporting whether every handler has received the informers'
// initial list. Informers come from the manager's cache; nothing here reads Secrets.
func (ix *Index) Feed(ctx context.Context, informers cache.Informers) (synced func() bool, err error) {
	var regs []toolscache.ResourceEventHandlerRegistration
	for _, obj := range []client.Object{
		&keycapv1alpha1.ApiKey{}, &keycapv1alpha1.AgentKey{}, &keycapv1alpha1.AppToken{}, &keycapv1alpha1.License{},
	} {
		inf, err := informers.GetInformer(ctx, obj, cache.BlockUntilSynced(false))
		if err != nil {
			return nil, fmt.Errorf("getting the %T informer: %w", obj, err)
		}
		reg, err := inf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
			AddFunc:    func(o any) { ix.apply(o) },
			UpdateFunc: func(_, o any) { ix.apply(o) },
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

func (ix *Index) apply(o any) {
	switch obj := o.(type) {
	case *Record:
		ix.Upsert(obj.Credential, obj.Digests)
	case *keycapv1alpha1.ApiKey:
		ix.Upsert(FromApiKey(obj))
	case *keycapv1alpha1.AgentKey:
		ix.Upsert(FromAgentKey(obj))
	case *keycapv1alpha1.AppToken:
		ix.Upsert(FromAppToken(obj))
	case *keycapv1alpha1.License:
		ix.Upsert(FromLicense(obj))
	}
}

func (ix *Index) remove(o any) {
	if tomb, ok := o.(toolscache.DeletedFinalStateUnknown); ok {
		o = tomb.Obj
	}
	switch obj := o.(type) {
	case *Record:
		ix.Delete(ObjectKey{Kind: obj.Credential.Kind, Namespace: obj.Credential.Namespace, Name: obj.Credential.Name})
	case *keycapv1alpha1.ApiKey:
		ix.Delete(ObjectKey{Kind: KindApiKey, Namespace: obj.Namespace, Name: obj.Name})
	case *keycapv1alpha1.AgentKey:
		ix.Delete(ObjectKey{Kind: KindAgentKey, Namespace: obj.Namespace, Name: obj.Name})
	case *keycapv1alpha1.AppToken:
		ix.Delete(ObjectKey{Kind: KindAppToken, Namespace: obj.Namespace, Name: obj.Name})
	case *keycapv1alpha1.License:
		ix.Delete(ObjectKey{Kind: KindLicense, Namespace: obj.Namespace, Name: obj.Name})
	}
}

// FromApiKey returns the index's view of an ApiKey.
func FromApiKey(k *keycapv1alpha1.ApiKey) (*Credential, []KeyDigest) {
	c := newCredential(KindApiKey, &k.ObjectMeta, &k.Spec.CredentialSpec, k.Spec.Lifetime, &k.Status.CredentialStatus)
	return c, keyDigests(k.Status.OpaqueKeyStatus)
}

// FromAgentKey returns the index's view of an AgentKey.
func FromAgentKey(k *keycapv1alpha1.AgentKey) (*Credential, []KeyDigest) {
	c := newCredential(KindAgentKey, &k.ObjectMeta, &k.Spec.CredentialSpec, k.Spec.Lifetime, &k.Status.CredentialStatus)
	c.Agent, c.ParentName = k.Spec.Agent, k.Spec.APIKeyRef.Name
	return c, keyDigests(k.Status.OpaqueKeyStatus)
}

// FromAppToken returns the index's view of an AppToken: it is found by status.keyID (every token
// it issued carries it in its jti) and lists no digests. Its expiry is the object's own
// (status.expiresAt or spec.expiresAt); each token's exp is judged by the verifier.
func FromAppToken(t *keycapv1alpha1.AppToken) (*Credential, []KeyDigest) {
	// An AppToken's duration is each token's lifetime, not the object's: only expiresAt bounds it.
	lifetime := keycapv1alpha1.Lifetime{ExpiresAt: t.Spec.ExpiresAt}
	return newCredential(KindAppToken, &t.ObjectMeta, &t.Spec.CredentialSpec, lifetime, &t.Status.CredentialStatus), nil
}

// FromLicense returns the index's view of a License, found by its licence key's digest.
func FromLicense(l *keycapv1alpha1.License) (*Credential, []KeyDigest) {
	c := newCredential(KindLicense, &l.ObjectMeta, &l.Spec.CredentialSpec, l.Spec.Lifetime, &l.Status.CredentialStatus)
	ld := &LicenseData{
		Entitlements:     NormalizeScopes(l.Spec.Entitlements),
		HeartbeatTimeout: activation.HeartbeatTimeout(&l.Spec),
		MaxInstances:     activation.MaxInstances(&l.Spec),
	}
	ld.EntitlementsHeader = joinScopes(ld.Entitlements)
	if n := len(l.Status.Activations); n > 0 {
		ld.Activations = make([]Activation, n)
		for i, a := range l.Status.Activations {
			ld.Activations[i] = Activation{InstanceID: a.InstanceID, ActivatedAt: a.ActivatedAt.Time, LastSeenAt: a.LastSeenAt.Time}
		}
	}
	c.License = ld
	return c, keyDigests(keycapv1alpha1.OpaqueKeyStatus{Digests: l.Status.Digests})
}

// newCredential fills what the index knows of every kind: identity, key ID, disabled, expiry
// (the earliest of the spec's and the status's), scopes and when it was last used.
func newCredential(kind string, meta *metav1.ObjectMeta, spec *keycapv1alpha1.CredentialSpec,
	lifetime keycapv1alpha1.Lifetime, status *keycapv1alpha1.CredentialStatus) *Credential {
	c := &Credential{
		Kind:      kind,
		Namespace: intern(meta.Namespace),
		Name:      meta.Name,
		KeyID:     status.KeyID,
		Disabled:  spec.Disabled,
		ExpiresAt: expiry(meta.CreationTimestamp, lifetime, status.ExpiresAt),
	}
	setScopes(c, spec.Scopes)
	if status.LastUsedAt != nil {
		c.LastUsedAt = status.LastUsedAt.Time
	}
	return c
}

func setScopes(c *Credential, scopes []string) {
	c.Scopes = NormalizeScopes(scopes)
	for i, s := range c.Scopes {
		c.Scopes[i] = intern(s)
	}
	c.ScopesHeader = intern(joinScopes(c.Scopes))
}

// intern returns the canonical copy of s, so that the namespaces and scopes many credentials
// share are held once rather than once per credential (the decoded object's copies become
// garbage). Canonical copies nobody uses any more are collected.
func intern(s string) string { return unique.Make(s).Value() }

func joinScopes(scopes []string) string {
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

// JoinScopes joins scopes with "," for the x-keycap-scopes header.
func JoinScopes(scopes []string) string { return joinScopes(scopes) }

// expiry is the earliest of every expiry the object states, so that the data plane refuses an
// expired key even before the controller has written status.expiresAt.
func expiry(created metav1.Time, spec keycapv1alpha1.Lifetime, status *metav1.Time) time.Time {
	var out time.Time
	consider := func(t time.Time) {
		if !t.IsZero() && (out.IsZero() || t.Before(out)) {
			out = t
		}
	}
	if status != nil {
		consider(status.Time)
	}
	if spec.ExpiresAt != nil {
		consider(spec.ExpiresAt.Time)
	}
	if spec.Duration != nil && !created.IsZero() {
		consider(created.Add(spec.Duration.Duration))
	}
	return out
}

func keyDigests(s keycapv1alpha1.OpaqueKeyStatus) []KeyDigest {
	out := make([]KeyDigest, 0, len(s.Digests))
	for i, hexDigest := range s.Digests {
		d, ok := ParseDigest(hexDigest)
		if !ok || slices.ContainsFunc(out, func(k KeyDigest) bool { return k.Digest == d }) {
			continue
		}
		kd := KeyDigest{Digest: d}
		if i > 0 && s.PreviousKeyValidUntil != nil {
			kd.NotAfter = s.PreviousKeyValidUntil.Time
		}
		out = append(out, kd)
	}
	return out
}

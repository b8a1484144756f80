package registry

import (
	keycapv1alpha1 "github.com/keycap-dev/keycap/api/v1alpha1"
	"github.com/keycap-dev/keycap/internal/index"
	"github.com/keycap-dev/keycap/internal/lifecycle"
)

// Project is the index.Projection of every kind: the projection of obj's registry entry.
func Project(obj keycapv1alpha1.Credential) (*index.Credential, []index.KeyDigest) {
	return Of(obj).Project(obj)
}

// projectOpaqueKey is an ApiKey as the index holds it: found by the digests of its current key
// and, through a rotation's grace period, its previous one.
func projectOpaqueKey(obj keycapv1alpha1.Credential) (*index.Credential, []index.KeyDigest) {
	status := obj.(keycapv1alpha1.OpaqueKeyCredential).GetOpaqueKeyStatus()
	return index.NewCredential(obj), index.KeyDigests(status.Digests, status.PreviousKeyValidUntil)
}

// projectAgentKey is an opaque key valid only under its parent ApiKey.
func projectAgentKey(obj keycapv1alpha1.Credential) (*index.Credential, []index.KeyDigest) {
	k := obj.(*keycapv1alpha1.AgentKey)
	c, digests := projectOpaqueKey(k)
	c.Data = &index.AgentData{Agent: k.Spec.Agent}
	if k.Spec.APIKeyRef.Name != "" {
		c.ParentKey = &index.ObjectKey{Kind: keycapv1alpha1.KindApiKey, Namespace: c.Namespace, Name: k.Spec.APIKeyRef.Name}
	}
	return c, digests
}

// projectAppToken is found by status.keyID (every token it issued carries it in its jti) and
// lists no digests. Its expiry is the object's own (GetLifetime: spec.expiresAt, not the token
// lifetime); each token's exp is judged by the verifier, and tokens issued before
// status.tokensNotBefore are revoked.
func projectAppToken(obj keycapv1alpha1.Credential) (*index.Credential, []index.KeyDigest) {
	t := obj.(*keycapv1alpha1.AppToken)
	c := index.NewCredential(t)
	c.FoundByKeyID = true
	if t.Status.TokensNotBefore != nil {
		c.Data = &index.AppTokenData{TokensNotBefore: t.Status.TokensNotBefore.Time}
	}
	return c, nil
}

// projectLicense is found by its licence key's digest, with what the seat rule needs.
func projectLicense(obj keycapv1alpha1.Credential) (*index.Credential, []index.KeyDigest) {
	l := obj.(*keycapv1alpha1.License)
	c := index.NewCredential(l)
	ld := &index.LicenseData{
		HeartbeatTimeout: lifecycle.HeartbeatTimeout(&l.Spec),
		MaxInstances:     lifecycle.MaxInstances(&l.Spec),
		Activations:      lifecycle.ActivationsOf(l.Status.Activations),
	}
	ld.Entitlements, ld.EntitlementsHeader = index.InternedList(l.Spec.Entitlements)
	c.Data = ld
	return c, index.KeyDigests(l.Status.Digests, nil)
}

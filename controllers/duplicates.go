package controllers

import (
	"context"
	"fmt"
	"slices"

	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	keycapv1alpha1 "github.com/keycap-dev/keycap/api/v1alpha1"
	"github.com/keycap-dev/keycap/internal/keys"
	"github.com/keycap-dev/keycap/internal/registry"
)

// Duplicate keys.
//
// The webhook refuses a key digest another credential already holds, but two creates can race
// past that check (and with the webhook down there is no check). The controller settles such a
// race after the fact, deterministically, with the registry.IndexDigest field index, which lists
// every credential of every kind holding a digest (in status, or as a bring-your-own spec.keyHash):
//
//   - the oldest credential (creationTimestamp, then namespace/name, then kind) holding a digest
//     keeps it; disabled or expired, it still keeps it, so the outcome never flaps;
//   - every other one is Ready=False with reason DuplicateKey, and its status.digests no longer
//     lists the digest, so the data plane serves the oldest one only; its message names no other
//     object (it may belong to another tenant);
//   - a credential being deleted holds nothing, and an event of any credential holding a digest
//     reconciles the others holding it (credentialsSharingDigests): when the oldest goes, the next
//     one takes over.
//
// A generated key is fresh random and never collides; in practice only keyHash digests race.

// settleDuplicates removes from obj's status the digests an older credential holds, and fails
// with DuplicateKey if it removed any.
func (r *kindReconciler) settleDuplicates(ctx context.Context, obj keycapv1alpha1.Credential) error {
	holder, ok := r.issuer.(digestIssuer)
	if !ok {
		return nil
	}
	var lost []string
	for _, d := range registry.Digests(obj) {
		older, err := r.olderHolder(ctx, obj, d)
		if err != nil {
			return err
		}
		if older && !slices.Contains(lost, d) {
			lost = append(lost, d)
		}
	}
	if len(lost) == 0 {
		return nil
	}
	digests := holder.statusDigests(obj)
	if len(*digests) > 0 && slices.Contains(lost, (*digests)[0]) {
		// The current key is not this credential's: nothing it lists is served.
		r.issuer.revoke(obj, r.Clock.Now())
	} else if o, ok := obj.(keycapv1alpha1.OpaqueKeyCredential); ok && len(*digests) > 1 {
		// Only the previous key in its grace period is someone else's: it ends now.
		*digests = (*digests)[:1]
		o.GetOpaqueKeyStatus().PreviousKeyValidUntil = nil
	}
	return failf(keycapv1alpha1.ReasonDuplicateKey,
		"another credential, created earlier, holds the same key (%s): only that one is served, and this %s is refused until it has a key of its own (e.g. a different spec.keyHash)",
		keys.KeyID(lost[0]), r.Kind)
}

// olderHolder reports whether a credential older than obj, of any kind found by digest, holds
// digest.
func (r *kindReconciler) olderHolder(ctx context.Context, obj keycapv1alpha1.Credential, digest string) (bool, error) {
	for _, k := range registry.Kinds() {
		if !k.FoundByDigest {
			continue
		}
		list := k.NewList()
		if err := r.List(ctx, list, client.MatchingFields{registry.IndexDigest: digest}); err != nil {
			return false, fmt.Errorf("listing %s by key digest: %w", k.Name, err)
		}
		for _, c := range list.Credentials() {
			if c.GetUID() != obj.GetUID() && c.GetDeletionTimestamp() == nil && olderThan(c, obj) {
				return true, nil
			}
		}
	}
	return false, nil
}

// olderThan orders credentials for the duplicate rule: by creationTimestamp, then namespace,
// name and kind, so any two distinct credentials compare the same way everywhere.
func olderThan(a, b keycapv1alpha1.Credential) bool {
	ta, tb := a.GetCreationTimestamp().Time, b.GetCreationTimestamp().Time
	if !ta.Equal(tb) {
		return ta.Before(tb)
	}
	ka := []string{a.GetNamespace(), a.GetName(), a.CredentialKind()}
	kb := []string{b.GetNamespace(), b.GetName(), b.CredentialKind()}
	return slices.Compare(ka, kb) < 0
}

// credentialsSharingDigests maps an event of any credential to the credentials of this
// reconciler's kind that hold one of its digests (for an update, controller-runtime maps the old
// and the new object, so a digest given up is seen too).
func (r *kindReconciler) credentialsSharingDigests(ctx context.Context, o client.Object) []reconcile.Request {
	c, ok := o.(keycapv1alpha1.Credential)
	if !ok {
		return nil
	}
	var reqs []reconcile.Request
	for _, d := range registry.Digests(c) {
		list := r.kind.NewList()
		if err := r.List(ctx, list, client.MatchingFields{registry.IndexDigest: d}); err != nil {
			logf.FromContext(ctx).Error(err, "listing credentials by key digest", "kind", r.Kind)
			return nil
		}
		for _, other := range list.Credentials() {
			if other.GetUID() != c.GetUID() {
				reqs = append(reqs, reconcile.Request{NamespacedName: types.NamespacedName{Namespace: other.GetNamespace(), Name: other.GetName()}})
			}
		}
	}
	return reqs
}

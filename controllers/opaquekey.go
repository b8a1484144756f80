package controllers

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	keycapv1alpha1 "github.com/keycap-dev/keycap/api/v1alpha1"
	"github.com/keycap-dev/keycap/internal/keys"
)

// This file is the lifecycle of the opaque-key kinds (ApiKey, AgentKey), written once.
//
// The key lives only in the Secret, and so does everything else the lifecycle needs to remember
// (when the key was issued, the previous key's digest and the end of its grace period, the last
// rotation request acted on), as keycap.dev/* annotations next to it. The status is recomputed from
// the Secret, the spec and the clock on every reconcile, so a restart, resync or leader change
// never changes a key, and a lost or stale status heals itself. A key changes only when the
// Secret is deleted or no longer holds a valid key (re-issue: the old key stops being valid at
// once), by scheduled rotation (spec.rotation.every) or when the keycap.dev/rotate annotation
// changes (the previous key stays valid for spec.rotation.gracePeriod).
//
// With spec.keyHash (bring your own key) keycap generates no key and writes no Secret at all:
// there is nothing secret to write, and a Secret without the key would only mislead workloads
// that mount it. The digest comes from keyHash and status.secretName stays empty.

// Annotations on an opaque key's Secret. Digests are public (they are in the status too); the
// times are RFC 3339.
const (
	annotationIssuedAt           = "keycap.dev/issued-at"
	annotationPreviousDigest     = "keycap.dev/previous-digest"
	annotationPreviousValidUntil = "keycap.dev/previous-valid-until"
	annotationRotateObserved     = "keycap.dev/rotate-observed"
)

// opaqueKey adapts one opaque-key credential to the shared lifecycle: pointers into the object.
type opaqueKey struct {
	obj      client.Object
	spec     *keycapv1alpha1.CredentialSpec
	lifetime keycapv1alpha1.Lifetime
	opaque   keycapv1alpha1.OpaqueKeySpec
	// prefix of generated keys; dataKey is the Secret data key that holds the key.
	prefix, dataKey string
	status          *keycapv1alpha1.CredentialStatus
	keyStatus       *keycapv1alpha1.OpaqueKeyStatus
}

// keyOutcome is the credential's own state after the lifecycle ran: the Ready reason and message
// it calls for, and when the next timed decision (rotation, end of grace, expiry) is due.
type keyOutcome struct {
	reason, message string
	// next is when the lifecycle must run again; nil when nothing is scheduled.
	next *time.Time
}

// heldKey is what an opaque key's Secret holds. key is the plaintext: never log it.
type heldKey struct {
	key            string
	issuedAt       time.Time
	previousDigest string
	previousUntil  *time.Time
	rotateObserved string
}

// reconcileOpaqueKey runs the opaque-key lifecycle for k and fills its status, except the Ready
// condition, which the caller sets from the outcome (an AgentKey may still be ParentInactive).
func (r *credentialReconciler) reconcileOpaqueKey(ctx context.Context, k opaqueKey) (keyOutcome, error) {
	now := r.Clock.Now()
	expiresAt := expiryTime(k.obj.GetCreationTimestamp(), k.lifetime)
	expired := isExpired(now, expiresAt)
	k.status.ExpiresAt = expiresAt

	var deadlines []*time.Time
	if k.opaque.KeyHash != "" {
		if err := r.applyKeyHash(k, now); err != nil {
			return keyOutcome{}, err
		}
	} else {
		d, err := r.reconcileKeySecret(ctx, k, now, expired)
		if err != nil {
			return keyOutcome{}, err
		}
		deadlines = d
	}
	if expiresAt != nil {
		deadlines = append(deadlines, &expiresAt.Time)
	}

	out := keyOutcome{next: nextDeadline(now, deadlines...)}
	switch {
	case k.spec.Disabled:
		out.reason, out.message = keycapv1alpha1.ReasonDisabled, "spec.disabled is true; the key is kept and works again once the credential is enabled"
	case expired:
		out.reason, out.message = keycapv1alpha1.ReasonExpired, "the credential expired at "+expiresAt.UTC().Format(time.RFC3339)
		if readyReason(k.status) != keycapv1alpha1.ReasonExpired {
			r.event(k.obj, EventReasonExpired, out.message)
		}
	case k.opaque.KeyHash != "":
		out.reason, out.message = keycapv1alpha1.ReasonIssued, "the key digest from spec.keyHash is active"
	default:
		out.reason, out.message = keycapv1alpha1.ReasonIssued, "the key is issued into Secret "+k.status.SecretName
	}
	return out, nil
}

// applyKeyHash fills the status of a bring-your-own key from spec.keyHash.
func (r *credentialReconciler) applyKeyHash(k opaqueKey, now time.Time) error {
	digest := keys.DigestFromKeyHash(k.opaque.KeyHash)
	if digest == "" {
		// The CRD's pattern forbids this; it can only come from a schema that was bypassed.
		return failf(keycapv1alpha1.ReasonInvalidSpec, "spec.keyHash must be sha256:<64 lowercase hex>")
	}
	if len(k.keyStatus.Digests) == 0 || k.keyStatus.Digests[0] != digest || k.status.LastRotatedAt == nil {
		t := metav1.NewTime(now.Truncate(time.Second))
		k.status.LastRotatedAt = &t
	}
	k.keyStatus.Digests = []string{digest}
	k.keyStatus.PreviousKeyValidUntil = nil
	k.status.KeyID = keys.KeyID(digest)
	k.status.Hint = ""
	k.status.SecretName = ""
	return nil
}

// reconcileKeySecret issues, re-issues or rotates the key in k's Secret as needed, writes the
// Secret, fills the status from it and returns the deadlines of the next timed decisions.
func (r *credentialReconciler) reconcileKeySecret(ctx context.Context, k opaqueKey, now time.Time, expired bool) ([]*time.Time, error) {
	name := secretName(k.obj, k.spec)
	secret, err := r.getOwnedSecret(ctx, k.obj, name)
	if err != nil {
		return nil, err
	}
	rotation := k.opaque.Rotation
	rotateRequest := k.obj.GetAnnotations()[keycapv1alpha1.AnnotationRotate]
	issuedAt := now.Truncate(time.Second)

	type event struct{ reason, note string }
	var events []event
	held, problem := readHeldKey(secret, name, k.dataKey, k.prefix)
	if problem != "" {
		key, err := keys.Generate(k.prefix)
		if err != nil {
			return nil, err
		}
		held = heldKey{key: key, issuedAt: issuedAt, rotateObserved: rotateRequest}
		keyID := keys.KeyID(keys.Digest(key))
		if secret == nil && len(k.keyStatus.Digests) == 0 {
			events = append(events, event{EventReasonIssued, fmt.Sprintf("issued key %s into Secret %s", keyID, name)})
		} else {
			events = append(events, event{EventReasonReissued, fmt.Sprintf("%s: issued a new key %s; the previous key stopped being valid", problem, keyID)})
		}
	} else {
		if held.previousDigest != "" {
			held.previousUntil = previousKeyValidUntil(now, held.issuedAt, held.previousUntil, rotation)
			if held.previousUntil == nil {
				events = append(events, event{EventReasonGracePeriodEnded, fmt.Sprintf("the previous key %s stopped being valid", keys.KeyID(held.previousDigest))})
				held.previousDigest = ""
			}
		}
		reason, message, rotate := shouldRotate(rotationInput{
			now: now, issuedAt: held.issuedAt, rotation: rotation,
			rotateRequest: rotateRequest, rotateObserved: held.rotateObserved,
			disabled: k.spec.Disabled, expired: expired,
		})
		if rotate {
			key, err := keys.Generate(k.prefix)
			if err != nil {
				return nil, err
			}
			old := held
			held = heldKey{key: key, issuedAt: issuedAt, rotateObserved: rotateRequest}
			oldID, newID := keys.KeyID(keys.Digest(old.key)), keys.KeyID(keys.Digest(key))
			note := fmt.Sprintf("%s: key %s replaces %s, which stopped being valid", message, newID, oldID)
			if grace := gracePeriod(rotation); grace > 0 {
				until := issuedAt.Add(grace)
				held.previousDigest, held.previousUntil = keys.Digest(old.key), &until
				note = fmt.Sprintf("%s: key %s replaces %s, which stays valid until %s", message, newID, oldID, until.UTC().Format(time.RFC3339))
			}
			events = append(events, event{reason, note})
		}
	}

	if _, err := r.writeOwnedSecret(ctx, k.obj, name, secret, held.content(k)); err != nil {
		return nil, err
	}
	if old := k.status.SecretName; old != "" && old != name {
		// spec.secretName was set after the key was issued under the default name: the old Secret
		// holds a key no longer valid, so it goes.
		if err := r.deleteOwnedSecret(ctx, k.obj, old); err != nil {
			return nil, err
		}
	}
	for _, e := range events {
		r.event(k.obj, e.reason, e.note)
	}

	digest := keys.Digest(held.key)
	k.keyStatus.Digests = []string{digest}
	k.keyStatus.PreviousKeyValidUntil = nil
	if held.previousDigest != "" && held.previousUntil != nil {
		k.keyStatus.Digests = append(k.keyStatus.Digests, held.previousDigest)
		until := metav1.NewTime(*held.previousUntil)
		k.keyStatus.PreviousKeyValidUntil = &until
	}
	k.status.KeyID = keys.KeyID(digest)
	k.status.Hint = keys.Hint(held.key)
	issued := metav1.NewTime(held.issuedAt)
	k.status.LastRotatedAt = &issued
	k.status.SecretName = name

	deadlines := []*time.Time{held.previousUntil}
	if !k.spec.Disabled && !expired {
		deadlines = append(deadlines, nextRotation(held.issuedAt, rotation))
	}
	return deadlines, nil
}

// readHeldKey reads the key and its bookkeeping from an opaque key's Secret. problem is non-empty
// (and says why, without the key) when the Secret holds no usable key: the caller then issues a
// new one. A key whose keyID does not match the one keycap recorded was edited by someone else and
// is not trusted.
func readHeldKey(secret *corev1.Secret, name, dataKey, prefix string) (held heldKey, problem string) {
	if secret == nil {
		return heldKey{}, fmt.Sprintf("Secret %s did not exist", name)
	}
	key := string(secret.Data[dataKey])
	switch {
	case key == "":
		return heldKey{}, fmt.Sprintf("Secret %s held no %s", name, dataKey)
	case keys.Check(key) != nil:
		return heldKey{}, fmt.Sprintf("Secret %s held a malformed %s", name, dataKey)
	case keys.Prefix(key) != prefix:
		return heldKey{}, fmt.Sprintf("the key prefix changed to %q", prefix)
	case secret.Annotations[keycapv1alpha1.AnnotationKeyID] != keys.KeyID(keys.Digest(key)):
		return heldKey{}, fmt.Sprintf("Secret %s held a %s keycap did not issue", name, dataKey)
	}
	held = heldKey{
		key:            key,
		issuedAt:       secret.CreationTimestamp.Time,
		rotateObserved: secret.Annotations[annotationRotateObserved],
	}
	if t, err := time.Parse(time.RFC3339, secret.Annotations[annotationIssuedAt]); err == nil {
		held.issuedAt = t
	}
	if digest := secret.Annotations[annotationPreviousDigest]; keys.DigestFromKeyHash("sha256:"+digest) != "" {
		if t, err := time.Parse(time.RFC3339, secret.Annotations[annotationPreviousValidUntil]); err == nil {
			held.previousDigest, held.previousUntil = digest, &t
		}
	}
	return held, ""
}

// content is what the Secret must hold for this key.
func (h heldKey) content(k opaqueKey) secretContent {
	annotations := map[string]string{
		keycapv1alpha1.AnnotationKeyID: keys.KeyID(keys.Digest(h.key)),
		annotationIssuedAt:             h.issuedAt.UTC().Format(time.RFC3339),
	}
	if h.rotateObserved != "" {
		annotations[annotationRotateObserved] = h.rotateObserved
	}
	if h.previousDigest != "" && h.previousUntil != nil {
		annotations[annotationPreviousDigest] = h.previousDigest
		annotations[annotationPreviousValidUntil] = h.previousUntil.UTC().Format(time.RFC3339)
	}
	return secretContent{
		template:    k.spec.SecretTemplate,
		annotations: annotations,
		data:        map[string][]byte{k.dataKey: []byte(h.key)},
	}
}

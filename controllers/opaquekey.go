package controllers

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	keycapv1alpha1 "github.com/keycap-dev/keycap/api/v1alpha1"
	"github.com/keycap-dev/keycap/internal/keys"
	"github.com/keycap-dev/keycap/internal/lifecycle"
)

// This file is the issuer of the opaque-key kinds (ApiKey, AgentKey), written once.
//
// The key lives only in the Secret; status records its digest, when it was issued, the previous
// key's digest and the end of its grace period, and is the only record keycap believes (see
// secret.go). The Secret's keycap.dev/* annotations repeat those facts for people and tools, and
// keycap.dev/rotate-observed remembers the last rotation request acted on. A restart, resync or
// leader change never changes a key. A key changes only when the Secret is deleted or no longer
// holds the key status records (re-issue: the old key stops being valid at once; a Secret holding
// another key was tampered with and its key is treated as compromised, so no grace period), by
// scheduled rotation (spec.rotation.every) or when the keycap.dev/rotate annotation changes (the
// previous key stays valid for spec.rotation.gracePeriod).
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

// opaqueKeyIssuer issues the keys of an opaque-key kind.
type opaqueKeyIssuer struct {
	r *credentialReconciler
	// dataKey is the Secret data key that holds the key.
	dataKey string
	// prefix is the type prefix of obj's generated keys.
	prefix func(obj keycapv1alpha1.OpaqueKeyCredential) string
}

func (i *opaqueKeyIssuer) usesSecret(obj keycapv1alpha1.Credential) bool {
	return obj.(keycapv1alpha1.OpaqueKeyCredential).GetOpaqueKeySpec().KeyHash == ""
}

// vouches: the Secret holds the key whose digest status lists first.
func (i *opaqueKeyIssuer) vouches(obj keycapv1alpha1.Credential, secret *corev1.Secret) bool {
	return heldKeyVouched(secret, i.dataKey, obj.GetStatusDigests())
}

func (i *opaqueKeyIssuer) revoke(obj keycapv1alpha1.Credential, _ time.Time) {
	s := obj.(keycapv1alpha1.OpaqueKeyCredential).GetOpaqueKeyStatus()
	s.Digests, s.PreviousKeyValidUntil = nil, nil
}

func (i *opaqueKeyIssuer) statusDigests(obj keycapv1alpha1.Credential) *[]string {
	return &obj.(keycapv1alpha1.OpaqueKeyCredential).GetOpaqueKeyStatus().Digests
}

func (i *opaqueKeyIssuer) issue(_ context.Context, in issueInput) (issueResult, error) {
	k := in.obj.(keycapv1alpha1.OpaqueKeyCredential)
	if !i.usesSecret(k) {
		return i.applyKeyHash(k, in.now)
	}
	return i.issueKey(k, in)
}

// rotationInterrupted reports whether the Secret holds the key status lists second, still in its
// grace period: a rotation whose status was written and whose Secret write never happened (status
// is written first; see kindReconciler.reconcile).
func rotationInterrupted(secret *corev1.Secret, dataKey string, ks *keycapv1alpha1.OpaqueKeyStatus) bool {
	key := string(secret.Data[dataKey])
	return key != "" && len(ks.Digests) == 2 && ks.PreviousKeyValidUntil != nil && keys.Digest(key) == ks.Digests[1]
}

// heldKeyVouched reports whether the Secret holds, under dataKey, the key whose digest status
// lists first.
func heldKeyVouched(secret *corev1.Secret, dataKey string, digests []string) bool {
	key := string(secret.Data[dataKey])
	return key != "" && len(digests) > 0 && keys.Digest(key) == digests[0]
}

// applyKeyHash fills the status of a bring-your-own key from spec.keyHash.
func (i *opaqueKeyIssuer) applyKeyHash(k keycapv1alpha1.OpaqueKeyCredential, now time.Time) (issueResult, error) {
	digest := keys.DigestFromKeyHash(k.GetOpaqueKeySpec().KeyHash)
	if digest == "" {
		// The CRD's pattern forbids this; it can only come from a schema that was bypassed.
		return issueResult{}, failf(keycapv1alpha1.ReasonInvalidSpec, "spec.keyHash must be sha256:<64 lowercase hex>")
	}
	status, ks := k.GetCredentialStatus(), k.GetOpaqueKeyStatus()
	// Compared by keyID, which stays when the duplicate rule withdraws the digest: the time the
	// key was set moves only when the key does.
	if status.KeyID != keys.KeyID(digest) || status.LastRotatedAt == nil {
		t := metav1.NewTime(now.Truncate(time.Second))
		status.LastRotatedAt = &t
	}
	ks.Digests = []string{digest}
	ks.PreviousKeyValidUntil = nil
	status.KeyID = keys.KeyID(digest)
	status.Hint = ""
	status.SecretName = ""
	return issueResult{issued: "the key digest from spec.keyHash is active"}, nil
}

// heldKey is the key an opaque key's Secret holds and its bookkeeping. key is the plaintext:
// never log it.
type heldKey struct {
	key            string
	issuedAt       time.Time
	previousDigest string
	previousUntil  *time.Time
	rotateObserved string
}

// issueKey issues, re-issues or rotates the key as needed and fills the status from the result.
func (i *opaqueKeyIssuer) issueKey(k keycapv1alpha1.OpaqueKeyCredential, in issueInput) (issueResult, error) {
	status, ks := k.GetCredentialStatus(), k.GetOpaqueKeyStatus()
	rotation := k.GetOpaqueKeySpec().Rotation
	rotateRequest := k.GetAnnotations()[keycapv1alpha1.AnnotationRotate]
	prefix := i.prefix(k)
	issuedAt := in.now.Truncate(time.Second)
	var events []event

	held, vouched := heldKey{}, in.secret != nil && i.vouches(k, in.secret)
	if vouched {
		held = heldKey{
			key:            string(in.secret.Data[i.dataKey]),
			issuedAt:       in.secret.CreationTimestamp.Time,
			rotateObserved: in.secret.Annotations[annotationRotateObserved],
		}
		// Status, not the Secret's annotations, says when the key was issued and which previous
		// key is in its grace period.
		if status.LastRotatedAt != nil {
			held.issuedAt = status.LastRotatedAt.Time
		}
		if len(ks.Digests) > 1 && ks.PreviousKeyValidUntil != nil {
			until := ks.PreviousKeyValidUntil.Time
			held.previousDigest, held.previousUntil = ks.Digests[1], &until
		}
	}

	switch {
	case !vouched && in.secret != nil && rotationInterrupted(in.secret, i.dataKey, ks):
		// A rotation was committed to status (its new key first, the Secret's key second with its
		// grace period) and the operator stopped before the new key reached the Secret. The new
		// key was never delivered, so it is replaced; the Secret's key, which status vouches for
		// as the previous one, keeps its grace period.
		key, err := keys.Generate(prefix)
		if err != nil {
			return issueResult{}, err
		}
		until := ks.PreviousKeyValidUntil.Time
		held = heldKey{key: key, issuedAt: issuedAt, rotateObserved: rotateRequest, previousDigest: ks.Digests[1], previousUntil: &until}
		events = append(events, event{EventReasonRotated, fmt.Sprintf("the rotation was interrupted before its key reached Secret %s: key %s replaces %s, which stays valid until %s",
			in.name, keys.KeyID(keys.Digest(key)), keys.KeyID(ks.Digests[1]), until.UTC().Format(time.RFC3339))})
	case !vouched:
		key, err := keys.Generate(prefix)
		if err != nil {
			return issueResult{}, err
		}
		held = heldKey{key: key, issuedAt: issuedAt, rotateObserved: rotateRequest}
		events = append(events, issueEvent(causeOf(in, len(ks.Digests) > 0), "key", keys.KeyID(keys.Digest(key)), in.name))
	case keys.Prefix(held.key) != prefix:
		key, err := keys.Generate(prefix)
		if err != nil {
			return issueResult{}, err
		}
		oldID := keys.KeyID(keys.Digest(held.key))
		held = heldKey{key: key, issuedAt: issuedAt, rotateObserved: rotateRequest}
		events = append(events, event{EventReasonReissued, fmt.Sprintf("the key prefix changed to %q: issued a new key %s; the previous key %s stopped being valid",
			prefix, keys.KeyID(keys.Digest(key)), oldID)})
	default:
		if held.previousDigest != "" {
			held.previousUntil = lifecycle.PreviousKeyValidUntil(in.now, held.issuedAt, held.previousUntil, rotation)
			if held.previousUntil == nil {
				events = append(events, event{EventReasonGracePeriodEnded, fmt.Sprintf("the previous key %s stopped being valid", keys.KeyID(held.previousDigest))})
				held.previousDigest = ""
			}
		}
		reason, message, rotate := lifecycle.ShouldRotate(lifecycle.RotationInput{
			Now: in.now, IssuedAt: held.issuedAt, Rotation: rotation,
			RotateRequest: rotateRequest, RotateObserved: held.rotateObserved,
			Disabled: k.GetCredentialSpec().Disabled, Expired: in.expired,
		})
		if rotate {
			key, err := keys.Generate(prefix)
			if err != nil {
				return issueResult{}, err
			}
			old := held
			held = heldKey{key: key, issuedAt: issuedAt, rotateObserved: rotateRequest}
			oldID, newID := keys.KeyID(keys.Digest(old.key)), keys.KeyID(keys.Digest(key))
			note := fmt.Sprintf("%s: key %s replaces %s, which stopped being valid", message, newID, oldID)
			if grace := lifecycle.GracePeriod(rotation); grace > 0 {
				until := issuedAt.Add(grace)
				held.previousDigest, held.previousUntil = keys.Digest(old.key), &until
				note = fmt.Sprintf("%s: key %s replaces %s, which stays valid until %s", message, newID, oldID, until.UTC().Format(time.RFC3339))
			}
			events = append(events, event{reason, note})
		}
	}

	digest := keys.Digest(held.key)
	ks.Digests = []string{digest}
	ks.PreviousKeyValidUntil = nil
	if held.previousDigest != "" && held.previousUntil != nil {
		ks.Digests = append(ks.Digests, held.previousDigest)
		until := metav1.NewTime(*held.previousUntil)
		ks.PreviousKeyValidUntil = &until
	}
	status.KeyID = keys.KeyID(digest)
	status.Hint = keys.Hint(held.key)
	issued := metav1.NewTime(held.issuedAt)
	status.LastRotatedAt = &issued
	status.SecretName = in.name

	deadlines := []*time.Time{held.previousUntil}
	if !k.GetCredentialSpec().Disabled && !in.expired {
		deadlines = append(deadlines, lifecycle.NextRotation(held.issuedAt, rotation))
	}
	content := held.content(k.GetCredentialSpec().SecretTemplate, i.dataKey)
	return issueResult{
		content:   &content,
		events:    events,
		deadlines: deadlines,
		issued:    "the key is issued into Secret " + in.name,
	}, nil
}

// content is what the Secret must hold for this key.
func (h heldKey) content(template *keycapv1alpha1.SecretTemplate, dataKey string) secretContent {
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
		template:    template,
		annotations: annotations,
		data:        map[string][]byte{dataKey: []byte(h.key)},
	}
}

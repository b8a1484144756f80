package controllers

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	keycapv1alpha1 "github.com/keycap-dev/keycap/api/v1alpha1"
	"github.com/keycap-dev/keycap/internal/activation"
	"github.com/keycap-dev/keycap/internal/keys"
	"github.com/keycap-dev/keycap/internal/licensefile"
	"github.com/keycap-dev/keycap/internal/signing"
)

// EventReasonReleased says that instances that had not checked in within heartbeatTimeout lost their seat.
const EventReasonReleased = "InstancesReleased"

// LicenseReconciler reconciles Licenses: the licence key (data key license-key, format of
// internal/keys with prefix kclic) and a licence file signed with keycap's licence key (data key
// license-file, see internal/licensefile) in the Secret, the key's digest in status.digests, and
// the release of activations not seen within heartbeatTimeout.
//
// The licence key never changes once issued (deleting the Secret re-issues, like the other kinds);
// the licence file is re-signed whenever what it asserts changes (plan, entitlements, expiry, ...).
// status.activations is written by the activation endpoint with optimistic concurrency; the
// controller only removes stale entries, with the same optimistic lock, never through the
// reconcile's status patch.
type LicenseReconciler struct {
	credentialReconciler
	// Keys holds the licence signing key.
	Keys *signing.Manager
}

// Reconcile does the plumbing (get, status patch); reconcile holds the logic.
func (r *LicenseReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	var lic keycapv1alpha1.License
	if live, err := r.getLive(ctx, req, &lic); !live {
		return ctrl.Result{}, err
	}
	nextRelease, err := r.releaseStale(ctx, &lic)
	if err != nil {
		return ctrl.Result{}, err
	}
	return r.withStatusPatch(ctx, &lic, func() (ctrl.Result, error) { return r.reconcile(ctx, &lic, nextRelease) })
}

// reconcile issues the key and file; nextRelease is when the next activation goes stale.
func (r *LicenseReconciler) reconcile(ctx context.Context, lic *keycapv1alpha1.License, nextRelease time.Time) (ctrl.Result, error) {
	now := r.Clock.Now()
	expiresAt := expiryTime(lic.CreationTimestamp, lic.Spec.Lifetime)
	lic.Status.ExpiresAt = expiresAt
	expired := isExpired(now, expiresAt)

	licenseKID, licenseKey := r.Keys.LicenseKey()
	if licenseKey == nil {
		if err := r.Keys.Ensure(ctx); err != nil {
			r.markFailed(ctx, lic, keycapv1alpha1.ReasonSigningKeyUnavailable,
				"the licence signing key cannot be loaded: "+err.Error())
			return ctrl.Result{RequeueAfter: signingKeyRetry}, nil
		}
		licenseKID, licenseKey = r.Keys.LicenseKey()
	}

	name := secretName(lic, &lic.Spec.CredentialSpec)
	secret, err := r.getOwnedSecret(ctx, lic, name)
	if err != nil {
		return ctrl.Result{}, err
	}
	held, problem := readHeldKey(secret, name, keycapv1alpha1.LicenseKeySecretKey, keycapv1alpha1.LicenseKeyPrefix)
	var event, note string
	if problem != "" {
		key, err := keys.Generate(keycapv1alpha1.LicenseKeyPrefix)
		if err != nil {
			return ctrl.Result{}, err
		}
		held = heldKey{key: key, issuedAt: now.Truncate(time.Second)}
		event, note = EventReasonIssued, fmt.Sprintf("issued licence key %s into Secret %s", keys.KeyID(keys.Digest(key)), name)
		if secret != nil || len(lic.Status.Digests) > 0 {
			event, note = EventReasonReissued, fmt.Sprintf("%s: issued a new licence key %s; the previous key stopped being valid", problem, keys.KeyID(keys.Digest(key)))
		}
	}
	digest := keys.Digest(held.key)

	payload := licensefile.Payload{
		LicenseID: keys.KeyID(digest), Namespace: lic.Namespace, Name: lic.Name,
		Product: lic.Spec.Product, Customer: lic.Spec.Customer, Plan: lic.Spec.Plan,
		Entitlements: lic.Spec.Entitlements, MaxInstances: int32(activation.MaxInstances(&lic.Spec)),
		KeyDigest: digest, IssuedAt: now.UTC().Truncate(time.Second),
	}
	if expiresAt != nil {
		t := expiresAt.UTC()
		payload.ExpiresAt = &t
	}
	file := secretFile(secret)
	if problem != "" || !r.fileCurrent(file, payload) {
		if file, err = licensefile.Sign(payload, licenseKID, licenseKey); err != nil {
			return ctrl.Result{}, fmt.Errorf("signing the licence file: %w", err)
		}
	}

	if _, err := r.writeOwnedSecret(ctx, lic, name, secret, secretContent{
		template: lic.Spec.SecretTemplate,
		annotations: map[string]string{
			keycapv1alpha1.AnnotationKeyID: keys.KeyID(digest),
			annotationIssuedAt:             held.issuedAt.UTC().Format(time.RFC3339),
		},
		data: map[string][]byte{
			keycapv1alpha1.LicenseKeySecretKey:  []byte(held.key),
			keycapv1alpha1.LicenseFileSecretKey: file,
		},
	}); err != nil {
		return ctrl.Result{}, err
	}
	if event != "" {
		r.event(lic, event, note)
	}

	lic.Status.Digests = []string{digest}
	lic.Status.KeyID = keys.KeyID(digest)
	lic.Status.Hint = keys.Hint(held.key)
	issued := metav1.NewTime(held.issuedAt)
	lic.Status.LastRotatedAt = &issued
	lic.Status.SecretName = name

	switch {
	case lic.Spec.Disabled:
		r.markReady(lic, keycapv1alpha1.ReasonDisabled, "spec.disabled is true; the licence cannot be activated or used")
	case expired:
		msg := "the licence expired at " + expiresAt.UTC().Format(time.RFC3339)
		if readyReason(&lic.Status.CredentialStatus) != keycapv1alpha1.ReasonExpired {
			r.event(lic, EventReasonExpired, msg)
		}
		r.markReady(lic, keycapv1alpha1.ReasonExpired, msg)
	default:
		r.markReady(lic, keycapv1alpha1.ReasonIssued, "the licence key and file are issued into Secret "+name)
	}
	deadlines := []*time.Time{}
	if expiresAt != nil {
		deadlines = append(deadlines, &expiresAt.Time)
	}
	if !nextRelease.IsZero() {
		deadlines = append(deadlines, &nextRelease)
	}
	return r.requeueAt(lic, nextDeadline(now, deadlines...)), nil
}

func secretFile(secret *corev1.Secret) []byte {
	if secret == nil {
		return nil
	}
	return secret.Data[keycapv1alpha1.LicenseFileSecretKey]
}

// fileCurrent reports whether file verifies with the licence public key and asserts want (its
// issuedAt aside): only then is it kept.
func (r *LicenseReconciler) fileCurrent(file []byte, want licensefile.Payload) bool {
	if len(file) == 0 {
		return false
	}
	kid, key := r.Keys.LicenseKey()
	if fileKID, err := licensefile.KeyID(file); err != nil || fileKID != kid || key == nil {
		return false
	}
	got, err := licensefile.Verify(file, key.Public().(ed25519.PublicKey), want.IssuedAt)
	if err != nil && !errors.Is(err, licensefile.ErrExpired) {
		return false
	}
	got.IssuedAt = want.IssuedAt
	return payloadEqual(*got, want)
}

func payloadEqual(a, b licensefile.Payload) bool {
	timeEq := func(x, y *time.Time) bool { return x == nil && y == nil || x != nil && y != nil && x.Equal(*y) }
	ae, be := a.ExpiresAt, b.ExpiresAt
	a.ExpiresAt, b.ExpiresAt = nil, nil
	return timeEq(ae, be) && a.LicenseID == b.LicenseID && a.Namespace == b.Namespace && a.Name == b.Name &&
		a.Product == b.Product && a.Customer == b.Customer && a.Plan == b.Plan &&
		slices.Equal(a.Entitlements, b.Entitlements) && a.MaxInstances == b.MaxInstances && a.KeyDigest == b.KeyDigest
}

// releaseStale removes the activations not seen within heartbeatTimeout, reading the License
// fresh and patching with its resourceVersion, so that an activation written meanwhile is never
// lost; a conflict is retried by the caller's requeue. It returns when the next live activation
// will go stale (zero: none).
func (r *LicenseReconciler) releaseStale(ctx context.Context, cached *keycapv1alpha1.License) (time.Time, error) {
	now := r.Clock.Now()
	timeout := activation.HeartbeatTimeout(&cached.Spec)
	live, next := activation.Prune(cached.Status.Activations, timeout, now)
	if len(live) == len(cached.Status.Activations) {
		return next, nil
	}
	fresh := &keycapv1alpha1.License{}
	if err := r.APIReader.Get(ctx, types.NamespacedName{Namespace: cached.Namespace, Name: cached.Name}, fresh); err != nil {
		return time.Time{}, client.IgnoreNotFound(err)
	}
	live, next = activation.Prune(fresh.Status.Activations, timeout, now)
	released := len(fresh.Status.Activations) - len(live)
	if released > 0 {
		updated := fresh.DeepCopy()
		updated.Status.Activations = live
		if err := r.Status().Patch(ctx, updated, client.MergeFromWithOptions(fresh, client.MergeFromWithOptimisticLock{})); err != nil {
			return time.Time{}, fmt.Errorf("releasing stale activations: %w", err)
		}
		r.event(cached, EventReasonReleased, fmt.Sprintf("released %d instance(s) not seen within %s", released, timeout))
		// Continue from what was written; the reconcile's own patch must not touch activations.
		updated.DeepCopyInto(cached)
	}
	return next, nil
}

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
	"sigs.k8s.io/controller-runtime/pkg/client"

	keycapv1alpha1 "github.com/keycap-dev/keycap/api/v1alpha1"
	"github.com/keycap-dev/keycap/internal/keys"
	"github.com/keycap-dev/keycap/internal/licensefile"
	"github.com/keycap-dev/keycap/internal/lifecycle"
	"github.com/keycap-dev/keycap/internal/signing"
)

// EventReasonReleased says that instances that had not checked in within heartbeatTimeout lost their seat.
const EventReasonReleased = "InstancesReleased"

// licenseIssuer issues Licenses: the licence key (data key license-key, format of internal/keys
// with prefix kclic) and a licence file signed with keycap's licence key (data key license-file,
// see internal/licensefile) in the Secret, the key's digest in status.digests, and the release of
// activations not seen within heartbeatTimeout.
//
// The licence key never changes once issued (deleting the Secret re-issues, like the other kinds;
// a Secret holding another key than status records is treated as compromised); the licence file
// is re-signed whenever what it asserts changes (plan, entitlements, expiry, ...).
// status.activations is written by the activation endpoint with optimistic concurrency; the
// controller only removes stale entries, with the same optimistic lock, never through the
// reconcile's status patch.
type licenseIssuer struct {
	r *credentialReconciler
	// keys holds the licence signing key.
	keys *signing.Manager
}

func newLicenseIssuer(r *credentialReconciler, deps issuerDeps) issuer {
	return &licenseIssuer{r: r, keys: deps.keys}
}

func (i *licenseIssuer) usesSecret(keycapv1alpha1.Credential) bool { return true }

// vouches: the Secret holds the licence key whose digest status lists.
func (i *licenseIssuer) vouches(obj keycapv1alpha1.Credential, secret *corev1.Secret) bool {
	return heldKeyVouched(secret, keycapv1alpha1.LicenseKeySecretKey, obj.GetStatusDigests())
}

func (i *licenseIssuer) revoke(obj keycapv1alpha1.Credential, _ time.Time) {
	obj.(*keycapv1alpha1.License).Status.Digests = nil
}

func (i *licenseIssuer) statusDigests(obj keycapv1alpha1.Credential) *[]string {
	return &obj.(*keycapv1alpha1.License).Status.Digests
}

// preflight loads the licence signing key; until it can, the License waits SigningKeyUnavailable.
func (i *licenseIssuer) preflight(ctx context.Context) error {
	if _, key := i.keys.LicenseKey(); key != nil {
		return nil
	}
	if err := i.keys.Ensure(ctx); err != nil {
		return &credentialError{reason: keycapv1alpha1.ReasonSigningKeyUnavailable, retryAfter: signingKeyRetry,
			message: "the licence signing key cannot be loaded: " + err.Error()}
	}
	return nil
}

// prepare releases stale activations (see releaseStale).
func (i *licenseIssuer) prepare(ctx context.Context, obj keycapv1alpha1.Credential) error {
	return i.releaseStale(ctx, obj.(*keycapv1alpha1.License))
}

// issue issues the key and file.
func (i *licenseIssuer) issue(_ context.Context, in issueInput) (issueResult, error) {
	lic := in.obj.(*keycapv1alpha1.License)
	licenseKID, licenseKey := i.keys.LicenseKey()

	var key string
	issuedAt := in.now.Truncate(time.Second)
	var events []event
	if in.secret != nil && i.vouches(lic, in.secret) {
		key = string(in.secret.Data[keycapv1alpha1.LicenseKeySecretKey])
		issuedAt = in.secret.CreationTimestamp.Time
		if lic.Status.LastRotatedAt != nil {
			issuedAt = lic.Status.LastRotatedAt.Time
		}
	} else {
		var err error
		if key, err = keys.Generate(keycapv1alpha1.LicenseKeyPrefix); err != nil {
			return issueResult{}, err
		}
		events = append(events, issueEvent(causeOf(in, len(lic.Status.Digests) > 0), "licence key", keys.KeyID(keys.Digest(key)), in.name))
	}
	digest := keys.Digest(key)

	payload := licensefile.Payload{
		LicenseID: keys.KeyID(digest), Namespace: lic.Namespace, Name: lic.Name,
		Product: lic.Spec.Product, Customer: lic.Spec.Customer, Plan: lic.Spec.Plan,
		Entitlements: lic.Spec.Entitlements, MaxInstances: int32(lifecycle.MaxInstances(&lic.Spec)),
		KeyDigest: digest, IssuedAt: in.now.UTC().Truncate(time.Second),
	}
	if lic.Status.ExpiresAt != nil {
		t := lic.Status.ExpiresAt.UTC()
		payload.ExpiresAt = &t
	}
	file := secretFile(in.secret)
	if len(events) > 0 || !i.fileCurrent(file, payload) {
		var err error
		if file, err = licensefile.Sign(payload, licenseKID, licenseKey); err != nil {
			return issueResult{}, fmt.Errorf("signing the licence file: %w", err)
		}
	}

	lic.Status.Digests = []string{digest}
	lic.Status.KeyID = keys.KeyID(digest)
	lic.Status.Hint = keys.Hint(key)
	issued := metav1.NewTime(issuedAt)
	lic.Status.LastRotatedAt = &issued
	lic.Status.SecretName = in.name

	out := issueResult{
		content: &secretContent{
			template: lic.Spec.SecretTemplate,
			annotations: map[string]string{
				keycapv1alpha1.AnnotationKeyID: keys.KeyID(digest),
				annotationIssuedAt:             issuedAt.UTC().Format(time.RFC3339),
			},
			data: map[string][]byte{
				keycapv1alpha1.LicenseKeySecretKey:  []byte(key),
				keycapv1alpha1.LicenseFileSecretKey: file,
			},
		},
		events: events,
		issued: "the licence key and file are issued into Secret " + in.name,
	}
	if _, nextRelease := lifecycle.Prune(lic.Status.Activations, lifecycle.HeartbeatTimeout(&lic.Spec), in.now); !nextRelease.IsZero() {
		out.deadlines = append(out.deadlines, &nextRelease)
	}
	return out, nil
}

func secretFile(secret *corev1.Secret) []byte {
	if secret == nil {
		return nil
	}
	return secret.Data[keycapv1alpha1.LicenseFileSecretKey]
}

// fileCurrent reports whether file verifies with the licence public key and asserts want (its
// issuedAt aside): only then is it kept.
func (i *licenseIssuer) fileCurrent(file []byte, want licensefile.Payload) bool {
	if len(file) == 0 {
		return false
	}
	kid, key := i.keys.LicenseKey()
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
// lost; a conflict is retried by the caller's requeue.
func (i *licenseIssuer) releaseStale(ctx context.Context, cached *keycapv1alpha1.License) error {
	r := i.r
	now := r.Clock.Now()
	timeout := lifecycle.HeartbeatTimeout(&cached.Spec)
	live, _ := lifecycle.Prune(cached.Status.Activations, timeout, now)
	if len(live) == len(cached.Status.Activations) {
		return nil
	}
	fresh := &keycapv1alpha1.License{}
	if err := r.APIReader.Get(ctx, types.NamespacedName{Namespace: cached.Namespace, Name: cached.Name}, fresh); err != nil {
		return client.IgnoreNotFound(err)
	}
	live, _ = lifecycle.Prune(fresh.Status.Activations, timeout, now)
	released := len(fresh.Status.Activations) - len(live)
	if released > 0 {
		updated := fresh.DeepCopy()
		updated.Status.Activations = live
		if err := r.Status().Patch(ctx, updated, client.MergeFromWithOptions(fresh, client.MergeFromWithOptimisticLock{})); err != nil {
			return fmt.Errorf("releasing stale activations: %w", err)
		}
		r.event(cached, EventReasonReleased, fmt.Sprintf("released %d instance(s) not seen within %s", released, timeout))
		// Continue from what was written; the reconcile's own patch must not touch activations.
		updated.DeepCopyInto(cached)
	}
	return nil
}

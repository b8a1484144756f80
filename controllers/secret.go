package controllers

import (
	"context"
	"fmt"
	"maps"
	"reflect"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	keycapv1alpha1 "github.com/keycap-dev/keycap/api/v1alpha1"
)

// Which Secret keycap trusts.
//
// A tenant who may create Secrets in a namespace can forge everything on a Secret: its labels,
// its keycap.dev/* annotations, even a controller owner reference naming a credential (with its
// UID) and the field manager of its creation. What a tenant cannot write is a credential's status:
// only the operator writes it. So keycap believes a Secret only as far as status vouches for it:
//
//   - A Secret is keycap's only at the name status.secretName records. keycap records the name in
//     status before it creates a Secret there (claimSecretName), so a Secret that exists at any
//     other name was not created by keycap for this credential, whatever its owner references say:
//     SecretConflict, and keycap neither reads nor overwrites it (a spec.secretName pointed at a
//     planted Secret injects nothing).
//   - At the recorded name, the Secret's content is believed only when it is what status records
//     (issuer.vouches: for an opaque key or a licence the key's digest is status.digests[0]; for an
//     AppToken the token verifies and is the one status.issuedAt records). Everything else the
//     lifecycle needs (when the key was issued, the previous key and the end of its grace period)
//     is read from status, never from the Secret's annotations, which are only a copy for people.
//     A Secret holding anything else was tampered with: its key is treated as compromised and a
//     new one is issued into it at once, with no grace period. A digest therefore reaches status
//     only as a freshly generated key, a spec.keyHash (which the webhook checks, and the duplicate
//     rule settles when it was raced), or because status already listed it.
//   - A Secret at the recorded name that lost its controller owner reference (someone removed it
//     while the tamper guard was down) still holding exactly what status records is keycap's: the
//     owner reference and labels are put back and rotation goes on. If it holds anything else, or
//     another controller owns it now, keycap cannot manage it: SecretConflict, and the key status
//     listed for it is revoked rather than left working unmanaged.
//
// The cache may hold a credential whose status is older than its Secret (the status patch of the
// reconcile that wrote the Secret has not reached the cache yet), so before any of these verdicts
// goes against a Secret the credential is read again from the apiserver.

// heldSecret is the Secret at a credential's Secret name as keycap judged it.
type heldSecret struct {
	// secret is the Secret, nil when there is none. Its content is the issuer's to judge.
	secret *corev1.Secret
	// restored says the Secret had lost its controller owner reference and holds what status
	// records: writing it puts keycap's owner reference back.
	restored bool
}

// readSecret reads and judges the Secret name of obj (see above). vouches says whether a Secret
// holds what obj's status records. A SecretConflict is returned as a credentialError; revoke is
// true when the conflict is at the name status records, whose key must then stop working.
func (r *credentialReconciler) readSecret(ctx context.Context, p *statusPatch, name string, vouches func(*corev1.Secret) bool) (held heldSecret, revoke bool, err error) {
	obj := p.obj
	secret, err := r.getSecret(ctx, obj.GetNamespace(), name)
	if err != nil || secret == nil {
		return heldSecret{}, false, err
	}
	trusted := func() bool {
		return obj.GetCredentialStatus().SecretName == name && metav1.IsControlledBy(secret, obj) && vouches(secret)
	}
	if !trusted() {
		if err := r.refresh(ctx, p); err != nil {
			return heldSecret{}, false, err
		}
	}
	status := obj.GetCredentialStatus()
	controlled := metav1.IsControlledBy(secret, obj)
	switch {
	case status.SecretName != name && controlled:
		return heldSecret{}, false, failf(keycapv1alpha1.ReasonSecretConflict,
			"Secret %q was not created by keycap for this %s (an owner reference does not make it keycap's); keycap neither uses nor overwrites it: delete it or choose another spec.secretName",
			name, r.Kind)
	case status.SecretName != name:
		return heldSecret{}, false, failf(keycapv1alpha1.ReasonSecretConflict,
			"Secret %q exists and is not managed by this %s; keycap does not overwrite it: delete it or choose another spec.secretName",
			name, r.Kind)
	case controlled:
		return heldSecret{secret: secret}, false, nil
	case metav1.GetControllerOf(secret) != nil:
		return heldSecret{}, true, failf(keycapv1alpha1.ReasonSecretConflict,
			"Secret %q is controlled by another object; keycap does not overwrite it, and no key of this %s is valid until it can: delete it or choose another spec.secretName",
			name, r.Kind)
	case vouches(secret):
		return heldSecret{secret: secret, restored: true}, false, nil
	}
	return heldSecret{}, true, failf(keycapv1alpha1.ReasonSecretConflict,
		"Secret %q, which keycap issued, is no longer managed by this %s and no longer holds what keycap issued; keycap does not overwrite it and its key is no longer valid: delete it to have a new one issued",
		name, r.Kind)
}

// getSecret reads a Secret directly from the apiserver; nil when there is none.
func (r *credentialReconciler) getSecret(ctx context.Context, namespace, name string) (*corev1.Secret, error) {
	var secret corev1.Secret
	err := r.APIReader.Get(ctx, types.NamespacedName{Namespace: namespace, Name: name}, &secret)
	switch {
	case apierrors.IsNotFound(err):
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("reading Secret %s: %w", name, err)
	}
	return &secret, nil
}

// refresh replaces p.obj by the credential as the apiserver has it now, and makes that the base of
// the status patch.
func (r *credentialReconciler) refresh(ctx context.Context, p *statusPatch) error {
	// Decoding into a used object would merge its maps: read into a new one and copy it over.
	fresh := reflect.New(reflect.TypeOf(p.obj).Elem()).Interface().(keycapv1alpha1.Credential)
	if err := r.APIReader.Get(ctx, client.ObjectKeyFromObject(p.obj), fresh); err != nil {
		return fmt.Errorf("reading %s %s: %w", r.Kind, p.obj.GetName(), err)
	}
	if fresh.GetResourceVersion() != p.obj.GetResourceVersion() {
		reflect.ValueOf(p.obj).Elem().Set(reflect.ValueOf(fresh).Elem())
		p.rebase()
	}
	return nil
}

// claimSecretName records name as obj's Secret in status (where recorded was) before keycap
// creates a Secret there, so that the Secret is provably keycap's even if the reconcile ends
// before its status patch.
func (r *credentialReconciler) claimSecretName(ctx context.Context, obj keycapv1alpha1.Credential, recorded, name string) error {
	if recorded == name {
		return nil
	}
	base := obj.DeepCopyObject().(keycapv1alpha1.Credential)
	base.GetCredentialStatus().SecretName = recorded
	claimed := base.DeepCopyObject().(keycapv1alpha1.Credential)
	claimed.GetCredentialStatus().SecretName = name
	if err := r.Status().Patch(ctx, claimed, client.MergeFrom(base)); err != nil {
		return fmt.Errorf("recording Secret %s in status: %w", name, err)
	}
	return nil
}

// secretContent is what keycap writes into a Secret it owns.
type secretContent struct {
	// template is the credential's spec.secretTemplate.
	template *keycapv1alpha1.SecretTemplate
	// annotations are keycap's own annotations (keycap.dev/*).
	annotations map[string]string
	// data is the whole data of the Secret.
	data map[string][]byte
}

// writeOwnedSecret makes the Secret name in owner's namespace hold exactly content, with keycap's
// labels (managed-by, kind, name) and owner as its controller (so the Secret is garbage-collected
// with its credential). existing is the Secret as readSecret returned it (nil: create, after
// recording the name in status, where recorded was the name status held). It writes only when something differs, and updates with
// existing's resourceVersion, so a concurrent change makes it fail with a conflict instead of
// overwriting. In a namespace being deleted it returns errNamespaceTerminating.
func (r *credentialReconciler) writeOwnedSecret(ctx context.Context, owner keycapv1alpha1.Credential, recorded, name string, existing *corev1.Secret, content secretContent) error {
	desired := &corev1.Secret{}
	if existing != nil {
		desired = existing.DeepCopy()
	}
	desired.Namespace, desired.Name = owner.GetNamespace(), name
	desired.Type = corev1.SecretTypeOpaque
	desired.Labels = secretLabels(r.Kind, owner.GetName(), content.template)
	desired.Annotations = secretAnnotations(content.template, content.annotations)
	desired.Data = content.data
	desired.StringData = nil
	if err := controllerutil.SetControllerReference(owner, desired, r.Scheme); err != nil {
		return fmt.Errorf("setting the owner of Secret %s: %w", name, err)
	}

	if existing == nil {
		if err := r.claimSecretName(ctx, owner, recorded, name); err != nil {
			return err
		}
		if err := r.Create(ctx, desired); err != nil {
			if apierrors.HasStatusCause(err, corev1.NamespaceTerminatingCause) {
				return errNamespaceTerminating
			}
			return fmt.Errorf("creating Secret %s: %w", name, err)
		}
		return nil
	}
	if equality.Semantic.DeepEqual(existing, desired) {
		return nil
	}
	if err := r.Update(ctx, desired); err != nil {
		return fmt.Errorf("updating Secret %s: %w", name, err)
	}
	return nil
}

// secretLabels are the template's labels plus keycap's, which the template cannot override.
func secretLabels(kind, name string, template *keycapv1alpha1.SecretTemplate) map[string]string {
	labels := map[string]string{}
	if template != nil {
		for k, v := range template.Labels {
			if !keycapv1alpha1.IsReservedMetadataKey(k) {
				labels[k] = v
			}
		}
	}
	labels[keycapv1alpha1.LabelManagedBy] = keycapv1alpha1.ManagedByValue
	labels[keycapv1alpha1.LabelKind] = kind
	labels[keycapv1alpha1.LabelName] = name
	return labels
}

// secretAnnotations are the template's annotations, without keycap's reserved ones, plus keycap's
// own.
func secretAnnotations(template *keycapv1alpha1.SecretTemplate, own map[string]string) map[string]string {
	annotations := map[string]string{}
	if template != nil {
		for k, v := range template.Annotations {
			if !keycapv1alpha1.IsReservedMetadataKey(k) {
				annotations[k] = v
			}
		}
	}
	maps.Copy(annotations, own)
	if len(annotations) == 0 {
		return nil
	}
	return annotations
}

// deleteOwnedSecret deletes the Secret name in owner's namespace if owner is its controller; a
// Secret keycap does not own is never touched.
func (r *credentialReconciler) deleteOwnedSecret(ctx context.Context, owner client.Object, name string) error {
	secret, err := r.getSecret(ctx, owner.GetNamespace(), name)
	if err != nil || secret == nil || !metav1.IsControlledBy(secret, owner) {
		return err
	}
	if err := r.Delete(ctx, secret, client.Preconditions{UID: &secret.UID, ResourceVersion: &secret.ResourceVersion}); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("deleting the old Secret %s: %w", name, err)
	}
	return nil
}

package controllers

import (
	"context"
	"fmt"
	"maps"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	keycapv1alpha1 "github.com/keycap-dev/keycap/api/v1alpha1"
)

// keycapAnnotationPrefix marks the labels and annotations only keycap writes on its Secrets;
// secretTemplate entries with it are dropped, so a template cannot forge keycap's bookkeeping.
const keycapAnnotationPrefix = "keycap.dev/"

// secretName is the name of the Secret a credential writes: spec.secretName, or its own name.
func secretName(obj client.Object, spec *keycapv1alpha1.CredentialSpec) string {
	if spec.SecretName != "" {
		return spec.SecretName
	}
	return obj.GetName()
}

// getOwnedSecret reads the Secret name in owner's namespace directly from the apiserver. It returns
// (nil, nil) when there is none, and a SecretConflict credentialError when a Secret of that name
// exists but owner is not its controller: keycap never overwrites a Secret it does not own.
func (r *credentialReconciler) getOwnedSecret(ctx context.Context, owner client.Object, name string) (*corev1.Secret, error) {
	var secret corev1.Secret
	err := r.APIReader.Get(ctx, types.NamespacedName{Namespace: owner.GetNamespace(), Name: name}, &secret)
	switch {
	case apierrors.IsNotFound(err):
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("reading Secret %s: %w", name, err)
	case !metav1.IsControlledBy(&secret, owner):
		return nil, failf(keycapv1alpha1.ReasonSecretConflict,
			"Secret %q exists and is not managed by this %s; keycap does not overwrite it: delete it or choose another spec.secretName",
			name, r.Kind)
	}
	return &secret, nil
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
// with its credential). existing is the Secret as getOwnedSecret returned it (nil: create). It
// writes only when something differs, and updates with existing's resourceVersion, so a concurrent
// change makes it fail with a conflict instead of overwriting.
func (r *credentialReconciler) writeOwnedSecret(ctx context.Context, owner client.Object, name string, existing *corev1.Secret, content secretContent) (*corev1.Secret, error) {
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
		return nil, fmt.Errorf("setting the owner of Secret %s: %w", name, err)
	}

	if existing == nil {
		if err := r.Create(ctx, desired); err != nil {
			return nil, fmt.Errorf("creating Secret %s: %w", name, err)
		}
		return desired, nil
	}
	if equality.Semantic.DeepEqual(existing, desired) {
		return existing, nil
	}
	if err := r.Update(ctx, desired); err != nil {
		return nil, fmt.Errorf("updating Secret %s: %w", name, err)
	}
	return desired, nil
}

// secretLabels are the template's labels plus keycap's, which the template cannot override.
func secretLabels(kind, name string, template *keycapv1alpha1.SecretTemplate) map[string]string {
	labels := map[string]string{}
	if template != nil {
		for k, v := range template.Labels {
			if !strings.HasPrefix(k, keycapAnnotationPrefix) && k != keycapv1alpha1.LabelManagedBy {
				labels[k] = v
			}
		}
	}
	labels[keycapv1alpha1.LabelManagedBy] = keycapv1alpha1.ManagedByValue
	labels[keycapv1alpha1.LabelKind] = kind
	labels[keycapv1alpha1.LabelName] = name
	return labels
}

// secretAnnotations are the template's annotations, without keycap.dev/* ones, plus keycap's own.
func secretAnnotations(template *keycapv1alpha1.SecretTemplate, own map[string]string) map[string]string {
	annotations := map[string]string{}
	if template != nil {
		for k, v := range template.Annotations {
			if !strings.HasPrefix(k, keycapAnnotationPrefix) {
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
	var secret corev1.Secret
	err := r.APIReader.Get(ctx, types.NamespacedName{Namespace: owner.GetNamespace(), Name: name}, &secret)
	switch {
	case apierrors.IsNotFound(err):
		return nil
	case err != nil:
		return fmt.Errorf("reading Secret %s: %w", name, err)
	case !metav1.IsControlledBy(&secret, owner):
		return nil
	}
	if err := r.Delete(ctx, &secret, client.Preconditions{UID: &secret.UID, ResourceVersion: &secret.ResourceVersion}); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("deleting the old Secret %s: %w", name, err)
	}
	return nil
}

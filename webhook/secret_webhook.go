package webhook

import (
	"context"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	keycapv1alpha1 "github.com/keycap-dev/keycap/api/v1alpha1"
)

// SecretGuard is the tamper guard: only the operator may create a Secret that claims to be
// managed by keycap, or change what keycap owns on one. A Secret claims to be keycap's when it is
// labelled app.kubernetes.io/managed-by=keycap, carries any keycap.dev/* label or annotation, or
// has an ownerReference to a keycap credential (claimsKeycap). The controllers trust such Secrets
// (their key, their lifecycle annotations), so a tenant who could plant one could choose her own
// key or another tenant's digest.
//
// Refused, for anyone but the operator: creating a Secret that claims to be keycap's; an update
// that makes a Secret claim to be keycap's; and, on a Secret that claims to be keycap's, a change
// of its data (stringData arrives merged into data), type, immutable, the labels and annotations
// keycap owns (app.kubernetes.io/managed-by, keycap.dev/*), or a new ownerReference to a keycap
// credential. Other metadata (finalizers, owner references the garbage collector removes,
// annotations of other tools) stays editable. Deleting such a Secret is not refused (the webhook
// does not even match DELETE): the controller re-issues it.
type SecretGuard struct {
	decoder admission.Decoder
	// operators are the usernames that may create and change managed Secrets.
	operators []string
}

var _ admission.Handler = &SecretGuard{}

// NewSecretGuard returns a guard that lets only the given usernames create and change managed
// Secrets.
func NewSecretGuard(scheme *runtime.Scheme, operators []string) *SecretGuard {
	return &SecretGuard{decoder: admission.NewDecoder(scheme), operators: operators}
}

// Handle implements admission.Handler.
func (g *SecretGuard) Handle(_ context.Context, req admission.Request) admission.Response {
	if slices.Contains(g.operators, req.UserInfo.Username) {
		return admission.Allowed("")
	}
	var newSecret corev1.Secret
	switch req.Operation {
	case admissionv1.Create:
		if err := g.decoder.DecodeRaw(req.Object, &newSecret); err != nil {
			return admission.Errored(http.StatusBadRequest, err)
		}
		if claim := claimsKeycap(&newSecret); claim != "" {
			return admission.Denied(fmt.Sprintf(
				"Secret %s/%s claims to be managed by keycap (%s): only the operator may create such a Secret; keycap writes a credential's Secret itself",
				req.Namespace, req.Name, claim))
		}
		return admission.Allowed("")
	case admissionv1.Update:
	default:
		return admission.Allowed("")
	}
	var oldSecret corev1.Secret
	if err := g.decoder.DecodeRaw(req.OldObject, &oldSecret); err != nil {
		return admission.Errored(http.StatusBadRequest, err)
	}
	if err := g.decoder.DecodeRaw(req.Object, &newSecret); err != nil {
		return admission.Errored(http.StatusBadRequest, err)
	}
	oldClaim, newClaim := claimsKeycap(&oldSecret), claimsKeycap(&newSecret)
	switch {
	case oldClaim == "" && newClaim == "":
		return admission.Allowed("")
	case oldClaim == "":
		return admission.Denied(fmt.Sprintf(
			"Secret %s/%s would claim to be managed by keycap (%s): only the operator may make a Secret keycap's",
			req.Namespace, req.Name, newClaim))
	}
	if changed := guardedChanges(&oldSecret, &newSecret); len(changed) > 0 {
		return admission.Denied(fmt.Sprintf(
			"Secret %s/%s is managed by keycap: only the operator may change its %s; delete the Secret to have keycap re-issue it, or change the credential",
			req.Namespace, req.Name, strings.Join(changed, ", ")))
	}
	return admission.Allowed("")
}

// claimsKeycap says why s claims to be a Secret keycap manages, or "" when it does not.
func claimsKeycap(s *corev1.Secret) string {
	if s.Labels[keycapv1alpha1.LabelManagedBy] == keycapv1alpha1.ManagedByValue {
		return "label " + keycapv1alpha1.LabelManagedBy + "=" + keycapv1alpha1.ManagedByValue
	}
	for _, k := range sortedKeys(s.Labels) {
		if strings.HasPrefix(k, keycapv1alpha1.ReservedPrefix) {
			return "label " + k
		}
	}
	for _, k := range sortedKeys(s.Annotations) {
		if strings.HasPrefix(k, keycapv1alpha1.ReservedPrefix) {
			return "annotation " + k
		}
	}
	if refs := keycapOwners(s.OwnerReferences); len(refs) > 0 {
		return "ownerReference to " + refs[0].Kind + " " + refs[0].Name
	}
	return ""
}

// keycapOwners are the ownerReferences to objects of keycap's API group.
func keycapOwners(refs []metav1.OwnerReference) []metav1.OwnerReference {
	var out []metav1.OwnerReference
	for _, r := range refs {
		if gv, err := schema.ParseGroupVersion(r.APIVersion); err == nil && gv.Group == keycapv1alpha1.GroupVersion.Group {
			out = append(out, r)
		}
	}
	return out
}

// guardedChanges names the guarded fields that differ between old and new.
func guardedChanges(old, new *corev1.Secret) []string {
	var out []string
	if !equality.Semantic.DeepEqual(old.Data, new.Data) {
		out = append(out, "data")
	}
	if old.Type != new.Type {
		out = append(out, "type")
	}
	if !equality.Semantic.DeepEqual(old.Immutable, new.Immutable) {
		out = append(out, "immutable")
	}
	if !maps.Equal(reserved(old.Labels), reserved(new.Labels)) {
		out = append(out, "metadata.labels")
	}
	if !maps.Equal(reserved(old.Annotations), reserved(new.Annotations)) {
		out = append(out, "metadata.annotations")
	}
	for _, r := range keycapOwners(new.OwnerReferences) {
		if !slices.ContainsFunc(old.OwnerReferences, func(o metav1.OwnerReference) bool { return o.UID == r.UID }) {
			out = append(out, "metadata.ownerReferences")
			break
		}
	}
	return out
}

// reserved returns the entries of m whose keys keycap owns.
func reserved(m map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range m {
		if keycapv1alpha1.IsReservedMetadataKey(k) {
			out[k] = v
		}
	}
	return out
}

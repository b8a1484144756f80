package webhook

import (
	"context"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	keycapv1alpha1 "github.com/keycap-dev/keycap/api/v1alpha1"
)

// SecretGuard is the tamper guard: it refuses changes to the Secrets keycap manages (labelled
// app.kubernetes.io/managed-by=keycap) by anyone but the operator. Deleting such a Secret is not
// refused (the webhook does not even match DELETE): the controller re-issues it.
//
// What counts as a change: data (stringData arrives merged into data), type, immutable, and the
// labels and annotations keycap owns (app.kubernetes.io/managed-by, keycap.dev/*), so the label
// that selects the guard cannot be removed either. Other metadata (finalizers, owner references
// the garbage collector edits, annotations of other tools) stays editable.
type SecretGuard struct {
	decoder admission.Decoder
	// operators are the usernames that may change managed Secrets.
	operators []string
}

var _ admission.Handler = &SecretGuard{}

// NewSecretGuard returns a guard that lets only the given usernames change managed Secrets.
func NewSecretGuard(scheme *runtime.Scheme, operators []string) *SecretGuard {
	return &SecretGuard{decoder: admission.NewDecoder(scheme), operators: operators}
}

// Handle implements admission.Handler.
func (g *SecretGuard) Handle(_ context.Context, req admission.Request) admission.Response {
	if req.Operation != "UPDATE" || slices.Contains(g.operators, req.UserInfo.Username) {
		return admission.Allowed("")
	}
	var oldSecret, newSecret corev1.Secret
	if err := g.decoder.DecodeRaw(req.OldObject, &oldSecret); err != nil {
		return admission.Errored(http.StatusBadRequest, err)
	}
	if err := g.decoder.DecodeRaw(req.Object, &newSecret); err != nil {
		return admission.Errored(http.StatusBadRequest, err)
	}
	if !managed(&oldSecret) && !managed(&newSecret) {
		return admission.Allowed("")
	}
	if changed := guardedChanges(&oldSecret, &newSecret); len(changed) > 0 {
		return admission.Denied(fmt.Sprintf(
			"Secret %s/%s is managed by keycap: only the operator may change its %s; delete the Secret to have keycap re-issue it, or change the credential",
			req.Namespace, req.Name, strings.Join(changed, ", ")))
	}
	return admission.Allowed("")
}

func managed(s *corev1.Secret) bool {
	return s.Labels[keycapv1alpha1.LabelManagedBy] == keycapv1alpha1.ManagedByValue
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
	return out
}

// reserved returns the entries of m whose keys keycap owns.
func reserved(m map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range m {
		if reservedMetadataKey(k) {
			out[k] = v
		}
	}
	return out
}

package webhook

import (
	"context"
	"fmt"
	"slices"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	keycapv1alpha1 "github.com/keycap-dev/keycap/api/v1alpha1"
)

// agentKeyRules are an AgentKey's own rules (old is nil on create), against its parent ApiKey.
func (v *validator) agentKeyRules(ctx context.Context, obj, old *keycapv1alpha1.AgentKey) (field.ErrorList, admission.Warnings, error) {
	creating := old == nil
	// A name that cannot be an ApiKey's is refused before any lookup (a "ns/name" would otherwise
	// reach the apiserver as a path).
	errs := validateParentName(obj.Spec.APIKeyRef.Name, specPath.Child("apiKeyRef", "name"))
	var parent *keycapv1alpha1.ApiKey
	// The parent is needed on create, and on an update that changes the scopes; an update of an
	// agent key whose parent is gone (disabling it, say) is not refused for that.
	if len(errs) == 0 && (creating || !slices.Equal(old.Spec.Scopes, obj.Spec.Scopes)) {
		p, err := v.parent(ctx, obj)
		if err != nil {
			return nil, nil, apierrors.NewInternalError(err)
		}
		parent = p
	}
	return append(errs, validateAgentKey(&obj.Spec, parent, creating, v.clock.Now(), v.policy, specPath)...), nil, nil
}

// parent returns the AgentKey's parent ApiKey, or nil when it does not exist. It asks the cache
// first and, when the cache has not seen it (created a moment ago), the apiserver.
func (v *validator) parent(ctx context.Context, obj *keycapv1alpha1.AgentKey) (*keycapv1alpha1.ApiKey, error) {
	key := types.NamespacedName{Namespace: obj.Namespace, Name: obj.Spec.APIKeyRef.Name}
	if key.Name == "" {
		return nil, nil
	}
	var parent keycapv1alpha1.ApiKey
	err := v.reader.Get(ctx, key, &parent)
	if apierrors.IsNotFound(err) {
		err = v.apiReader.Get(ctx, key, &parent)
	}
	switch {
	case apierrors.IsNotFound(err):
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("reading the parent ApiKey: %w", err)
	}
	return &parent, nil
}

package webhook

import (
	"context"
	"fmt"
	"slices"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"

	keycapv1alpha1 "github.com/keycap-dev/keycap/api/v1alpha1"
)

// checkAgentKey validates an AgentKey on create (old nil) and update, against its parent ApiKey.
func (v *validator) checkAgentKey(ctx context.Context, obj, old *keycapv1alpha1.AgentKey) error {
	creating := old == nil
	var parent *keycapv1alpha1.ApiKey
	// The parent is needed on create, and on an update that changes the scopes; an update of an
	// agent key whose parent is gone (disabling it, say) is not refused for that.
	if creating || !slices.Equal(old.Spec.Scopes, obj.Spec.Scopes) {
		p, err := v.parent(ctx, obj)
		if err != nil {
			return apierrors.NewInternalError(err)
		}
		parent = p
	}
	errs := validateAgentKey(&obj.Spec, parent, creating, v.clock.Now(), v.policy, specPath)
	errs = append(errs, validateNoPlaintext(&obj.ObjectMeta, &obj.Spec, specPath)...)
	var oldKeyHash string
	var oldSpec *keycapv1alpha1.CredentialSpec
	if old != nil {
		oldKeyHash, oldSpec = old.Spec.KeyHash, &old.Spec.CredentialSpec
	}
	self := credentialRef{Kind: "AgentKey", Namespace: obj.Namespace, Name: obj.Name}
	u, err := v.uniqueness(ctx, self, &obj.Spec.CredentialSpec, oldSpec, obj.Spec.KeyHash, oldKeyHash)
	if err != nil {
		return err
	}
	return result("AgentKey", obj.Name, append(errs, u...))
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

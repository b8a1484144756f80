package webhook

import (
	"context"

	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	keycapv1alpha1 "github.com/keycap-dev/keycap/api/v1alpha1"
)

// ApiKeyValidator validates ApiKeys on create and update.
type ApiKeyValidator struct{ *validator }

var _ admission.Validator[*keycapv1alpha1.ApiKey] = &ApiKeyValidator{}

// ValidateCreate implements admission.Validator.
func (v *ApiKeyValidator) ValidateCreate(ctx context.Context, obj *keycapv1alpha1.ApiKey) (admission.Warnings, error) {
	return nil, v.validate(ctx, obj, nil)
}

// ValidateUpdate implements admission.Validator. An update that disables the key or drops scopes
// its agent keys hold is allowed, with a warning naming the agent keys it affects.
func (v *ApiKeyValidator) ValidateUpdate(ctx context.Context, oldObj, newObj *keycapv1alpha1.ApiKey) (admission.Warnings, error) {
	if err := v.validate(ctx, newObj, oldObj); err != nil {
		return nil, err
	}
	disabling := newObj.Spec.Disabled && !oldObj.Spec.Disabled
	if !disabling && len(removedScopes(oldObj.Spec.Scopes, newObj.Spec.Scopes)) == 0 {
		return nil, nil
	}
	var agents keycapv1alpha1.AgentKeyList
	if err := v.reader.List(ctx, &agents, client.InNamespace(newObj.Namespace), client.MatchingFields{IndexParent: newObj.Name}); err != nil {
		// Warnings are a courtesy; the update itself is valid.
		logf.FromContext(ctx).Error(err, "listing the agent keys of an ApiKey for warnings")
		return nil, nil
	}
	return parentChangeWarnings(&oldObj.Spec, &newObj.Spec, agents.Items), nil
}

// ValidateDelete implements admission.Validator; deletes are not validated.
func (v *ApiKeyValidator) ValidateDelete(context.Context, *keycapv1alpha1.ApiKey) (admission.Warnings, error) {
	return nil, nil
}

func (v *ApiKeyValidator) validate(ctx context.Context, obj, old *keycapv1alpha1.ApiKey) error {
	creating := old == nil
	errs := validateApiKey(&obj.Spec, creating, v.clock.Now(), v.policy, specPath)
	errs = append(errs, validateNoPlaintext(&obj.ObjectMeta, &obj.Spec, specPath)...)
	var oldKeyHash string
	var oldSpec *keycapv1alpha1.CredentialSpec
	if old != nil {
		oldKeyHash, oldSpec = old.Spec.KeyHash, &old.Spec.CredentialSpec
	}
	self := credentialRef{Kind: "ApiKey", Namespace: obj.Namespace, Name: obj.Name}
	u, err := v.uniqueness(ctx, self, &obj.Spec.CredentialSpec, oldSpec, obj.Spec.KeyHash, oldKeyHash)
	if err != nil {
		return err
	}
	return result("ApiKey", obj.Name, append(errs, u...))
}

package webhook

import (
	"context"

	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	keycapv1alpha1 "github.com/keycap-dev/keycap/api/v1alpha1"
)

// ApiKeyValidator validates ApiKeys on create and update: creates and deletes as kindValidator
// does with checkApiKey; its own ValidateUpdate adds warnings.
type ApiKeyValidator struct {
	*validator
	kindValidator[*keycapv1alpha1.ApiKey]
}

var _ admission.Validator[*keycapv1alpha1.ApiKey] = &ApiKeyValidator{}

// newApiKeyValidator returns the ApiKeyValidator of v.
func newApiKeyValidator(v *validator) *ApiKeyValidator {
	return &ApiKeyValidator{validator: v, kindValidator: kindValidator[*keycapv1alpha1.ApiKey]{v.checkApiKey}}
}

// ValidateUpdate implements admission.Validator. An update that disables the key or drops scopes
// its agent keys hold is allowed, with a warning naming the agent keys it affects.
func (v *ApiKeyValidator) ValidateUpdate(ctx context.Context, oldObj, newObj *keycapv1alpha1.ApiKey) (admission.Warnings, error) {
	if err := v.checkApiKey(ctx, newObj, oldObj); err != nil {
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

// checkApiKey validates an ApiKey on create (old nil) and update.
func (v *validator) checkApiKey(ctx context.Context, obj, old *keycapv1alpha1.ApiKey) error {
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

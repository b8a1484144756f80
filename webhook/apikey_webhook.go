package webhook

import (
	"context"

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

// ValidateUpdate implements admission.Validator.
func (v *ApiKeyValidator) ValidateUpdate(ctx context.Context, oldObj, newObj *keycapv1alpha1.ApiKey) (admission.Warnings, error) {
	return nil, v.validate(ctx, newObj, oldObj)
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

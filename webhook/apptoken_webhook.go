package webhook

import (
	"context"

	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	keycapv1alpha1 "github.com/keycap-dev/keycap/api/v1alpha1"
)

// AppTokenValidator validates AppTokens on create and update.
type AppTokenValidator struct{ *validator }

var _ admission.Validator[*keycapv1alpha1.AppToken] = &AppTokenValidator{}

// ValidateCreate implements admission.Validator.
func (v *AppTokenValidator) ValidateCreate(ctx context.Context, obj *keycapv1alpha1.AppToken) (admission.Warnings, error) {
	return nil, v.validate(ctx, obj, nil)
}

// ValidateUpdate implements admission.Validator.
func (v *AppTokenValidator) ValidateUpdate(ctx context.Context, oldObj, newObj *keycapv1alpha1.AppToken) (admission.Warnings, error) {
	return nil, v.validate(ctx, newObj, oldObj)
}

// ValidateDelete implements admission.Validator; deletes are not validated.
func (v *AppTokenValidator) ValidateDelete(context.Context, *keycapv1alpha1.AppToken) (admission.Warnings, error) {
	return nil, nil
}

func (v *AppTokenValidator) validate(ctx context.Context, obj, old *keycapv1alpha1.AppToken) error {
	errs := validateAppToken(&obj.Spec, old == nil, v.clock.Now(), v.policy, specPath)
	errs = append(errs, validateNoPlaintext(&obj.ObjectMeta, &obj.Spec, specPath)...)
	self := credentialRef{Kind: "AppToken", Namespace: obj.Namespace, Name: obj.Name}
	var oldSpec *keycapv1alpha1.CredentialSpec
	if old != nil {
		oldSpec = &old.Spec.CredentialSpec
	}
	u, err := v.uniqueness(ctx, self, &obj.Spec.CredentialSpec, oldSpec, "", "")
	if err != nil {
		return err
	}
	return result("AppToken", obj.Name, append(errs, u...))
}

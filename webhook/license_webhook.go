package webhook

import (
	"context"

	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	keycapv1alpha1 "github.com/keycap-dev/keycap/api/v1alpha1"
)

// LicenseValidator validates Licenses on create and update.
type LicenseValidator struct{ *validator }

var _ admission.Validator[*keycapv1alpha1.License] = &LicenseValidator{}

// ValidateCreate implements admission.Validator.
func (v *LicenseValidator) ValidateCreate(ctx context.Context, obj *keycapv1alpha1.License) (admission.Warnings, error) {
	return nil, v.validate(ctx, obj, nil)
}

// ValidateUpdate implements admission.Validator.
func (v *LicenseValidator) ValidateUpdate(ctx context.Context, oldObj, newObj *keycapv1alpha1.License) (admission.Warnings, error) {
	return nil, v.validate(ctx, newObj, oldObj)
}

// ValidateDelete implements admission.Validator; deletes are not validated.
func (v *LicenseValidator) ValidateDelete(context.Context, *keycapv1alpha1.License) (admission.Warnings, error) {
	return nil, nil
}

func (v *LicenseValidator) validate(ctx context.Context, obj, old *keycapv1alpha1.License) error {
	errs := validateLicense(&obj.Spec, old, v.clock.Now(), v.policy, specPath)
	errs = append(errs, validateNoPlaintext(&obj.ObjectMeta, &obj.Spec, specPath)...)
	self := credentialRef{Kind: "License", Namespace: obj.Namespace, Name: obj.Name}
	var oldSpec *keycapv1alpha1.CredentialSpec
	if old != nil {
		oldSpec = &old.Spec.CredentialSpec
	}
	u, err := v.uniqueness(ctx, self, &obj.Spec.CredentialSpec, oldSpec, "", "")
	if err != nil {
		return err
	}
	return result("License", obj.Name, append(errs, u...))
}

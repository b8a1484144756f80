package webhook

import (
	"context"

	keycapv1alpha1 "github.com/keycap-dev/keycap/api/v1alpha1"
)

// checkLicense validates a License on create (old nil) and update.
func (v *validator) checkLicense(ctx context.Context, obj, old *keycapv1alpha1.License) error {
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

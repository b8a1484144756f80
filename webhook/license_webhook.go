package webhook

import (
	"context"

	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	keycapv1alpha1 "github.com/keycap-dev/keycap/api/v1alpha1"
)

// licenseRules are a License's own rules (old is nil on create).
func (v *validator) licenseRules(_ context.Context, obj, old *keycapv1alpha1.License) (field.ErrorList, admission.Warnings, error) {
	return validateLicense(&obj.Spec, old, v.clock.Now(), v.policy, specPath), nil, nil
}

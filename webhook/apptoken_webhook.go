package webhook

import (
	"context"

	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	keycapv1alpha1 "github.com/keycap-dev/keycap/api/v1alpha1"
)

// appTokenRules are an AppToken's own rules (old is nil on create).
func (v *validator) appTokenRules(_ context.Context, obj, old *keycapv1alpha1.AppToken) (field.ErrorList, admission.Warnings, error) {
	return validateAppToken(&obj.Spec, old == nil, v.clock.Now(), v.policy, specPath), nil, nil
}

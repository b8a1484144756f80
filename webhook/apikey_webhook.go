package webhook

import (
	"context"

	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	keycapv1alpha1 "github.com/keycap-dev/keycap/api/v1alpha1"
	"github.com/keycap-dev/keycap/internal/registry"
)

// apiKeyRules are an ApiKey's own rules (old is nil on create). An update that disables the key
// or drops scopes its agent keys hold is allowed, with a warning naming the agent keys it affects.
func (v *validator) apiKeyRules(ctx context.Context, obj, old *keycapv1alpha1.ApiKey) (field.ErrorList, admission.Warnings, error) {
	errs := validateApiKey(&obj.Spec, old == nil, v.clock.Now(), v.policy, specPath)
	if old == nil || len(errs) > 0 {
		return errs, nil, nil
	}
	disabling := obj.Spec.Disabled && !old.Spec.Disabled
	if !disabling && len(removedScopes(old.Spec.Scopes, obj.Spec.Scopes)) == 0 {
		return nil, nil, nil
	}
	var agents keycapv1alpha1.AgentKeyList
	if err := v.reader.List(ctx, &agents, client.InNamespace(obj.Namespace), client.MatchingFields{registry.IndexParent: obj.Name}); err != nil {
		// Warnings are a courtesy; the update itself is valid.
		logf.FromContext(ctx).Error(err, "listing the agent keys of an ApiKey for warnings")
		return nil, nil, nil
	}
	return nil, parentChangeWarnings(&old.Spec, &obj.Spec, agents.Items), nil
}

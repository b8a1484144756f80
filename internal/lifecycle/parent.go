package lifecycle

import (
	"fmt"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	keycapv1alpha1 "github.com/keycap-dev/keycap/api/v1alpha1"
)

// ParentState says whether an AgentKey's parent ApiKey is active at now, and if not, why. A
// parent is active when it exists, is not being deleted, is neither disabled nor expired by its
// spec (read directly, so the agent key does not wait for the parent's own reconcile) and its
// controller has reported it Ready for its current generation.
func ParentState(now time.Time, name string, parent *keycapv1alpha1.ApiKey) (active bool, message string) {
	switch {
	case parent == nil:
		return false, fmt.Sprintf("parent ApiKey %q does not exist", name)
	case parent.DeletionTimestamp != nil:
		return false, fmt.Sprintf("parent ApiKey %q is being deleted", name)
	case parent.Spec.Disabled:
		return false, fmt.Sprintf("parent ApiKey %q is disabled", name)
	case Expired(now, Expiry(parent.CreationTimestamp, parent.Spec.Lifetime, nil)):
		return false, fmt.Sprintf("parent ApiKey %q has expired", name)
	}
	ready := meta.FindStatusCondition(parent.Status.Conditions, keycapv1alpha1.ConditionReady)
	switch {
	case ready == nil || ready.ObservedGeneration != parent.Generation:
		return false, fmt.Sprintf("parent ApiKey %q is not reconciled yet", name)
	case ready.Status != metav1.ConditionTrue:
		return false, fmt.Sprintf("parent ApiKey %q is not Ready (%s)", name, ready.Reason)
	}
	return true, ""
}

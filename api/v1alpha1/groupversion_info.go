// Package v1alpha1 contains the keycap.dev/v1alpha1 API: the four credential kinds ApiKey,
// AgentKey, AppToken and License.
//
// +kubebuilder:object:generate=true
// +groupName=keycap.dev
package v1alpha1

import (
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/scheme"
)

var (
	// GroupVersion is the group and version of every keycap kind.
	GroupVersion = schema.GroupVersion{Group: "keycap.dev", Version: "v1alpha1"}

	// SchemeBuilder registers the keycap kinds with a runtime.Scheme.
	SchemeBuilder = &scheme.Builder{GroupVersion: GroupVersion}

	// AddToScheme adds the keycap kinds to a runtime.Scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)

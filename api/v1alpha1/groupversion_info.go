// Package v1alpha1 contains the keycap.dev/v1alpha1 API: the four credential kinds ApiKey,
// AgentKey, AppToken and License, and the policy kind RoutePolicy.
//
// +kubebuilder:object:generate=true
// +groupName=keycap.dev
package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

var (
	// GroupVersion is the group and version of every keycap kind.
	GroupVersion = schema.GroupVersion{Group: "keycap.dev", Version: "v1alpha1"}

	// SchemeBuilder registers the keycap kinds with a runtime.Scheme.
	SchemeBuilder = runtime.NewSchemeBuilder(addKnownTypes)

	// AddToScheme adds the keycap kinds to a runtime.Scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)

// addKnownTypes registers the four credential kinds, the RoutePolicy policy kind and their lists.
// The API package depends on apimachinery only, so clients can import it without controller-runtime.
func addKnownTypes(s *runtime.Scheme) error {
	s.AddKnownTypes(GroupVersion,
		&ApiKey{}, &ApiKeyList{},
		&AgentKey{}, &AgentKeyList{},
		&AppToken{}, &AppTokenList{},
		&License{}, &LicenseList{},
		&RoutePolicy{}, &RoutePolicyList{},
	)
	metav1.AddToGroupVersion(s, GroupVersion)
	return nil
}

package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// ApiKeySecretKey is the Secret data key that holds an ApiKey's key.
const ApiKeySecretKey = "api-key"

// ApiKeySpec is the desired state of an ApiKey.
// +kubebuilder:validation:XValidation:rule="!(has(self.expiresAt) && has(self.duration))",message="set at most one of expiresAt and duration"
// +kubebuilder:validation:XValidation:rule="!(has(self.keyHash) && has(self.rotation))",message="rotation cannot be used with keyHash: keycap does not hold a bring-your-own key"
// +kubebuilder:validation:XValidation:rule="has(oldSelf.keyHash) == has(self.keyHash)",message="keyHash cannot be added or removed; create a new ApiKey instead"
// +kubebuilder:validation:XValidation:rule="!has(oldSelf.prefix) || (has(self.prefix) && self.prefix == oldSelf.prefix)",message="prefix is immutable"
type ApiKeySpec struct {
	CredentialSpec `json:",inline"`
	Lifetime       `json:",inline"`
	OpaqueKeySpec  `json:",inline"`

	// prefix starts every generated key, so that people and secret scanners can tell keys apart,
	// e.g. "acme" gives "acme_<random>_<checksum>". Defaults to "kc". Ignored with keyHash.
	// +optional
	// +kubebuilder:validation:MinLength=2
	// +kubebuilder:validation:MaxLength=16
	// +kubebuilder:validation:Pattern=`^[a-z][a-z0-9]*$`
	Prefix string `json:"prefix,omitempty"`
}

// ApiKeyStatus is the observed state of an ApiKey.
type ApiKeyStatus struct {
	CredentialStatus `json:",inline"`
	OpaqueKeyStatus  `json:",inline"`
}

// ApiKey is an organisation's key for server-to-server calls, with scopes. The namespace is the
// tenant. keycap generates the key into a Secret and verifies it at request time by digest.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:categories={keycap,credentials},shortName=ak
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Reason",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].reason`,priority=1
// +kubebuilder:printcolumn:name="Hint",type=string,JSONPath=`.status.hint`
// +kubebuilder:printcolumn:name="Expires",type=string,JSONPath=`.status.expiresAt`
// +kubebuilder:printcolumn:name="Last Used",type=date,JSONPath=`.status.lastUsedAt`
// +kubebuilder:printcolumn:name="Secret",type=string,JSONPath=`.status.secretName`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type ApiKey struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// +optional
	Spec ApiKeySpec `json:"spec,omitempty"`
	// +optional
	Status ApiKeyStatus `json:"status,omitempty"`
}

// ApiKeyList is a list of ApiKeys.
// +kubebuilder:object:root=true
type ApiKeyList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []ApiKey `json:"items"`
}

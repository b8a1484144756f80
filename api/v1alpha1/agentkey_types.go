package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// AgentKeySecretKey is the Secret data key that holds an AgentKey's key.
const AgentKeySecretKey = "agent-key"

// AgentKeyPrefix starts every generated agent key.
const AgentKeyPrefix = "kcagent"

// ApiKeyReference names the parent ApiKey of an AgentKey, in the AgentKey's namespace.
type ApiKeyReference struct {
	// name of the parent ApiKey, in the AgentKey's namespace (a name, not "namespace/name").
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	Name string `json:"name"`
}

// AgentKeySpec is the desired state of an AgentKey.
// +kubebuilder:validation:XValidation:rule="!(has(self.expiresAt) && has(self.duration))",message="set at most one of expiresAt and duration"
// +kubebuilder:validation:XValidation:rule="!(has(self.keyHash) && has(self.rotation))",message="rotation cannot be used with keyHash: keycap does not hold a bring-your-own key"
// +kubebuilder:validation:XValidation:rule="has(oldSelf.keyHash) == has(self.keyHash)",message="keyHash cannot be added or removed; create a new AgentKey instead"
type AgentKeySpec struct {
	CredentialSpec `json:",inline"`
	Lifetime       `json:",inline"`
	OpaqueKeySpec  `json:",inline"`

	// apiKeyRef names the parent ApiKey. The agent key is valid only while it and its parent are
	// active, and its scopes are narrowed to the parent's. It cannot be changed.
	// +required
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="apiKeyRef is immutable"
	APIKeyRef ApiKeyReference `json:"apiKeyRef"`

	// agent is the ID of the agent that holds the key; it is passed upstream as x-keycap-agent.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[A-Za-z0-9][A-Za-z0-9._:@-]*$`
	Agent string `json:"agent"`

	// label is a human-readable name for the key.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:XValidation:rule="!self.matches('[[:cntrl:]]')",message="label must not contain control characters (CR, LF, tab ...)"
	Label string `json:"label,omitempty"`
}

// AgentKeyStatus is the observed state of an AgentKey.
type AgentKeyStatus struct {
	CredentialStatus `json:",inline"`
	OpaqueKeyStatus  `json:",inline"`

	// parentKeyID is the keyID of the parent ApiKey when it was last observed active.
	// +optional
	ParentKeyID string `json:"parentKeyID,omitempty"`
}

// AgentKey is a per-agent key under a parent ApiKey. It is valid only while it and its parent are
// active, and its scopes can only narrow the parent's.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:categories={keycap,credentials},shortName=agk
// +kubebuilder:printcolumn:name="Parent",type=string,JSONPath=`.spec.apiKeyRef.name`
// +kubebuilder:printcolumn:name="Agent",type=string,JSONPath=`.spec.agent`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Reason",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].reason`,priority=1
// +kubebuilder:printcolumn:name="Hint",type=string,JSONPath=`.status.hint`
// +kubebuilder:printcolumn:name="Expires",type=string,JSONPath=`.status.expiresAt`
// +kubebuilder:printcolumn:name="Last Used",type=date,JSONPath=`.status.lastUsedAt`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type AgentKey struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// +required
	Spec AgentKeySpec `json:"spec"`
	// +optional
	Status AgentKeyStatus `json:"status,omitempty"`
}

// AgentKeyList is a list of AgentKeys.
// +kubebuilder:object:root=true
type AgentKeyList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []AgentKey `json:"items"`
}

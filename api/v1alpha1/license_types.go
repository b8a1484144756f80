package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Secret data keys of a License.
const (
	// LicenseKeySecretKey holds the licence key.
	LicenseKeySecretKey = "license-key"
	// LicenseFileSecretKey holds the signed licence file for offline checks.
	LicenseFileSecretKey = "license-file"
)

// LicenseKeyPrefix starts every generated licence key.
const LicenseKeyPrefix = "kclic"

// LicenseSpec is the desired state of a License.
// +kubebuilder:validation:XValidation:rule="!(has(self.expiresAt) && has(self.duration))",message="set at most one of expiresAt and duration"
type LicenseSpec struct {
	CredentialSpec `json:",inline"`
	Lifetime       `json:",inline"`

	// product is the licensed product.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=128
	// +kubebuilder:validation:XValidation:rule="!self.matches('[[:cntrl:]]')",message="product must not contain control characters (CR, LF, tab ...)"
	Product string `json:"product"`

	// customer is who holds the licence.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:XValidation:rule="!self.matches('[[:cntrl:]]')",message="customer must not contain control characters (CR, LF, tab ...)"
	Customer string `json:"customer,omitempty"`

	// plan is the commercial plan, e.g. "enterprise".
	// +optional
	// +kubebuilder:validation:MaxLength=128
	// +kubebuilder:validation:XValidation:rule="!self.matches('[[:cntrl:]]')",message="plan must not contain control characters (CR, LF, tab ...)"
	Plan string `json:"plan,omitempty"`

	// entitlements are the features the licence unlocks; a route may require one. Each is a word
	// like "sso" or "audit-log" (the data plane passes them upstream comma-separated in a header).
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=256
	// +kubebuilder:validation:items:MinLength=1
	// +kubebuilder:validation:items:MaxLength=128
	// +kubebuilder:validation:XValidation:rule="self.all(e, e.matches('^[A-Za-z0-9][A-Za-z0-9._:/*-]*$'))",message="each entitlement must be a word like 'sso' or 'audit-log': letters, digits and . _ : / * - only (no commas, spaces or control characters: entitlements are sent upstream comma-separated in the x-keycap-entitlements header)"
	Entitlements []string `json:"entitlements,omitempty"`

	// maxInstances caps how many instances may be active at once.
	// +optional
	// +kubebuilder:default=1
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=100000
	MaxInstances int32 `json:"maxInstances,omitempty"`

	// refreshInterval is how often an activated instance should check in again. Defaults to 24h.
	// +optional
	// +kubebuilder:default="24h"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:MaxLength=64
	// +kubebuilder:validation:XValidation:rule="self.matches('^[-+]?(0|(([0-9]+([.][0-9]*)?|[.][0-9]+)(ns|us|ms|s|m|h))+)$')",message="must be a duration in hours, minutes or seconds: use hours, e.g. 2160h for 90 days (also 90m, 45s, 1h30m; d, w and other units are not accepted)"
	RefreshInterval *metav1.Duration `json:"refreshInterval,omitempty"`

	// heartbeatTimeout releases an instance that has not checked in for this long, freeing its
	// seat. Defaults to three refresh intervals.
	// +optional
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:MaxLength=64
	// +kubebuilder:validation:XValidation:rule="self.matches('^[-+]?(0|(([0-9]+([.][0-9]*)?|[.][0-9]+)(ns|us|ms|s|m|h))+)$')",message="must be a duration in hours, minutes or seconds: use hours, e.g. 2160h for 90 days (also 90m, 45s, 1h30m; d, w and other units are not accepted)"
	HeartbeatTimeout *metav1.Duration `json:"heartbeatTimeout,omitempty"`
}

// LicenseActivation is one activated instance of a License.
type LicenseActivation struct {
	// instanceID identifies the activated instance.
	// +required
	InstanceID string `json:"instanceID"`
	// activatedAt is when the instance was activated.
	// +required
	ActivatedAt metav1.Time `json:"activatedAt"`
	// lastSeenAt is when the instance last activated or checked in.
	// +required
	LastSeenAt metav1.Time `json:"lastSeenAt"`
}

// LicenseStatus is the observed state of a License.
type LicenseStatus struct {
	CredentialStatus `json:",inline"`

	// digests are the SHA-256 digests (lowercase hex) of the licence key.
	// +optional
	// +kubebuilder:validation:MaxItems=2
	Digests []string `json:"digests,omitempty"`

	// activations are the instances activated now.
	// +optional
	// +listType=map
	// +listMapKey=instanceID
	Activations []LicenseActivation `json:"activations,omitempty"`
}

// License is a product licence: a key, a plan and entitlements, an expiry, a cap on activated
// instances and a signed licence file for offline checks.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:categories={keycap,credentials},shortName=lic
// +kubebuilder:printcolumn:name="Product",type=string,JSONPath=`.spec.product`
// +kubebuilder:printcolumn:name="Plan",type=string,JSONPath=`.spec.plan`
// +kubebuilder:printcolumn:name="Max",type=integer,JSONPath=`.spec.maxInstances`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Hint",type=string,JSONPath=`.status.hint`
// +kubebuilder:printcolumn:name="Expires",type=string,JSONPath=`.status.expiresAt`
// +kubebuilder:printcolumn:name="Last Used",type=date,JSONPath=`.status.lastUsedAt`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type License struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// +required
	Spec LicenseSpec `json:"spec"`
	// +optional
	Status LicenseStatus `json:"status,omitempty"`
}

// LicenseList is a list of Licenses.
// +kubebuilder:object:root=true
type LicenseList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []License `json:"items"`
}

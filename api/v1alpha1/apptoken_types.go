package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// AppTokenSecretKey is the Secret data key that holds an AppToken's JWT.
const AppTokenSecretKey = "token"

// AppTokenSpec is the desired state of an AppToken.
// +kubebuilder:validation:XValidation:rule="!has(self.renewBefore) || !has(self.duration) || duration(self.renewBefore) < duration(self.duration)",message="renewBefore must be shorter than duration"
type AppTokenSpec struct {
	CredentialSpec `json:",inline"`

	// subject is the JWT's sub claim. Defaults to "<namespace>/<name>". The data plane passes it
	// upstream in a header, so it is printable ASCII without commas.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:XValidation:rule="self.matches('^[[:print:]]*$') && !self.contains(',')",message="subject must be printable ASCII without commas (no CR, LF or other control characters): it is sent upstream in the x-keycap-subject header"
	Subject string `json:"subject,omitempty"`

	// audiences are the JWT's aud claim: the services the token is meant for.
	// +required
	// +listType=set
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=32
	// +kubebuilder:validation:items:MinLength=1
	// +kubebuilder:validation:items:MaxLength=253
	// +kubebuilder:validation:XValidation:rule="self.all(a, !a.matches('[[:cntrl:]]'))",message="audiences must not contain control characters (CR, LF, tab ...)"
	Audiences []string `json:"audiences"`

	// label is a human-readable name for the token.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:XValidation:rule="!self.matches('[[:cntrl:]]')",message="label must not contain control characters (CR, LF, tab ...)"
	Label string `json:"label,omitempty"`

	// expiresAt is when the AppToken stops being renewed and its tokens stop being accepted.
	// +optional
	ExpiresAt *metav1.Time `json:"expiresAt,omitempty"`

	// duration is the lifetime of each issued token. Defaults to 1h.
	// +optional
	// +kubebuilder:default="1h"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:MaxLength=64
	// +kubebuilder:validation:XValidation:rule="self.matches('^[-+]?(0|(([0-9]+([.][0-9]*)?|[.][0-9]+)(ns|us|ms|s|m|h))+)$')",message="must be a duration in hours, minutes or seconds: use hours, e.g. 2160h for 90 days (also 90m, 45s, 1h30m; d, w and other units are not accepted)"
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1m') && duration(self) <= duration('8760h')",message="duration must be between 1m and 8760h"
	Duration *metav1.Duration `json:"duration,omitempty"`

	// renewBefore is how long before a token expires that the controller writes a new one into
	// the Secret. Defaults to a third of duration.
	// +optional
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:MaxLength=64
	// +kubebuilder:validation:XValidation:rule="self.matches('^[-+]?(0|(([0-9]+([.][0-9]*)?|[.][0-9]+)(ns|us|ms|s|m|h))+)$')",message="must be a duration in hours, minutes or seconds: use hours, e.g. 2160h for 90 days (also 90m, 45s, 1h30m; d, w and other units are not accepted)"
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('10s')",message="renewBefore must be at least 10s"
	RenewBefore *metav1.Duration `json:"renewBefore,omitempty"`
}

// AppTokenStatus is the observed state of an AppToken.
type AppTokenStatus struct {
	CredentialStatus `json:",inline"`

	// issuedAt is when the current token was issued (its iat claim).
	// +optional
	IssuedAt *metav1.Time `json:"issuedAt,omitempty"`

	// tokenExpiresAt is when the current token expires (its exp claim).
	// +optional
	TokenExpiresAt *metav1.Time `json:"tokenExpiresAt,omitempty"`

	// renewAt is when the controller will write the next token.
	// +optional
	RenewAt *metav1.Time `json:"renewAt,omitempty"`

	// signingKeyID is the kid of the key that signed the current token.
	// +optional
	SigningKeyID string `json:"signingKeyID,omitempty"`

	// tokensNotBefore revokes every token issued before it: the data plane refuses a token whose
	// iat is earlier. The controller sets it when the Secret is deleted or found holding a token
	// keycap did not issue, so that deleting the Secret revokes the token it held, as it does an
	// ApiKey's key. Tokens replaced by an ordinary renewal stay valid until their own exp.
	// +optional
	TokensNotBefore *metav1.Time `json:"tokensNotBefore,omitempty"`
}

// AppToken is an org-scoped service token issued as a signed JWT and renewed into its Secret
// before it expires.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:categories={keycap,credentials},shortName=at
// +kubebuilder:printcolumn:name="Subject",type=string,JSONPath=`.spec.subject`,priority=1
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Reason",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].reason`,priority=1
// +kubebuilder:printcolumn:name="Token Expires",type=string,JSONPath=`.status.tokenExpiresAt`
// +kubebuilder:printcolumn:name="Expires",type=string,JSONPath=`.status.expiresAt`
// +kubebuilder:printcolumn:name="Last Used",type=date,JSONPath=`.status.lastUsedAt`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type AppToken struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// +required
	Spec AppTokenSpec `json:"spec"`
	// +optional
	Status AppTokenStatus `json:"status,omitempty"`
}

// AppTokenList is a list of AppTokens.
// +kubebuilder:object:root=true
type AppTokenList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []AppToken `json:"items"`
}

package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// CredentialSpec holds the fields every credential kind shares.
type CredentialSpec struct {
	// description says what the credential is for. It is shown to humans only.
	// +optional
	// +kubebuilder:validation:MaxLength=1024
	Description string `json:"description,omitempty"`

	// scopes are the permissions the credential grants, e.g. "videos:read". A route of the data
	// plane states the scopes it requires; a request is allowed only when the credential holds all
	// of them.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=256
	// +kubebuilder:validation:items:MinLength=1
	// +kubebuilder:validation:items:MaxLength=128
	// +kubebuilder:validation:items:Pattern=`^[A-Za-z0-9][A-Za-z0-9._:/*-]*$`
	Scopes []string `json:"scopes,omitempty"`

	// disabled deactivates the credential without deleting it: the data plane refuses it at once
	// and the Secret is kept, so enabling it again restores the same key.
	// +optional
	Disabled bool `json:"disabled,omitempty"`

	// secretName is the name of the Secret, in the credential's namespace, that receives the
	// credential. Defaults to the credential's own name. It cannot be changed once set.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="secretName is immutable"
	SecretName string `json:"secretName,omitempty"`

	// secretTemplate adds labels and annotations to the Secret.
	// +optional
	SecretTemplate *SecretTemplate `json:"secretTemplate,omitempty"`
}

// SecretTemplate holds metadata copied onto the managed Secret.
type SecretTemplate struct {
	// labels are added to the Secret. keycap's own labels (keycap.dev/*) cannot be overridden.
	// +optional
	// +kubebuilder:validation:MaxProperties=64
	Labels map[string]string `json:"labels,omitempty"`

	// annotations are added to the Secret.
	// +optional
	// +kubebuilder:validation:MaxProperties=64
	Annotations map[string]string `json:"annotations,omitempty"`
}

// Lifetime bounds how long a credential is valid: an absolute expiresAt or a duration counted
// from the credential's creation. At most one of the two may be set; neither means no expiry.
type Lifetime struct {
	// expiresAt is the instant the credential stops being valid.
	// +optional
	ExpiresAt *metav1.Time `json:"expiresAt,omitempty"`

	// duration is the credential's lifetime counted from its creation, e.g. "720h" (hours,
	// minutes or seconds; there is no unit for days).
	// +optional
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:MaxLength=64
	// +kubebuilder:validation:XValidation:rule="self.matches('^[-+]?(0|(([0-9]+([.][0-9]*)?|[.][0-9]+)(ns|us|ms|s|m|h))+)$')",message="must be a duration in hours, minutes or seconds: use hours, e.g. 2160h for 90 days (also 90m, 45s, 1h30m; d, w and other units are not accepted)"
	Duration *metav1.Duration `json:"duration,omitempty"`
}

// OpaqueKeySpec holds the fields of the opaque-key kinds (ApiKey, AgentKey): rotation and
// bring-your-own key digests.
type OpaqueKeySpec struct {
	// rotation replaces the key on a schedule. The previous key keeps working for gracePeriod.
	// +optional
	Rotation *RotationPolicy `json:"rotation,omitempty"`

	// keyHash is a bring-your-own key for GitOps: the SHA-256 of a key the user holds, written
	// "sha256:<64 lowercase hex>". When set, keycap generates no key and writes no key into the
	// Secret; only the digest ever lives in Git and in the cluster. The key may be in any format.
	// +optional
	// +kubebuilder:validation:Pattern=`^sha256:[0-9a-f]{64}$`
	KeyHash string `json:"keyHash,omitempty"`

	// sessions governs the browser sessions (SSO cookies) logged in with this key.
	// +optional
	Sessions *SessionPolicy `json:"sessions,omitempty"`
}

// SessionPolicy governs a credential's browser sessions. A session is judged live against its
// credential on every request, so disabling, expiring or deleting the credential ends it anyway.
type SessionPolicy struct {
	// notBefore ends every session logged in at or before this instant ("log out everywhere";
	// `kubectl keycap logout` sets it to now). Sessions logged in later are not affected.
	// +optional
	NotBefore *metav1.Time `json:"notBefore,omitempty"`

	// duration is the lifetime of a session logged in with this key, overriding the data plane's
	// --sso-session-duration (default 720h), e.g. "8h". At most 2160h.
	// +optional
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1m') && duration(self) <= duration('2160h')",message="duration must be between 1m and 2160h"
	Duration *metav1.Duration `json:"duration,omitempty"`

	// endOnRotation ends the sessions logged in with a key once rotation replaces that key.
	// By default rotation keeps sessions.
	// +optional
	EndOnRotation bool `json:"endOnRotation,omitempty"`
}

// RotationPolicy describes scheduled key rotation.
// +kubebuilder:validation:XValidation:rule="!has(self.gracePeriod) || duration(self.gracePeriod) < duration(self.every)",message="gracePeriod must be shorter than every"
type RotationPolicy struct {
	// every is the interval between rotations, e.g. "720h". At least one minute.
	// +required
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:MaxLength=64
	// +kubebuilder:validation:XValidation:rule="self.matches('^[-+]?(0|(([0-9]+([.][0-9]*)?|[.][0-9]+)(ns|us|ms|s|m|h))+)$')",message="must be a duration in hours, minutes or seconds: use hours, e.g. 2160h for 90 days (also 90m, 45s, 1h30m; d, w and other units are not accepted)"
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1m')",message="every must be at least 1m"
	Every metav1.Duration `json:"every"`

	// gracePeriod is how long the previous key keeps working after a rotation, e.g. "24h".
	// Defaults to no grace: the previous key stops working at once.
	// +optional
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:MaxLength=64
	// +kubebuilder:validation:XValidation:rule="self.matches('^[-+]?(0|(([0-9]+([.][0-9]*)?|[.][0-9]+)(ns|us|ms|s|m|h))+)$')",message="must be a duration in hours, minutes or seconds: use hours, e.g. 2160h for 90 days (also 90m, 45s, 1h30m; d, w and other units are not accepted)"
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('0s')",message="gracePeriod must not be negative"
	GracePeriod *metav1.Duration `json:"gracePeriod,omitempty"`
}

// CredentialStatus holds the observed state every credential kind shares. Only the operator
// writes it; the data plane trusts it.
type CredentialStatus struct {
	// conditions hold the credential's state; Ready is True while the credential is usable.
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// observedGeneration is the generation of the spec this status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// keyID is the public identifier of the current key; it is safe to log and to show.
	// +optional
	KeyID string `json:"keyID,omitempty"`

	// hint shows enough of the key for a human to recognise it: its prefix and last 4 characters.
	// +optional
	Hint string `json:"hint,omitempty"`

	// expiresAt is when the credential stops being valid; empty when it does not expire.
	// +optional
	ExpiresAt *metav1.Time `json:"expiresAt,omitempty"`

	// lastRotatedAt is when the current key was issued.
	// +optional
	LastRotatedAt *metav1.Time `json:"lastRotatedAt,omitempty"`

	// lastUsedAt is when the data plane last allowed a request with this credential; it is
	// written in the background and may lag by up to a minute.
	// +optional
	LastUsedAt *metav1.Time `json:"lastUsedAt,omitempty"`

	// secretName is the Secret that holds the credential.
	// +optional
	SecretName string `json:"secretName,omitempty"`
}

// OpaqueKeyStatus holds the state of the opaque-key kinds (ApiKey, AgentKey).
type OpaqueKeyStatus struct {
	// digests are the SHA-256 digests (lowercase hex) of every key valid now, the current key
	// first. The data plane knows keys only by these digests.
	// +optional
	// +kubebuilder:validation:MaxItems=2
	Digests []string `json:"digests,omitempty"`

	// previousKeyValidUntil is when the previous key, still listed second in digests after a
	// rotation, stops being valid.
	// +optional
	PreviousKeyValidUntil *metav1.Time `json:"previousKeyValidUntil,omitempty"`
}

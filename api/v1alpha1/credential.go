package v1alpha1

import (
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// Kind names of the credential kinds, as they appear in the API, labels, Events, metrics and the
// data plane's identity headers. They are defined here and nowhere else.
const (
	KindApiKey   = "ApiKey"
	KindAgentKey = "AgentKey"
	KindAppToken = "AppToken"
	KindLicense  = "License"
)

// DefaultAppTokenDuration is the lifetime of an AppToken's tokens without spec.duration. The CRD
// states the same default (the +kubebuilder:default marker on AppTokenSpec.Duration).
const DefaultAppTokenDuration = time.Hour

// Credential is implemented by every credential kind, so that code common to the kinds (the kind
// registry in internal/registry, the lifecycle rules in internal/lifecycle, the controllers'
// plumbing) needs no type switch. The accessors return pointers into the object: writes through
// them change the object.
//
// +kubebuilder:object:generate=false
type Credential interface {
	metav1.Object
	runtime.Object

	// CredentialKind is the kind's name (KindApiKey, ...), also for an object without TypeMeta.
	CredentialKind() string
	// GetCredentialSpec returns the spec fields every kind shares.
	GetCredentialSpec() *CredentialSpec
	// GetCredentialStatus returns the status fields every kind shares.
	GetCredentialStatus() *CredentialStatus
	// GetLifetime returns how long the object itself is valid. For an AppToken that is only
	// spec.expiresAt: its spec.duration is the lifetime of each token, not of the object.
	GetLifetime() Lifetime
	// GetStatusDigests returns the SHA-256 digests (hex) status lists for the data plane: the
	// opaque keys valid now, or a licence key; nil for kinds not found by digest.
	GetStatusDigests() []string
}

// OpaqueKeyCredential is implemented by the kinds whose credential is an opaque key that keycap
// generates (or takes as a digest with keyHash) and rotates: ApiKey and AgentKey.
//
// +kubebuilder:object:generate=false
type OpaqueKeyCredential interface {
	Credential
	GetOpaqueKeySpec() *OpaqueKeySpec
	GetOpaqueKeyStatus() *OpaqueKeyStatus
}

var (
	_ OpaqueKeyCredential = (*ApiKey)(nil)
	_ OpaqueKeyCredential = (*AgentKey)(nil)
	_ Credential          = (*AppToken)(nil)
	_ Credential          = (*License)(nil)
)

// SecretNameOf is the name of the Secret a credential writes: spec.secretName, or its own name.
func SecretNameOf(c Credential) string {
	if s := c.GetCredentialSpec().SecretName; s != "" {
		return s
	}
	return c.GetName()
}

// ReservedPrefix starts the labels and annotations only keycap writes on its Secrets.
const ReservedPrefix = "keycap.dev/"

// IsReservedMetadataKey reports whether keycap owns a label or annotation key on its Secrets:
// keycap.dev/* and the managed-by label. secretTemplate cannot set them and the tamper guard
// refuses changes to them.
func IsReservedMetadataKey(k string) bool {
	return strings.HasPrefix(k, ReservedPrefix) || k == LabelManagedBy
}

// CredentialKind implements Credential.
func (*ApiKey) CredentialKind() string { return KindApiKey }

// GetCredentialSpec implements Credential.
func (k *ApiKey) GetCredentialSpec() *CredentialSpec { return &k.Spec.CredentialSpec }

// GetCredentialStatus implements Credential.
func (k *ApiKey) GetCredentialStatus() *CredentialStatus { return &k.Status.CredentialStatus }

// GetLifetime implements Credential.
func (k *ApiKey) GetLifetime() Lifetime { return k.Spec.Lifetime }

// GetStatusDigests implements Credential.
func (k *ApiKey) GetStatusDigests() []string { return k.Status.Digests }

// GetOpaqueKeySpec implements OpaqueKeyCredential.
func (k *ApiKey) GetOpaqueKeySpec() *OpaqueKeySpec { return &k.Spec.OpaqueKeySpec }

// GetOpaqueKeyStatus implements OpaqueKeyCredential.
func (k *ApiKey) GetOpaqueKeyStatus() *OpaqueKeyStatus { return &k.Status.OpaqueKeyStatus }

// CredentialKind implements Credential.
func (*AgentKey) CredentialKind() string { return KindAgentKey }

// GetCredentialSpec implements Credential.
func (k *AgentKey) GetCredentialSpec() *CredentialSpec { return &k.Spec.CredentialSpec }

// GetCredentialStatus implements Credential.
func (k *AgentKey) GetCredentialStatus() *CredentialStatus { return &k.Status.CredentialStatus }

// GetLifetime implements Credential.
func (k *AgentKey) GetLifetime() Lifetime { return k.Spec.Lifetime }

// GetStatusDigests implements Credential.
func (k *AgentKey) GetStatusDigests() []string { return k.Status.Digests }

// GetOpaqueKeySpec implements OpaqueKeyCredential.
func (k *AgentKey) GetOpaqueKeySpec() *OpaqueKeySpec { return &k.Spec.OpaqueKeySpec }

// GetOpaqueKeyStatus implements OpaqueKeyCredential.
func (k *AgentKey) GetOpaqueKeyStatus() *OpaqueKeyStatus { return &k.Status.OpaqueKeyStatus }

// CredentialKind implements Credential.
func (*AppToken) CredentialKind() string { return KindAppToken }

// GetCredentialSpec implements Credential.
func (t *AppToken) GetCredentialSpec() *CredentialSpec { return &t.Spec.CredentialSpec }

// GetCredentialStatus implements Credential.
func (t *AppToken) GetCredentialStatus() *CredentialStatus { return &t.Status.CredentialStatus }

// GetLifetime implements Credential: an AppToken's duration is each token's lifetime, so only
// spec.expiresAt bounds the object.
func (t *AppToken) GetLifetime() Lifetime { return Lifetime{ExpiresAt: t.Spec.ExpiresAt} }

// GetStatusDigests implements Credential: AppTokens are found by keyID (the jti of every token),
// not by digest.
func (*AppToken) GetStatusDigests() []string { return nil }

// CredentialKind implements Credential.
func (*License) CredentialKind() string { return KindLicense }

// GetCredentialSpec implements Credential.
func (l *License) GetCredentialSpec() *CredentialSpec { return &l.Spec.CredentialSpec }

// GetCredentialStatus implements Credential.
func (l *License) GetCredentialStatus() *CredentialStatus { return &l.Status.CredentialStatus }

// GetLifetime implements Credential.
func (l *License) GetLifetime() Lifetime { return l.Spec.Lifetime }

// GetStatusDigests implements Credential.
func (l *License) GetStatusDigests() []string { return l.Status.Digests }

// CredentialList is implemented by the list type of every credential kind.
//
// +kubebuilder:object:generate=false
type CredentialList interface {
	metav1.ListInterface
	runtime.Object
	// Credentials returns pointers to the list's items.
	Credentials() []Credential
}

var (
	_ CredentialList = (*ApiKeyList)(nil)
	_ CredentialList = (*AgentKeyList)(nil)
	_ CredentialList = (*AppTokenList)(nil)
	_ CredentialList = (*LicenseList)(nil)
)

// Credentials implements CredentialList.
func (l *ApiKeyList) Credentials() []Credential { return credentials(l.Items) }

// Credentials implements CredentialList.
func (l *AgentKeyList) Credentials() []Credential { return credentials(l.Items) }

// Credentials implements CredentialList.
func (l *AppTokenList) Credentials() []Credential { return credentials(l.Items) }

// Credentials implements CredentialList.
func (l *LicenseList) Credentials() []Credential { return credentials(l.Items) }

// credentials returns pointers to items as Credentials.
func credentials[T any, PT interface {
	*T
	Credential
}](items []T) []Credential {
	out := make([]Credential, len(items))
	for i := range items {
		out[i] = PT(&items[i])
	}
	return out
}

// Package registry is the one list of keycap's credential kinds. Every layer that handles "each
// kind" iterates it instead of keeping its own list: the controllers (one reconciler per entry),
// the webhook (its validators and uniqueness lookups), the data-plane index (its informers and
// the projection of each kind into the index), the lastUsedAt writer and the kubectl plugin.
//
// A kind's whole story is in four places: its API types (api/v1alpha1/<kind>_types.go, which
// implement keycapv1alpha1.Credential), its entry here, its issuer (controllers/, what its Secret
// and status should be) and its verifier (internal/authz, how the data plane judges it).
package registry

import (
	"strings"

	"k8s.io/apimachinery/pkg/runtime/schema"

	keycapv1alpha1 "github.com/keycap-dev/keycap/api/v1alpha1"
	"github.com/keycap-dev/keycap/internal/index"
)

// Kind describes one credential kind.
type Kind struct {
	// Name is the Kind (keycapv1alpha1.KindApiKey, ...).
	Name string
	// Resource is the plural resource name, e.g. "apikeys".
	Resource string
	// Aliases are what a person may type for the kind besides Name and Resource: the singular in
	// lower case, short names, other spellings.
	Aliases []string
	// SecretDataKey is the Secret data key that holds the credential.
	SecretDataKey string
	// FoundByDigest says the data plane finds the credential by the SHA-256 of what a request
	// presents (status digests); otherwise by the keyID in the token (AppToken).
	FoundByDigest bool
	// OpaqueKey says the kind is an opaque key keycap generates and rotates (spec.rotation,
	// spec.keyHash, the keycap.dev/rotate annotation); its objects implement
	// keycapv1alpha1.OpaqueKeyCredential.
	OpaqueKey bool
	// New returns an empty object of the kind.
	New func() keycapv1alpha1.Credential
	// NewList returns an empty list of the kind.
	NewList func() keycapv1alpha1.CredentialList
	// Project is the kind's projection into the data plane's index: the Credential the index
	// holds for an object of this kind (with its typed per-kind data) and the digests it lists.
	Project index.Projection
}

// GVK is the kind's group, version and kind.
func (k *Kind) GVK() schema.GroupVersionKind { return keycapv1alpha1.GroupVersion.WithKind(k.Name) }

// GVR is the kind's group, version and resource.
func (k *Kind) GVR() schema.GroupVersionResource {
	return keycapv1alpha1.GroupVersion.WithResource(k.Resource)
}

// kinds is the registry, in the order people see the kinds (kubectl keycap list).
var kinds = []*Kind{
	{
		Name: keycapv1alpha1.KindApiKey, Resource: "apikeys", Aliases: []string{"apikey", "ak"},
		SecretDataKey: keycapv1alpha1.ApiKeySecretKey, FoundByDigest: true, OpaqueKey: true,
		New:     func() keycapv1alpha1.Credential { return &keycapv1alpha1.ApiKey{} },
		NewList: func() keycapv1alpha1.CredentialList { return &keycapv1alpha1.ApiKeyList{} },
		Project: projectOpaqueKey,
	},
	{
		Name: keycapv1alpha1.KindAgentKey, Resource: "agentkeys", Aliases: []string{"agentkey", "agk"},
		SecretDataKey: keycapv1alpha1.AgentKeySecretKey, FoundByDigest: true, OpaqueKey: true,
		New:     func() keycapv1alpha1.Credential { return &keycapv1alpha1.AgentKey{} },
		NewList: func() keycapv1alpha1.CredentialList { return &keycapv1alpha1.AgentKeyList{} },
		Project: projectAgentKey,
	},
	{
		Name: keycapv1alpha1.KindAppToken, Resource: "apptokens", Aliases: []string{"apptoken", "at"},
		SecretDataKey: keycapv1alpha1.AppTokenSecretKey,
		New:           func() keycapv1alpha1.Credential { return &keycapv1alpha1.AppToken{} },
		NewList:       func() keycapv1alpha1.CredentialList { return &keycapv1alpha1.AppTokenList{} },
		Project:       projectAppToken,
	},
	{
		Name: keycapv1alpha1.KindLicense, Resource: "licenses", Aliases: []string{"license", "licence", "licences", "lic"},
		SecretDataKey: keycapv1alpha1.LicenseKeySecretKey, FoundByDigest: true,
		New:     func() keycapv1alpha1.Credential { return &keycapv1alpha1.License{} },
		NewList: func() keycapv1alpha1.CredentialList { return &keycapv1alpha1.LicenseList{} },
		Project: projectLicense,
	},
}

// Kinds returns every credential kind. The slice and its entries must not be modified.
func Kinds() []*Kind { return kinds }

// ByName returns the kind called name (exactly, e.g. "ApiKey").
func ByName(name string) (*Kind, bool) {
	for _, k := range kinds {
		if k.Name == name {
			return k, true
		}
	}
	return nil, false
}

// Of returns the kind of obj.
func Of(obj keycapv1alpha1.Credential) *Kind {
	k, ok := ByName(obj.CredentialKind())
	if !ok {
		// Only a credential type added to the API without a registry entry gets here; the
		// registry test catches that.
		panic("registry: no entry for kind " + obj.CredentialKind())
	}
	return k
}

// Lookup finds a kind by what a person typed: its name, resource, an alias, or any of them
// qualified with the group ("apikey.keycap.dev"); case-insensitive.
func Lookup(s string) (*Kind, bool) {
	s = strings.ToLower(strings.TrimSuffix(strings.ToLower(s), "."+keycapv1alpha1.GroupVersion.Group))
	for _, k := range kinds {
		if s == strings.ToLower(k.Name) || s == k.Resource {
			return k, true
		}
		for _, a := range k.Aliases {
			if s == a {
				return k, true
			}
		}
	}
	return nil, false
}

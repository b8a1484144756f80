package webhook

import (
	"context"
	"fmt"

	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/controller-runtime/pkg/client"

	keycapv1alpha1 "github.com/keycap-dev/keycap/api/v1alpha1"
	"github.com/keycap-dev/keycap/internal/keys"
	"github.com/keycap-dev/keycap/internal/registry"
)

// The uniqueness checks are lookups per kind in the manager's cache, through the field indexes the
// registry registers (registry.AddFieldIndexes), not a list of every credential in the cluster per
// admission request.

// credentialRef names a credential object in a refusal.
type credentialRef struct {
	Kind, Namespace, Name string
}

func (r credentialRef) String() string { return fmt.Sprintf("%s %s/%s", r.Kind, r.Namespace, r.Name) }

// refOf is the credentialRef of c.
func refOf(c keycapv1alpha1.Credential) credentialRef {
	return credentialRef{Kind: c.CredentialKind(), Namespace: c.GetNamespace(), Name: c.GetName()}
}

// holdingDigest finds the credentials of every kind found by digest, in every namespace, whose
// keys include digest, except self.
func holdingDigest(ctx context.Context, c client.Reader, digest string, self credentialRef) ([]credentialRef, error) {
	var out []credentialRef
	for _, k := range registry.Kinds() {
		if !k.FoundByDigest {
			continue // no digests: nothing to find
		}
		list := k.NewList()
		if err := c.List(ctx, list, client.MatchingFields{registry.IndexDigest: digest}); err != nil {
			return nil, fmt.Errorf("looking up %s by %s: %w", k.Name, registry.IndexDigest, err)
		}
		for _, o := range list.Credentials() {
			if ref := refOf(o); ref != self {
				out = append(out, ref)
			}
		}
	}
	return out, nil
}

// validateUniqueDigest refuses a keyHash that is the digest of any other credential's key. The
// refusal names the other credential only when it is in the same namespace (the same tenant): a
// tenant learns that a key is taken elsewhere, never by which object of which other tenant.
func validateUniqueDigest(ctx context.Context, c client.Reader, keyHash string, self credentialRef, fldPath *field.Path) (field.ErrorList, error) {
	digest := keys.DigestFromKeyHash(keyHash)
	if digest == "" {
		return nil, nil
	}
	others, err := holdingDigest(ctx, c, digest, self)
	if err != nil || len(others) == 0 {
		return nil, err
	}
	user := "a credential in another namespace"
	for _, o := range others {
		if o.Namespace == self.Namespace {
			user = o.String()
			break
		}
	}
	return field.ErrorList{field.Invalid(fldPath, keyHash, fmt.Sprintf("the same key is already used by %s; every key must be unique", user))}, nil
}

// validateUniqueSecretName refuses a Secret name that another credential in the namespace uses.
func validateUniqueSecretName(ctx context.Context, c client.Reader, obj keycapv1alpha1.Credential, fldPath *field.Path) (field.ErrorList, error) {
	name := keycapv1alpha1.SecretNameOf(obj)
	var others []credentialRef
	for _, k := range registry.Kinds() {
		using, err := k.UsingSecretName(ctx, c, obj.GetNamespace(), name)
		if err != nil {
			return nil, err
		}
		for _, o := range using {
			if ref := refOf(o); ref != refOf(obj) {
				others = append(others, ref)
			}
		}
	}
	if len(others) == 0 {
		return nil, nil
	}
	p := fldPath.Child("secretName")
	return field.ErrorList{field.Invalid(p, name, fmt.Sprintf("Secret %q is already written by %s; choose another secretName", name, others[0]))}, nil
}

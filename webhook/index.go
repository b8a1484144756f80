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

// The uniqueness checks are one lookup per kind in the manager's cache, through the field indexes
// the registry registers (registry.AddFieldIndexes), not a list of every credential in the cluster
// per admission request.

// credentialRef names a credential object in a refusal.
type credentialRef struct {
	Kind, Namespace, Name string
}

func (r credentialRef) String() string { return fmt.Sprintf("%s %s/%s", r.Kind, r.Namespace, r.Name) }

// refOf is the credentialRef of c.
func refOf(c keycapv1alpha1.Credential) credentialRef {
	return credentialRef{Kind: c.CredentialKind(), Namespace: c.GetNamespace(), Name: c.GetName()}
}

// lookup finds the credentials (of every kind that can hold the index field) whose index field
// holds value, in namespace (all namespaces when empty), except self.
func lookup(ctx context.Context, c client.Reader, indexField, value, namespace string, self credentialRef) ([]credentialRef, error) {
	var out []credentialRef
	for _, k := range registry.Kinds() {
		if indexField == registry.IndexDigest && !k.FoundByDigest {
			continue // no digests: nothing to find
		}
		list := k.NewList()
		opts := []client.ListOption{client.MatchingFields{indexField: value}}
		if namespace != "" {
			opts = append(opts, client.InNamespace(namespace))
		}
		if err := c.List(ctx, list, opts...); err != nil {
			return nil, fmt.Errorf("looking up %s by %s: %w", k.Name, indexField, err)
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
	others, err := lookup(ctx, c, registry.IndexDigest, digest, "", self)
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
	others, err := lookup(ctx, c, registry.IndexSecretName, name, obj.GetNamespace(), refOf(obj))
	if err != nil || len(others) == 0 {
		return nil, err
	}
	p := fldPath.Child("secretName")
	return field.ErrorList{field.Invalid(p, name, fmt.Sprintf("Secret %q is already written by %s; choose another secretName", name, others[0]))}, nil
}

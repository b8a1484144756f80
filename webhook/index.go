package webhook

import (
	"context"
	"fmt"

	"k8s.io/apimachinery/pkg/util/validation/field"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	keycapv1alpha1 "github.com/keycap-dev/keycap/api/v1alpha1"
	"github.com/keycap-dev/keycap/internal/keys"
)

// Field indexes on the manager's cache, so that a uniqueness check is one index lookup per kind,
// not a list of every credential in the cluster per admission request. The names are the
// webhook's own, so they never collide with an index a controller registers.
const (
	// IndexDigest maps a credential to the hex SHA-256 digests of its keys: status.digests and,
	// for a bring-your-own key, the digest in spec.keyHash.
	IndexDigest = "webhook.keycap.dev/digest"
	// IndexSecretName maps a credential to the name of its Secret (spec.secretName, or its own
	// name).
	IndexSecretName = "webhook.keycap.dev/secret-name"
	// IndexParent maps an AgentKey to its parent ApiKey's name.
	IndexParent = "webhook.keycap.dev/parent"
)

// credentialRef names a credential object in a refusal.
type credentialRef struct {
	Kind, Namespace, Name string
}

func (r credentialRef) String() string { return fmt.Sprintf("%s %s/%s", r.Kind, r.Namespace, r.Name) }

func digestsOf(keyHash string, statusDigests []string) []string {
	out := make([]string, 0, len(statusDigests)+1)
	if d := keys.DigestFromKeyHash(keyHash); d != "" {
		out = append(out, d)
	}
	return append(out, statusDigests...)
}

func secretNameOf(spec *keycapv1alpha1.CredentialSpec, name string) string {
	if spec.SecretName != "" {
		return spec.SecretName
	}
	return name
}

// setupIndexes registers the field indexes with mgr's cache.
func setupIndexes(ctx context.Context, mgr ctrl.Manager) error {
	fi := mgr.GetFieldIndexer()
	indexes := []struct {
		obj   client.Object
		field string
		fn    client.IndexerFunc
	}{
		{&keycapv1alpha1.ApiKey{}, IndexDigest, func(o client.Object) []string {
			k := o.(*keycapv1alpha1.ApiKey)
			return digestsOf(k.Spec.KeyHash, k.Status.Digests)
		}},
		{&keycapv1alpha1.AgentKey{}, IndexDigest, func(o client.Object) []string {
			k := o.(*keycapv1alpha1.AgentKey)
			return digestsOf(k.Spec.KeyHash, k.Status.Digests)
		}},
		{&keycapv1alpha1.License{}, IndexDigest, func(o client.Object) []string {
			return digestsOf("", o.(*keycapv1alpha1.License).Status.Digests)
		}},
		{&keycapv1alpha1.AgentKey{}, IndexParent, func(o client.Object) []string {
			return []string{o.(*keycapv1alpha1.AgentKey).Spec.APIKeyRef.Name}
		}},
		{&keycapv1alpha1.ApiKey{}, IndexSecretName, func(o client.Object) []string {
			k := o.(*keycapv1alpha1.ApiKey)
			return []string{secretNameOf(&k.Spec.CredentialSpec, k.Name)}
		}},
		{&keycapv1alpha1.AgentKey{}, IndexSecretName, func(o client.Object) []string {
			k := o.(*keycapv1alpha1.AgentKey)
			return []string{secretNameOf(&k.Spec.CredentialSpec, k.Name)}
		}},
		{&keycapv1alpha1.AppToken{}, IndexSecretName, func(o client.Object) []string {
			k := o.(*keycapv1alpha1.AppToken)
			return []string{secretNameOf(&k.Spec.CredentialSpec, k.Name)}
		}},
		{&keycapv1alpha1.License{}, IndexSecretName, func(o client.Object) []string {
			k := o.(*keycapv1alpha1.License)
			return []string{secretNameOf(&k.Spec.CredentialSpec, k.Name)}
		}},
	}
	for _, ix := range indexes {
		if err := fi.IndexField(ctx, ix.obj, ix.field, ix.fn); err != nil {
			return fmt.Errorf("indexing %T by %s: %w", ix.obj, ix.field, err)
		}
	}
	return nil
}

// lookup finds the credentials (of every kind that has the index) whose index field holds value,
// in namespace (all namespaces when empty), except self.
func lookup(ctx context.Context, c client.Reader, indexField, value, namespace string, self credentialRef) ([]credentialRef, error) {
	lists := []struct {
		kind string
		list client.ObjectList
	}{
		{"ApiKey", &keycapv1alpha1.ApiKeyList{}},
		{"AgentKey", &keycapv1alpha1.AgentKeyList{}},
		{"License", &keycapv1alpha1.LicenseList{}},
	}
	if indexField == IndexSecretName {
		lists = append(lists, struct {
			kind string
			list client.ObjectList
		}{"AppToken", &keycapv1alpha1.AppTokenList{}})
	}
	var out []credentialRef
	for _, l := range lists {
		opts := []client.ListOption{client.MatchingFields{indexField: value}}
		if namespace != "" {
			opts = append(opts, client.InNamespace(namespace))
		}
		if err := c.List(ctx, l.list, opts...); err != nil {
			return nil, fmt.Errorf("looking up %s by %s: %w", l.kind, indexField, err)
		}
		items, err := metaItems(l.list)
		if err != nil {
			return nil, err
		}
		for _, o := range items {
			ref := credentialRef{Kind: l.kind, Namespace: o.GetNamespace(), Name: o.GetName()}
			if ref != self {
				out = append(out, ref)
			}
		}
	}
	return out, nil
}

func metaItems(list client.ObjectList) ([]client.Object, error) {
	var out []client.Object
	switch l := list.(type) {
	case *keycapv1alpha1.ApiKeyList:
		for i := range l.Items {
			out = append(out, &l.Items[i])
		}
	case *keycapv1alpha1.AgentKeyList:
		for i := range l.Items {
			out = append(out, &l.Items[i])
		}
	case *keycapv1alpha1.LicenseList:
		for i := range l.Items {
			out = append(out, &l.Items[i])
		}
	case *keycapv1alpha1.AppTokenList:
		for i := range l.Items {
			out = append(out, &l.Items[i])
		}
	default:
		return nil, fmt.Errorf("unexpected list %T", list)
	}
	return out, nil
}

// validateUniqueDigest refuses a keyHash that is the digest of any other credential's key.
func validateUniqueDigest(ctx context.Context, c client.Reader, keyHash string, self credentialRef, fldPath *field.Path) (field.ErrorList, error) {
	digest := keys.DigestFromKeyHash(keyHash)
	if digest == "" {
		return nil, nil
	}
	others, err := lookup(ctx, c, IndexDigest, digest, "", self)
	if err != nil || len(others) == 0 {
		return nil, err
	}
	return field.ErrorList{field.Invalid(fldPath, keyHash, fmt.Sprintf("the same key is already used by %s; every key must be unique", others[0]))}, nil
}

// validateUniqueSecretName refuses a Secret name that another credential in the namespace uses.
func validateUniqueSecretName(ctx context.Context, c client.Reader, spec *keycapv1alpha1.CredentialSpec, self credentialRef, fldPath *field.Path) (field.ErrorList, error) {
	name := secretNameOf(spec, self.Name)
	others, err := lookup(ctx, c, IndexSecretName, name, self.Namespace, self)
	if err != nil || len(others) == 0 {
		return nil, err
	}
	p := fldPath.Child("secretName")
	return field.ErrorList{field.Invalid(p, name, fmt.Sprintf("Secret %q is already written by %s; choose another secretName", name, others[0]))}, nil
}

package registry

import (
	"context"
	"fmt"
	"sync"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	keycapv1alpha1 "github.com/keycap-dev/keycap/api/v1alpha1"
	"github.com/keycap-dev/keycap/internal/keys"
)

// Field indexes on a manager's cache, registered once for every kind (AddFieldIndexes) and used
// by the controllers and the webhook alike.
const (
	// IndexSecretName maps a credential whose spec.secretName is not its own name to that name,
	// so a Secret event reaches the credential that wants that name and the webhook can refuse a
	// name another credential writes. Read it through Kind.UsingSecretName, which also finds the
	// credentials that keep their own name (most: they get no index entry, each of which costs
	// the cache a set of its own twice over, namespaced and cluster-wide).
	IndexSecretName = "keycap.dev/secret-name"
	// IndexDigest maps a credential to the hex SHA-256 digests of its keys: the digests its status
	// lists and, for a bring-your-own key, the digest in spec.keyHash.
	IndexDigest = "keycap.dev/digest"
	// IndexParent maps an AgentKey to its parent ApiKey's name.
	IndexParent = "keycap.dev/parent"
)

// Digests are the hex SHA-256 digests IndexDigest holds for c.
func Digests(c keycapv1alpha1.Credential) []string {
	status := c.GetStatusDigests()
	out := make([]string, 0, len(status)+1)
	if o, ok := c.(keycapv1alpha1.OpaqueKeyCredential); ok {
		if d := keys.DigestFromKeyHash(o.GetOpaqueKeySpec().KeyHash); d != "" {
			out = append(out, d)
		}
	}
	return append(out, status...)
}

// indexed remembers the indexers AddFieldIndexes has served: the controllers and the webhook both
// need the indexes and may share one manager (make run), and a cache refuses the same index twice.
var indexed sync.Map

// AddFieldIndexes registers IndexSecretName and IndexDigest for every kind, and IndexParent for
// AgentKeys, with indexer. Calling it again with the same indexer does nothing.
func AddFieldIndexes(ctx context.Context, indexer client.FieldIndexer) error {
	if _, done := indexed.LoadOrStore(indexer, struct{}{}); done {
		return nil
	}
	for _, k := range kinds {
		if err := indexer.IndexField(ctx, k.New(), IndexSecretName, func(o client.Object) []string {
			if name := keycapv1alpha1.SecretNameOf(o.(keycapv1alpha1.Credential)); name != o.GetName() {
				return []string{name}
			}
			return nil
		}); err != nil {
			indexed.Delete(indexer)
			return fmt.Errorf("indexing %s by %s: %w", k.Name, IndexSecretName, err)
		}
		if err := indexer.IndexField(ctx, k.New(), IndexDigest, func(o client.Object) []string {
			return Digests(o.(keycapv1alpha1.Credential))
		}); err != nil {
			indexed.Delete(indexer)
			return fmt.Errorf("indexing %s by %s: %w", k.Name, IndexDigest, err)
		}
	}
	if err := indexer.IndexField(ctx, &keycapv1alpha1.AgentKey{}, IndexParent, func(o client.Object) []string {
		return []string{o.(*keycapv1alpha1.AgentKey).Spec.APIKeyRef.Name}
	}); err != nil {
		indexed.Delete(indexer)
		return fmt.Errorf("indexing AgentKeys by %s: %w", IndexParent, err)
	}
	return nil
}

// UsingSecretName lists the credentials of kind k in namespace whose Secret is name (through a
// reader of a cache with AddFieldIndexes' indexes): the one named name if it keeps its own name
// for its Secret, and those whose spec.secretName is name.
func (k *Kind) UsingSecretName(ctx context.Context, reader client.Reader, namespace, name string) ([]keycapv1alpha1.Credential, error) {
	var out []keycapv1alpha1.Credential
	own := k.New()
	switch err := reader.Get(ctx, client.ObjectKey{Namespace: namespace, Name: name}, own); {
	case apierrors.IsNotFound(err):
	case err != nil:
		return nil, fmt.Errorf("reading %s %s: %w", k.Name, name, err)
	case keycapv1alpha1.SecretNameOf(own) == name:
		out = append(out, own)
	}
	list := k.NewList()
	if err := reader.List(ctx, list, client.InNamespace(namespace), client.MatchingFields{IndexSecretName: name}); err != nil {
		return nil, fmt.Errorf("listing %s by %s: %w", k.Name, IndexSecretName, err)
	}
	return append(out, list.Credentials()...), nil
}

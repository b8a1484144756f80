package authz

import (
	"context"
	"fmt"
	"slices"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	keycapv1alpha1 "github.com/keycap-dev/keycap/api/v1alpha1"
	"github.com/keycap-dev/keycap/internal/index"
)

// StandaloneCacheOptions are the manager's cache options for a process that runs only the data
// plane (--components=authz): its informer cache keeps each credential (ApiKey, AgentKey,
// AppToken, License) as the index's compact index.Record instead of the decoded object, which is
// most of the data plane's memory per credential. A process that also runs the controllers or the
// webhook must not use them, and nothing in such a process may read credentials through the
// cached client (the cache holds Records, not those types); licence activation reads Licenses
// through the uncached APIReader.
//
// namespaces shard the data plane by tenant: when given, its informers list and watch only those
// namespaces (one watch per namespace and kind), so a key of any other namespace is NOT_FOUND and
// the replica holds only its shard's credentials. None means every namespace.
func StandaloneCacheOptions(namespaces ...string) cache.Options {
	opts := cache.Options{DefaultTransform: TrimForDataPlane}
	if len(namespaces) > 0 {
		opts.DefaultNamespaces = make(map[string]cache.Config, len(namespaces))
		for _, ns := range namespaces {
			opts.DefaultNamespaces[ns] = cache.Config{}
		}
	}
	return opts
}

// ShardNamespaces returns the namespaces of a data-plane shard: the listed ones plus, when
// selector is not empty, every namespace whose labels match it at the time of the call (read
// once, at startup: a namespace labelled later joins the shard when its replicas restart). It
// fails when the shard would be empty, since a data plane serving no namespace is a mistake,
// not a configuration.
func ShardNamespaces(ctx context.Context, reader client.Reader, listed []string, selector string) ([]string, error) {
	out := slices.Clone(listed)
	if selector != "" {
		sel, err := labels.Parse(selector)
		if err != nil {
			return nil, fmt.Errorf("namespace selector %q: %w", selector, err)
		}
		var nss corev1.NamespaceList
		if err := reader.List(ctx, &nss, client.MatchingLabelsSelector{Selector: sel}); err != nil {
			return nil, fmt.Errorf("listing the namespaces of selector %q: %w", selector, err)
		}
		for _, ns := range nss.Items {
			out = append(out, ns.Name)
		}
		if len(out) == 0 {
			return nil, fmt.Errorf("no namespace matches the shard's selector %q", selector)
		}
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// TrimForDataPlane is a cache transform turning the credential kinds into index.Records and
// dropping managedFields from everything else.
func TrimForDataPlane(obj any) (any, error) {
	if c, ok := obj.(keycapv1alpha1.Credential); ok {
		cred, digests := project(c)
		return index.NewRecord(c, cred, digests), nil
	}
	if o, ok := obj.(metav1.Object); ok {
		o.SetManagedFields(nil)
	}
	return obj, nil
}

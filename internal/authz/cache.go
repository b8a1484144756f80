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
)

// StandaloneCacheOptions are the manager's cache options for a process that runs only the data
// plane (--components=authz). The credential kinds never enter that cache: the index follows them
// itself (Options.Namespaces, index.Feed). What the cache holds (RoutePolicies) is kept without
// managedFields, and only of namespaces when given (a data plane sharded by tenant; none means
// every namespace).
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

// TrimForDataPlane is the standalone data plane's cache transform: it drops managedFields, which
// no reader of that cache looks at.
func TrimForDataPlane(obj any) (any, error) {
	if o, ok := obj.(metav1.Object); ok {
		o.SetManagedFields(nil)
	}
	return obj, nil
}

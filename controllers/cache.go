package controllers

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/cache"

	keycapv1alpha1 "github.com/keycap-dev/keycap/api/v1alpha1"
)

// lastAppliedAnnotation is what `kubectl apply` (client-side) leaves on every object it applies:
// a second copy of the whole object as JSON, which the controllers never read.
const lastAppliedAnnotation = "kubectl.kubernetes.io/last-applied-configuration"

// CacheOptions are the manager's cache options for a process that runs the controllers (and the
// webhook): every cached object without its managedFields, and keycap's own kinds also without
// kubectl's last-applied annotation. Both are most of a small object's bytes and nothing here
// reads them. The controllers only patch keycap's kinds (a patch computed against the cached copy
// leaves what the cache dropped alone). Secrets are cached by their metadata only, without
// labels or annotations: the controllers update a Secret from a copy read from the apiserver, never from
// the cache, and a nil managedFields in an update leaves the server's unchanged.
func CacheOptions() cache.Options {
	return cache.Options{DefaultTransform: TrimForCache}
}

// TrimForCache is CacheOptions' transform.
func TrimForCache(obj any) (any, error) {
	o, ok := obj.(metav1.Object)
	if !ok {
		return obj, nil
	}
	o.SetManagedFields(nil)
	switch obj.(type) {
	case *metav1.PartialObjectMetadata:
		// A watch by metadata (Secrets): the controllers map an event by name and owner and read
		// the object itself from the apiserver, so neither labels nor annotations (kubectl's
		// last-applied copy of a Secret holds its data) are kept.
		o.SetLabels(nil)
		o.SetAnnotations(nil)
	case keycapv1alpha1.Credential, *keycapv1alpha1.RoutePolicy:
		if a := o.GetAnnotations(); a != nil {
			if _, ok := a[lastAppliedAnnotation]; ok {
				delete(a, lastAppliedAnnotation)
				if len(a) == 0 {
					o.SetAnnotations(nil)
				}
			}
		}
	}
	return obj, nil
}

package authz

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/cache"

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
func StandaloneCacheOptions() cache.Options {
	return cache.Options{DefaultTransform: TrimForDataPlane}
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

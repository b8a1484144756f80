package authz

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/cache"

	keycapv1alpha1 "github.com/keycap-dev/keycap/api/v1alpha1"
)

// StandaloneCacheOptions are the manager's cache options for a process that runs only the data
// plane (--components=authz): the informer cache keeps of each credential just what the index
// reads, which is most of the data plane's memory per credential. A process that also runs the
// controllers or the webhook must not use them: those read the fields this drops.
func StandaloneCacheOptions() cache.Options {
	return cache.Options{DefaultTransform: TrimForDataPlane}
}

// TrimForDataPlane is a cache transform keeping of ApiKeys and AgentKeys only what the index
// reads (identity, scopes, disabled, lifetime, key status) and dropping managedFields from
// everything else.
func TrimForDataPlane(obj any) (any, error) {
	switch o := obj.(type) {
	case *keycapv1alpha1.ApiKey:
		t := &keycapv1alpha1.ApiKey{TypeMeta: o.TypeMeta, ObjectMeta: trimMeta(o.ObjectMeta)}
		t.Spec.Scopes, t.Spec.Disabled, t.Spec.Lifetime = o.Spec.Scopes, o.Spec.Disabled, o.Spec.Lifetime
		t.Status.KeyID, t.Status.ExpiresAt, t.Status.LastUsedAt = o.Status.KeyID, o.Status.ExpiresAt, o.Status.LastUsedAt
		t.Status.OpaqueKeyStatus = o.Status.OpaqueKeyStatus
		return t, nil
	case *keycapv1alpha1.AgentKey:
		t := &keycapv1alpha1.AgentKey{TypeMeta: o.TypeMeta, ObjectMeta: trimMeta(o.ObjectMeta)}
		t.Spec.Scopes, t.Spec.Disabled, t.Spec.Lifetime = o.Spec.Scopes, o.Spec.Disabled, o.Spec.Lifetime
		t.Spec.APIKeyRef, t.Spec.Agent = o.Spec.APIKeyRef, o.Spec.Agent
		t.Status.KeyID, t.Status.ExpiresAt, t.Status.LastUsedAt = o.Status.KeyID, o.Status.ExpiresAt, o.Status.LastUsedAt
		t.Status.OpaqueKeyStatus = o.Status.OpaqueKeyStatus
		return t, nil
	case metav1.Object:
		o.SetManagedFields(nil)
		return obj, nil
	}
	return obj, nil
}

func trimMeta(m metav1.ObjectMeta) metav1.ObjectMeta {
	return metav1.ObjectMeta{
		Name:              m.Name,
		Namespace:         m.Namespace,
		UID:               m.UID,
		ResourceVersion:   m.ResourceVersion,
		Generation:        m.Generation,
		CreationTimestamp: m.CreationTimestamp,
		DeletionTimestamp: m.DeletionTimestamp,
	}
}

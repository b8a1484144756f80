package index

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
)

// Record is the compact form in which a process running only the data plane keeps a credential
// in its informer cache (see authz.StandaloneCacheOptions), made by a cache transform: the index's view of the object and
// the little metadata the informer machinery needs (name, namespace, UID, resourceVersion),
// instead of the whole decoded object. It implements runtime.Object and metav1.Object so the
// informer store can key and index it; its setters are no-ops. It is immutable.
type Record struct {
	// The name and namespace are the Credential's.
	resourceVersion string
	uid             types.UID
	// Credential and Digests are what Upsert takes.
	Credential *Credential
	Digests    []KeyDigest
}

// NewRecord returns the compact record of a credential object and its projection.
func NewRecord(obj metav1.Object, cred *Credential, digests []KeyDigest) *Record {
	return &Record{resourceVersion: obj.GetResourceVersion(), uid: obj.GetUID(), Credential: cred, Digests: digests}
}

var (
	_ runtime.Object = (*Record)(nil)
	_ metav1.Object  = (*Record)(nil)
)

// GetObjectKind implements runtime.Object.
func (r *Record) GetObjectKind() schema.ObjectKind { return schema.EmptyObjectKind }

// DeepCopyObject implements runtime.Object; a Record is immutable, so the copy shares its data.
func (r *Record) DeepCopyObject() runtime.Object { c := *r; return &c }

// The metav1.Object accessors the informer store uses; everything else is empty.

// GetNamespace implements metav1.Object.
func (r *Record) GetNamespace() string { return r.Credential.Namespace }

// SetNamespace implements metav1.Object.
func (r *Record) SetNamespace(string) {}

// GetName implements metav1.Object.
func (r *Record) GetName() string { return r.Credential.Name }

// SetName implements metav1.Object.
func (r *Record) SetName(string) {}

// GetGenerateName implements metav1.Object.
func (r *Record) GetGenerateName() string { return "" }

// SetGenerateName implements metav1.Object.
func (r *Record) SetGenerateName(string) {}

// GetUID implements metav1.Object.
func (r *Record) GetUID() types.UID { return r.uid }

// SetUID implements metav1.Object.
func (r *Record) SetUID(types.UID) {}

// GetResourceVersion implements metav1.Object.
func (r *Record) GetResourceVersion() string { return r.resourceVersion }

// SetResourceVersion implements metav1.Object.
func (r *Record) SetResourceVersion(string) {}

// GetGeneration implements metav1.Object.
func (r *Record) GetGeneration() int64 { return 0 }

// SetGeneration implements metav1.Object.
func (r *Record) SetGeneration(int64) {}

// GetSelfLink implements metav1.Object.
func (r *Record) GetSelfLink() string { return "" }

// SetSelfLink implements metav1.Object.
func (r *Record) SetSelfLink(string) {}

// GetCreationTimestamp implements metav1.Object.
func (r *Record) GetCreationTimestamp() metav1.Time { return metav1.Time{} }

// SetCreationTimestamp implements metav1.Object.
func (r *Record) SetCreationTimestamp(metav1.Time) {}

// GetDeletionTimestamp implements metav1.Object.
func (r *Record) GetDeletionTimestamp() *metav1.Time { return nil }

// SetDeletionTimestamp implements metav1.Object.
func (r *Record) SetDeletionTimestamp(*metav1.Time) {}

// GetDeletionGracePeriodSeconds implements metav1.Object.
func (r *Record) GetDeletionGracePeriodSeconds() *int64 { return nil }

// SetDeletionGracePeriodSeconds implements metav1.Object.
func (r *Record) SetDeletionGracePeriodSeconds(*int64) {}

// GetLabels implements metav1.Object.
func (r *Record) GetLabels() map[string]string { return nil }

// SetLabels implements metav1.Object.
func (r *Record) SetLabels(map[string]string) {}

// GetAnnotations implements metav1.Object.
func (r *Record) GetAnnotations() map[string]string { return nil }

// SetAnnotations implements metav1.Object.
func (r *Record) SetAnnotations(map[string]string) {}

// GetFinalizers implements metav1.Object.
func (r *Record) GetFinalizers() []string { return nil }

// SetFinalizers implements metav1.Object.
func (r *Record) SetFinalizers([]string) {}

// GetOwnerReferences implements metav1.Object.
func (r *Record) GetOwnerReferences() []metav1.OwnerReference { return nil }

// SetOwnerReferences implements metav1.Object.
func (r *Record) SetOwnerReferences([]metav1.OwnerReference) {}

// GetManagedFields implements metav1.Object.
func (r *Record) GetManagedFields() []metav1.ManagedFieldsEntry { return nil }

// SetManagedFields implements metav1.Object.
func (r *Record) SetManagedFields([]metav1.ManagedFieldsEntry) {}

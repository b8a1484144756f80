package index

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
)

// Record is a credential already projected (Credential and Digests, what Upsert takes), in the
// shape a client-go store can key: the feed's reflectors hold the objects of a streamed initial
// list as Records until the list is complete, rather than the decoded objects. It implements
// runtime.Object and metav1.Object (name and namespace are the Credential's; everything else is
// empty and its setters are no-ops). It is immutable.
type Record struct {
	Credential *Credential
	Digests    []KeyDigest
}

// NewRecord returns the record of a credential's projection.
func NewRecord(cred *Credential, digests []KeyDigest) *Record {
	return &Record{Credential: cred, Digests: digests}
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
func (r *Record) GetUID() types.UID { return "" }

// SetUID implements metav1.Object.
func (r *Record) SetUID(types.UID) {}

// GetResourceVersion implements metav1.Object.
func (r *Record) GetResourceVersion() string { return "" }

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

package controllers

import (
	"encoding/json"
	"fmt"
	"runtime"
	"testing"

	"github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	keycapv1alpha1 "github.com/keycap-dev/keycap/api/v1alpha1"
)

// appliedApiKey is an ApiKey as the controllers' cache receives it after `kubectl apply` and a
// reconcile: kubectl's last-applied annotation and the managedFields of both writers.
func appliedApiKey(i int) []byte {
	name := fmt.Sprintf("key-%06d", i)
	lastApplied := fmt.Sprintf(`{"apiVersion":"keycap.dev/v1alpha1","kind":"ApiKey","metadata":{"annotations":{},"name":%q,"namespace":"acme"},"spec":{"description":"backend of the acme shop","scopes":["videos:read","videos:write"],"rotation":{"every":"720h","gracePeriod":"24h"}}}`, name)
	obj := map[string]any{
		"apiVersion": "keycap.dev/v1alpha1", "kind": "ApiKey",
		"metadata": map[string]any{
			"name": name, "namespace": "acme", "uid": fmt.Sprintf("%08x-0000-4000-8000-%012x", i, i),
			"resourceVersion": fmt.Sprint(100000 + i), "generation": 1, "creationTimestamp": "2026-12-01T10:00:00Z",
			"annotations": map[string]any{lastAppliedAnnotation: lastApplied},
			"managedFields": []any{
				map[string]any{"manager": "kubectl-client-side-apply", "operation": "Update", "apiVersion": "keycap.dev/v1alpha1", "time": "2026-12-01T10:00:00Z", "fieldsType": "FieldsV1",
					"fieldsV1": map[string]any{"f:metadata": map[string]any{"f:annotations": map[string]any{".": map[string]any{}, "f:" + lastAppliedAnnotation: map[string]any{}}},
						"f:spec": map[string]any{".": map[string]any{}, "f:description": map[string]any{}, "f:rotation": map[string]any{".": map[string]any{}, "f:every": map[string]any{}, "f:gracePeriod": map[string]any{}}, "f:scopes": map[string]any{}}}},
				map[string]any{"manager": "keycap", "operation": "Update", "apiVersion": "keycap.dev/v1alpha1", "time": "2026-12-01T10:00:01Z", "fieldsType": "FieldsV1", "subresource": "status",
					"fieldsV1": map[string]any{"f:status": map[string]any{".": map[string]any{}, "f:conditions": map[string]any{".": map[string]any{}, `k:{"type":"Ready"}`: map[string]any{".": map[string]any{}, "f:lastTransitionTime": map[string]any{}, "f:message": map[string]any{}, "f:observedGeneration": map[string]any{}, "f:reason": map[string]any{}, "f:status": map[string]any{}, "f:type": map[string]any{}}}, "f:digests": map[string]any{}, "f:hint": map[string]any{}, "f:keyID": map[string]any{}, "f:observedGeneration": map[string]any{}, "f:secretName": map[string]any{}}}},
			},
		},
		"spec": map[string]any{"description": "backend of the acme shop", "scopes": []string{"videos:read", "videos:write"}, "rotation": map[string]any{"every": "720h", "gracePeriod": "24h"}},
		"status": map[string]any{
			"observedGeneration": 1, "keyID": fmt.Sprintf("kid_%016x", i), "hint": "acme_...fYFF", "secretName": name,
			"digests":    []string{fmt.Sprintf("%064x", i)},
			"conditions": []any{map[string]any{"type": "Ready", "status": "True", "reason": "Issued", "message": "the key is in its Secret", "observedGeneration": 1, "lastTransitionTime": "2026-12-01T10:00:01Z"}},
		},
	}
	b, err := json.Marshal(obj)
	if err != nil {
		panic(err)
	}
	return b
}

func TestTrimForCache(t *testing.T) {
	g := gomega.NewWithT(t)
	var k keycapv1alpha1.ApiKey
	g.Expect(json.Unmarshal(appliedApiKey(1), &k)).To(gomega.Succeed())
	k.Annotations["team"] = "shop"
	_, err := TrimForCache(&k)
	g.Expect(err).NotTo(gomega.HaveOccurred())
	g.Expect(k.ManagedFields).To(gomega.BeNil())
	g.Expect(k.Annotations).To(gomega.Equal(map[string]string{"team": "shop"}), "only kubectl's copy of the object goes")
	g.Expect(k.Status.Digests).To(gomega.HaveLen(1))

	// A Secret the controllers update keeps its annotations: an update from a cached copy without
	// one would delete it.
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{
		Annotations:   map[string]string{lastAppliedAnnotation: "{}"},
		ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "keycap"}},
	}}
	_, err = TrimForCache(s)
	g.Expect(err).NotTo(gomega.HaveOccurred())
	g.Expect(s.ManagedFields).To(gomega.BeNil())
	g.Expect(s.Annotations).To(gomega.HaveKey(lastAppliedAnnotation))

	// A Secret watched by its metadata keeps what an event is mapped by (name, owner), not its
	// labels or kubectl's copy of its data.
	owner := metav1.OwnerReference{APIVersion: "keycap.dev/v1alpha1", Kind: "ApiKey", Name: "shop", UID: "u1", Controller: ptr.To(true)}
	m := &metav1.PartialObjectMetadata{ObjectMeta: metav1.ObjectMeta{
		Name: "shop", Namespace: "acme", OwnerReferences: []metav1.OwnerReference{owner},
		Labels:        map[string]string{keycapv1alpha1.LabelManagedBy: keycapv1alpha1.ManagedByValue},
		Annotations:   map[string]string{lastAppliedAnnotation: `{"data":{"key":"c2VjcmV0"}}`},
		ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "kubectl"}},
	}}
	_, err = TrimForCache(m)
	g.Expect(err).NotTo(gomega.HaveOccurred())
	g.Expect(m.Annotations).To(gomega.BeNil())
	g.Expect(m.Labels).To(gomega.BeNil())
	g.Expect(m.ManagedFields).To(gomega.BeNil())
	g.Expect(m.Name).To(gomega.Equal("shop"))
	g.Expect(m.OwnerReferences).To(gomega.Equal([]metav1.OwnerReference{owner}))
}

// TestCacheHoldsNoSecret: the running controllers watch Secrets by their metadata only, so the
// operator's memory holds no Secret's content (a cluster's Secrets are most of its objects'
// bytes, and none of them is the operator's to keep).
func TestCacheHoldsNoSecret(t *testing.T) {
	g := gomega.NewWithT(t)
	seen := func() []string {
		var names []string
		cachedTypes.Range(func(k, _ any) bool { names = append(names, k.(string)); return true })
		return names
	}
	g.Eventually(seen, reconcileTimeout).Should(gomega.ContainElement("*v1.PartialObjectMetadata Secret"))
	g.Expect(seen()).NotTo(gomega.ContainElement("*v1.Secret"))
	g.Expect(seen()).To(gomega.ContainElement("*v1alpha1.ApiKey"), "the recorder sees the structured informers too")
}

// BenchmarkCacheBytesPerCredential is the controllers' cache's live heap per applied ApiKey,
// decoded as the informer decodes it, without and with TrimForCache.
func BenchmarkCacheBytesPerCredential(b *testing.B) {
	const n = 20_000
	raw := make([][]byte, n)
	for i := range raw {
		raw[i] = appliedApiKey(i)
	}
	for _, trim := range []bool{false, true} {
		b.Run(fmt.Sprintf("trim=%v", trim), func(b *testing.B) {
			for b.Loop() {
				runtime.GC()
				var before, after runtime.MemStats
				runtime.ReadMemStats(&before)
				store := make([]*keycapv1alpha1.ApiKey, n)
				for i, r := range raw {
					k := &keycapv1alpha1.ApiKey{}
					if err := json.Unmarshal(r, k); err != nil {
						b.Fatal(err)
					}
					if trim {
						_, _ = TrimForCache(k)
					}
					store[i] = k
				}
				runtime.GC()
				runtime.ReadMemStats(&after)
				b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/n, "heapB/credential")
				runtime.KeepAlive(store)
			}
		})
	}
}

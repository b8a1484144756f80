package authz

import (
	"encoding/json"
	"testing"

	"github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"

	keycapv1alpha1 "github.com/keycap-dev/keycap/api/v1alpha1"
	"github.com/keycap-dev/keycap/internal/testenv"
)

// TestKindDecoder checks the one-pass decoder gives what the universal decoder gives for its kind,
// and hands everything else (a list, a Status) to the universal decoder.
func TestKindDecoder(t *testing.T) {
	g := gomega.NewWithT(t)
	gvk := keycapv1alpha1.GroupVersion.WithKind(keycapv1alpha1.KindApiKey)
	universal := serializer.WithoutConversionCodecFactory{CodecFactory: serializer.NewCodecFactory(testenv.Scheme())}
	info, _ := runtime.SerializerInfoForMediaType(universal.SupportedMediaTypes(), runtime.ContentTypeJSON)
	ks := kindSerializer{NegotiatedSerializer: universal, gvk: gvk, newObj: func() runtime.Object { return &keycapv1alpha1.ApiKey{} }}
	dec := ks.DecoderToVersion(info.Serializer, keycapv1alpha1.GroupVersion)
	ref := universal.DecoderToVersion(info.Serializer, keycapv1alpha1.GroupVersion)

	k := &keycapv1alpha1.ApiKey{TypeMeta: metav1.TypeMeta{APIVersion: gvk.GroupVersion().String(), Kind: gvk.Kind},
		ObjectMeta: metav1.ObjectMeta{Namespace: "acme", Name: "a", ResourceVersion: "7", ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "kubectl"}}}}
	k.Spec.Scopes = []string{"videos:read"}
	k.Status.Digests = []string{"ab"}
	list := &keycapv1alpha1.ApiKeyList{TypeMeta: metav1.TypeMeta{APIVersion: gvk.GroupVersion().String(), Kind: "ApiKeyList"}, Items: []keycapv1alpha1.ApiKey{*k}}
	status := &metav1.Status{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Status"}, Status: metav1.StatusFailure, Code: 410, Reason: metav1.StatusReasonExpired}
	for _, obj := range []runtime.Object{k, list, status} {
		raw, err := json.Marshal(obj)
		g.Expect(err).NotTo(gomega.HaveOccurred())
		got, _, err := dec.Decode(raw, nil, nil)
		g.Expect(err).NotTo(gomega.HaveOccurred())
		want, _, err := ref.Decode(raw, nil, nil)
		g.Expect(err).NotTo(gomega.HaveOccurred())
		g.Expect(got).To(gomega.Equal(want), "%T", obj)
	}

	// A watch event, through the stream serializer of the JSON media type.
	raw, err := json.Marshal(k)
	g.Expect(err).NotTo(gomega.HaveOccurred())
	event, err := json.Marshal(&metav1.WatchEvent{Type: "ADDED", Object: runtime.RawExtension{Raw: raw}})
	g.Expect(err).NotTo(gomega.HaveOccurred())
	wrapped, _ := runtime.SerializerInfoForMediaType(ks.SupportedMediaTypes(), runtime.ContentTypeJSON)
	var got, want metav1.WatchEvent
	_, _, err = wrapped.StreamSerializer.Decode(event, nil, &got)
	g.Expect(err).NotTo(gomega.HaveOccurred())
	_, _, err = info.StreamSerializer.Decode(event, nil, &want)
	g.Expect(err).NotTo(gomega.HaveOccurred())
	g.Expect(got.Type).To(gomega.Equal(want.Type))
	g.Expect(got.Type).To(gomega.Equal("ADDED"))
	// Its object is the same ApiKey without the managedFields the data plane never reads.
	gotObj, _, err := dec.Decode(got.Object.Raw, nil, nil)
	g.Expect(err).NotTo(gomega.HaveOccurred())
	wantObj, _, err := ref.Decode(want.Object.Raw, nil, nil)
	g.Expect(err).NotTo(gomega.HaveOccurred())
	g.Expect(wantObj.(*keycapv1alpha1.ApiKey).ManagedFields).NotTo(gomega.BeEmpty())
	wantObj.(*keycapv1alpha1.ApiKey).ManagedFields = nil
	g.Expect(gotObj).To(gomega.Equal(wantObj))
}

// BenchmarkDecodeWatchEvent is the data plane's decoding of one watch event carrying an ApiKey
// as the apiserver sends it (with managedFields), by the universal decoders and by kindSerializer:
//
//	go test -run '^$' -bench DecodeWatchEvent -benchmem ./internal/authz/
func BenchmarkDecodeWatchEvent(b *testing.B) {
	gvk := keycapv1alpha1.GroupVersion.WithKind(keycapv1alpha1.KindApiKey)
	universal := serializer.WithoutConversionCodecFactory{CodecFactory: serializer.NewCodecFactory(testenv.Scheme())}
	ks := kindSerializer{NegotiatedSerializer: universal, gvk: gvk, newObj: func() runtime.Object { return &keycapv1alpha1.ApiKey{} }}
	k := &keycapv1alpha1.ApiKey{TypeMeta: metav1.TypeMeta{APIVersion: gvk.GroupVersion().String(), Kind: gvk.Kind},
		ObjectMeta: metav1.ObjectMeta{Namespace: "bench", Name: "bench-000042", UID: "0000002a-0000-4000-8000-00000000002a", ResourceVersion: "100042",
			CreationTimestamp: metav1.Now(), Generation: 1,
			ManagedFields: []metav1.ManagedFieldsEntry{
				{Manager: "bench", Operation: metav1.ManagedFieldsOperationUpdate, APIVersion: "keycap.dev/v1alpha1", FieldsType: "FieldsV1",
					FieldsV1: metav1.NewFieldsV1(`{"f:spec":{".":{},"f:scopes":{}}}`)},
				{Manager: "bench", Operation: metav1.ManagedFieldsOperationUpdate, APIVersion: "keycap.dev/v1alpha1", FieldsType: "FieldsV1", Subresource: "status",
					FieldsV1: metav1.NewFieldsV1(`{"f:status":{".":{},"f:digests":{},"f:keyID":{},"f:secretName":{}}}`)},
			}}}
	k.Spec.Scopes = []string{"bench:read", "bench:write"}
	k.Status.Digests = []string{"6b86b273ff34fce19d6b804eff5a3f5747ada4eaa22f1d49c01e52ddb7875b4b"}
	k.Status.KeyID = "kid_6b86b273ff34fce1"
	raw, _ := json.Marshal(k)
	event, _ := json.Marshal(&metav1.WatchEvent{Type: "ADDED", Object: runtime.RawExtension{Raw: raw}})
	for _, c := range []struct {
		name string
		ns   runtime.NegotiatedSerializer
	}{{"universal", universal}, {"kind", ks}} {
		info, _ := runtime.SerializerInfoForMediaType(c.ns.SupportedMediaTypes(), runtime.ContentTypeJSON)
		objDec := c.ns.DecoderToVersion(info.Serializer, keycapv1alpha1.GroupVersion)
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				var ev metav1.WatchEvent
				if _, _, err := info.StreamSerializer.Decode(event, nil, &ev); err != nil {
					b.Fatal(err)
				}
				if _, err := runtime.Decode(objDec, ev.Object.Raw); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

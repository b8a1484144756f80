package authz

import (
	"fmt"
	"net/http"
	"slices"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/client-go/rest"
	toolscache "k8s.io/client-go/tools/cache"
	ctrl "sigs.k8s.io/controller-runtime"
	sigsjson "sigs.k8s.io/json"

	"github.com/keycap-dev/keycap/internal/authz/watchframe"
)

// listWatches returns one list-and-watch of a kind for each of namespaces, or (none) one for all
// of them: what the data plane follows, the credentials and the RoutePolicies alike.
func listWatches(mgr ctrl.Manager, gvk schema.GroupVersionKind, resource string, newObj func() runtime.Object, namespaces []string) (map[string]toolscache.ListerWatcher, error) {
	rc, err := restClientFor(mgr.GetConfig(), mgr.GetHTTPClient(), mgr.GetScheme(), gvk, newObj)
	if err != nil {
		return nil, fmt.Errorf("a REST client for %s: %w", gvk.Kind, err)
	}
	if len(namespaces) == 0 {
		namespaces = []string{metav1.NamespaceAll}
	}
	out := make(map[string]toolscache.ListerWatcher, len(namespaces))
	for _, ns := range namespaces {
		out[ns] = toolscache.NewListWatchFromClient(rc, resource, ns, fields.Everything())
	}
	return out, nil
}

// restClientFor returns a REST client for one credential kind whose JSON decoding goes straight
// into the kind's Go type. The universal decoder first unmarshals the whole object once just to
// learn its apiVersion and kind (SimpleMetaFactory.Interpret), then again into the type: a CPU
// profile of a data plane starting with 20 000 ApiKeys put that first pass at a quarter of its
// start-up. A client of one kind knows what it receives, so it skips it.
func restClientFor(base *rest.Config, httpClient *http.Client, scheme *runtime.Scheme, gvk schema.GroupVersionKind, newObj func() runtime.Object) (rest.Interface, error) {
	gv := gvk.GroupVersion()
	cfg := rest.CopyConfig(base)
	cfg.GroupVersion = &gv
	cfg.APIPath = "/apis"
	cfg.ContentType = runtime.ContentTypeJSON
	if cfg.UserAgent == "" {
		cfg.UserAgent = rest.DefaultKubernetesUserAgent()
	}
	cfg.NegotiatedSerializer = kindSerializer{
		NegotiatedSerializer: serializer.WithoutConversionCodecFactory{CodecFactory: serializer.NewCodecFactory(scheme)},
		gvk:                  gvk, newObj: newObj,
	}
	return rest.RESTClientForConfigAndClient(cfg, httpClient)
}

// kindSerializer is a NegotiatedSerializer whose decoders try kindDecoder first.
type kindSerializer struct {
	runtime.NegotiatedSerializer
	gvk    schema.GroupVersionKind
	newObj func() runtime.Object
}

// SupportedMediaTypes are the codec factory's, with the JSON stream serializer (the watch's
// events) framed and taken apart by a bracket count (internal/authz/watchframe) and decoding a
// metav1.WatchEvent in one pass when that does not handle it.
func (s kindSerializer) SupportedMediaTypes() []runtime.SerializerInfo {
	infos := slices.Clone(s.NegotiatedSerializer.SupportedMediaTypes())
	for i := range infos {
		if infos[i].MediaType == runtime.ContentTypeJSON && infos[i].StreamSerializer != nil {
			stream := *infos[i].StreamSerializer
			stream.Serializer = watchEventSerializer{Serializer: stream.Serializer}
			stream.Framer = watchframe.Framer{}
			infos[i].StreamSerializer = &stream
		}
	}
	return infos
}

// watchEventSerializer decodes into a *metav1.WatchEvent without the universal decoder's first
// pass (a watch event has no kind to find); everything else is the wrapped serializer's.
type watchEventSerializer struct {
	runtime.Serializer
}

func (s watchEventSerializer) Decode(data []byte, defaults *schema.GroupVersionKind, into runtime.Object) (runtime.Object, *schema.GroupVersionKind, error) {
	if ev, ok := into.(*metav1.WatchEvent); ok {
		if typ, object, ok := watchframe.ParseEvent(data); ok {
			// The frame's buffer is reused for the next event: the object is copied, without
			// the managedFields nothing here reads (most of its bytes and of its decoding).
			ev.Type, ev.Object.Raw = typ, watchframe.CopyWithoutManagedFields(object)
			return ev, &schema.GroupVersionKind{}, nil
		}
		if err := sigsjson.UnmarshalCaseSensitivePreserveInts(data, ev); err == nil {
			return ev, &schema.GroupVersionKind{}, nil
		}
	}
	return s.Serializer.Decode(data, defaults, into)
}

func (s kindSerializer) DecoderToVersion(d runtime.Decoder, gv runtime.GroupVersioner) runtime.Decoder {
	return kindDecoder{gvk: s.gvk, newObj: s.newObj, fallback: s.NegotiatedSerializer.DecoderToVersion(d, gv)}
}

// kindDecoder decodes JSON of its one kind in one pass; anything else (a list, a Status, another
// encoding) goes to fallback, the universal decoder.
type kindDecoder struct {
	gvk      schema.GroupVersionKind
	newObj   func() runtime.Object
	fallback runtime.Decoder
}

func (d kindDecoder) Decode(data []byte, defaults *schema.GroupVersionKind, into runtime.Object) (runtime.Object, *schema.GroupVersionKind, error) {
	if into == nil {
		obj := d.newObj()
		if err := sigsjson.UnmarshalCaseSensitivePreserveInts(data, obj); err == nil {
			if gvk := obj.GetObjectKind().GroupVersionKind(); gvk == d.gvk {
				// As the universal decoder leaves a typed object: its type says the kind.
				obj.GetObjectKind().SetGroupVersionKind(schema.GroupVersionKind{})
				return obj, &gvk, nil
			}
		}
	}
	return d.fallback.Decode(data, defaults, into)
}

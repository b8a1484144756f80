package authz

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	toolscache "k8s.io/client-go/tools/cache"

	keycapv1alpha1 "github.com/keycap-dev/keycap/api/v1alpha1"
	"github.com/keycap-dev/keycap/internal/index"
	"github.com/keycap-dev/keycap/internal/keys"
	"github.com/keycap-dev/keycap/internal/testenv"
)

// BenchmarkStartupFeed is a data plane's start-up without the apiserver's share: an HTTP server
// streams KEYCAP_STARTUP_KEYS ApiKeys (default 20 000) as the apiserver streams an initial list
// (watch events of whole objects, managedFields included, then the bookmark that ends them), and
// the data plane's own REST client, decoder, reflector and index take them in until the feed is
// synced. Reported per credential: time and allocations of everything on the data plane's side.
//
//	go test -run '^$' -bench StartupFeed -benchtime 3x ./internal/authz/
func BenchmarkStartupFeed(b *testing.B) {
	n := 20_000
	if s := os.Getenv("KEYCAP_STARTUP_KEYS"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || v <= 0 {
			b.Fatalf("KEYCAP_STARTUP_KEYS=%q: a positive number of keys", s)
		}
		n = v
	}
	stream := initialListStream(b, n)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("sendInitialEvents") != "true" {
			http.Error(w, "this server only streams initial lists", http.StatusGone)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(stream)
		w.(http.Flusher).Flush()
		<-r.Context().Done() // the watch stays open, as a real one does
	}))
	defer srv.Close()

	gvk := keycapv1alpha1.GroupVersion.WithKind(keycapv1alpha1.KindApiKey)
	rc, err := restClientFor(&rest.Config{Host: srv.URL}, srv.Client(), testenv.Scheme(), gvk,
		func() runtime.Object { return &keycapv1alpha1.ApiKey{} })
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		ix := index.New()
		feed := ix.NewFeed([]index.Source{{
			Kind: keycapv1alpha1.KindApiKey,
			New:  func() keycapv1alpha1.Credential { return &keycapv1alpha1.ApiKey{} },
			// A ListWatch per run: each starts with a new watch-list.
			ListerWatcher: toolscache.NewListWatchFromClient(rc, "apikeys", metav1.NamespaceAll, fields.Everything()),
		}}, project)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { feed.Run(ctx); close(done) }()
		for !feed.Synced() {
			time.Sleep(time.Millisecond)
		}
		cancel()
		<-done
		if got := ix.Len(keycapv1alpha1.KindApiKey); got != n {
			b.Fatalf("the index holds %d ApiKeys, want %d", got, n)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N*n), "µs/credential")
}

// initialListStream returns n ApiKeys as a watch-list stream: ADDED events of objects as the
// apiserver stores what hack/bench creates (a create and a status write, so two managedFields
// entries), then the bookmark marking the end of the initial events.
func initialListStream(b *testing.B, n int) []byte {
	var out []byte
	created := metav1.NewTime(time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC))
	for i := range n {
		key, err := keys.Generate("kc")
		if err != nil {
			b.Fatal(err)
		}
		k := &keycapv1alpha1.ApiKey{
			TypeMeta: metav1.TypeMeta{APIVersion: keycapv1alpha1.GroupVersion.String(), Kind: keycapv1alpha1.KindApiKey},
			ObjectMeta: metav1.ObjectMeta{
				Namespace: "bench", Name: fmt.Sprintf("bench-%06d", i), Generation: 1, CreationTimestamp: created,
				UID: types.UID(fmt.Sprintf("0000002a-0000-4000-8000-%012x", i)), ResourceVersion: strconv.Itoa(1000 + i),
				ManagedFields: []metav1.ManagedFieldsEntry{
					{Manager: "bench", Operation: metav1.ManagedFieldsOperationUpdate, APIVersion: "keycap.dev/v1alpha1",
						Time: &created, FieldsType: "FieldsV1", FieldsV1: metav1.NewFieldsV1(`{"f:spec":{".":{},"f:scopes":{}}}`)},
					{Manager: "bench", Operation: metav1.ManagedFieldsOperationUpdate, APIVersion: "keycap.dev/v1alpha1",
						Time: &created, FieldsType: "FieldsV1", Subresource: "status",
						FieldsV1: metav1.NewFieldsV1(`{"f:status":{".":{},"f:digests":{},"f:keyID":{},"f:secretName":{}}}`)},
				},
			},
		}
		k.Spec.Scopes = []string{"bench:read", "bench:write"}
		k.Status.Digests = []string{keys.Digest(key)}
		k.Status.KeyID = keys.KeyID(k.Status.Digests[0])
		k.Status.SecretName = k.Name + "-key"
		out = appendEvent(b, out, "ADDED", k)
	}
	end := &keycapv1alpha1.ApiKey{
		TypeMeta: metav1.TypeMeta{APIVersion: keycapv1alpha1.GroupVersion.String(), Kind: keycapv1alpha1.KindApiKey},
		ObjectMeta: metav1.ObjectMeta{ResourceVersion: strconv.Itoa(1000 + n),
			Annotations: map[string]string{metav1.InitialEventsAnnotationKey: "true"}},
	}
	return appendEvent(b, out, "BOOKMARK", end)
}

func appendEvent(b *testing.B, out []byte, typ string, obj runtime.Object) []byte {
	raw, err := json.Marshal(obj)
	if err != nil {
		b.Fatal(err)
	}
	event, err := json.Marshal(&metav1.WatchEvent{Type: typ, Object: runtime.RawExtension{Raw: raw}})
	if err != nil {
		b.Fatal(err)
	}
	return append(append(out, event...), '\n')
}

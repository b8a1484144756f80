package index_test

import (
	"context"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/onsi/gomega"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	toolscache "k8s.io/client-go/tools/cache"

	keycapv1alpha1 "github.com/keycap-dev/keycap/api/v1alpha1"
	. "github.com/keycap-dev/keycap/internal/index"
	"github.com/keycap-dev/keycap/internal/keys"
	"github.com/keycap-dev/keycap/internal/registry"
)

// fakeAPI is the ApiKeys of one namespace as a list-and-watch serves them: a watch asking for
// its initial events gets every object and the bookmark that ends them (the streamed list a real
// apiserver sends), a plain list gets them as a list. The test changes objects without telling
// any watch (a change made while the watch was down) and ends the current watch.
type fakeAPI struct {
	mu      sync.Mutex
	objs    map[string]*keycapv1alpha1.ApiKey
	rv      int
	watches chan *watch.FakeWatcher
}

func (f *fakeAPI) put(k *keycapv1alpha1.ApiKey) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rv++
	k.ResourceVersion = strconv.Itoa(f.rv)
	f.objs[k.Name] = k
}

func (f *fakeAPI) drop(name string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rv++
	delete(f.objs, name)
}

func (f *fakeAPI) snapshot() ([]runtime.Object, string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []runtime.Object
	for _, k := range f.objs {
		out = append(out, k.DeepCopy())
	}
	return out, strconv.Itoa(f.rv)
}

func (f *fakeAPI) listerWatcher() toolscache.ListerWatcher {
	return &toolscache.ListWatch{
		ListWithContextFunc: func(context.Context, metav1.ListOptions) (runtime.Object, error) {
			objs, rv := f.snapshot()
			list := &keycapv1alpha1.ApiKeyList{ListMeta: metav1.ListMeta{ResourceVersion: rv}}
			for _, o := range objs {
				list.Items = append(list.Items, *o.(*keycapv1alpha1.ApiKey))
			}
			return list, nil
		},
		WatchFuncWithContext: func(_ context.Context, opts metav1.ListOptions) (watch.Interface, error) {
			initial := opts.SendInitialEvents != nil && *opts.SendInitialEvents
			if _, rv := f.snapshot(); !initial && opts.ResourceVersion != rv {
				// The changes since opts.ResourceVersion are not kept (compacted, or an
				// apiserver restarted): the client must list again.
				return nil, apierrors.NewResourceExpired("too old resource version")
			}
			w := watch.NewFakeWithChanSize(1000, false)
			if initial {
				objs, rv := f.snapshot()
				for _, o := range objs {
					w.Add(o)
				}
				end := &keycapv1alpha1.ApiKey{ObjectMeta: metav1.ObjectMeta{
					ResourceVersion: rv, Annotations: map[string]string{metav1.InitialEventsAnnotationKey: "true"},
				}}
				w.Action(watch.Bookmark, end)
			}
			f.watches <- w
			return w, nil
		},
	}
}

func newFakeAPI() *fakeAPI {
	return &fakeAPI{objs: map[string]*keycapv1alpha1.ApiKey{}, watches: make(chan *watch.FakeWatcher, 10)}
}

// runFeed runs a feed of ix from api's ApiKeys of namespace acme until the test ends.
func runFeed(t *testing.T, ix *Index, api *fakeAPI) *Feed {
	feed := ix.NewFeed([]Source{{
		Kind: keycapv1alpha1.KindApiKey, Namespace: "acme",
		New:           func() keycapv1alpha1.Credential { return &keycapv1alpha1.ApiKey{} },
		ListerWatcher: api.listerWatcher(),
	}}, registry.Project)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { feed.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return feed
}

// TestFeedFollowsTheAPIAndRelistsWhatItMissed runs the data plane's feed against a list-and-watch
// and checks that what the index holds is what the API holds: objects of the initial list, watch
// events, and — the case a revocation depends on — an object deleted while the watch was down is
// removed by the relist that follows, not kept because no delete event ever came.
func TestFeedFollowsTheAPIAndRelistsWhatItMissed(t *testing.T) {
	g := gomega.NewWithT(t)
	api := newFakeAPI()
	ka, kb, kc := "kc_a", "kc_b", "kc_c"
	api.put(apiKey("a", keys.Digest(ka)))
	api.put(apiKey("b", keys.Digest(kb)))

	ix := New()
	feed := runFeed(t, ix, api)

	g.Expect(feed.Synced()).To(gomega.BeFalse())
	g.Eventually(feed.Synced, 10*time.Second, 5*time.Millisecond).Should(gomega.BeTrue())
	g.Expect(lookup(ix, ka)).NotTo(gomega.BeNil())
	g.Expect(lookup(ix, kb)).NotTo(gomega.BeNil())
	g.Expect(ix.Len(keycapv1alpha1.KindApiKey)).To(gomega.Equal(2))
	w := <-api.watches

	// Watch events: a disable, a delete, a create.
	disabled := apiKey("a", keys.Digest(ka))
	disabled.Spec.Disabled = true
	api.put(disabled)
	w.Modify(disabled.DeepCopy())
	api.drop("b")
	w.Delete(apiKey("b", keys.Digest(kb)))
	c := apiKey("c", keys.Digest(kc))
	api.put(c)
	w.Add(c.DeepCopy())
	g.Eventually(func() bool { return lookup(ix, kc) != nil }, 5*time.Second, 5*time.Millisecond).Should(gomega.BeTrue())
	g.Expect(lookup(ix, ka).Disabled).To(gomega.BeTrue())
	g.Expect(lookup(ix, kb)).To(gomega.BeNil())

	// The watch goes down; meanwhile c is deleted and a enabled. The feed reconnects (after its
	// backoff), and the relist's state replaces what the index held.
	api.drop("c")
	api.put(apiKey("a", keys.Digest(ka)))
	w.Stop()
	g.Eventually(func() bool { return lookup(ix, kc) == nil }, 10*time.Second, 5*time.Millisecond).Should(gomega.BeTrue(),
		"a credential deleted while the watch was down is still in the index after the relist")
	g.Expect(lookup(ix, ka)).NotTo(gomega.BeNil())
	g.Expect(lookup(ix, ka).Disabled).To(gomega.BeFalse())
	g.Expect(ix.Len(keycapv1alpha1.KindApiKey)).To(gomega.Equal(1))
}

// TestFeedReplaceKeepsOtherSources checks that a relist of one source (a kind in one namespace)
// removes only that source's objects: the other namespace's shard and the other kinds stay.
func TestFeedReplaceKeepsOtherSources(t *testing.T) {
	g := gomega.NewWithT(t)
	ix := New()
	other := apiKey("o", keys.Digest("kc_o"))
	other.Namespace = "globex"
	ix.Upsert(registry.Project(other))
	api := newFakeAPI()
	api.put(apiKey("a", keys.Digest("kc_a")))
	feed := runFeed(t, ix, api)
	g.Eventually(feed.Synced, 10*time.Second, 5*time.Millisecond).Should(gomega.BeTrue())
	g.Expect(lookup(ix, "kc_a")).NotTo(gomega.BeNil())
	g.Expect(lookup(ix, "kc_o")).NotTo(gomega.BeNil(), "a relist of namespace acme removed a credential of globex")
}

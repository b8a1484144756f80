package activation

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/client"

	keycapv1alpha1 "github.com/keycap-dev/keycap/api/v1alpha1"
	"github.com/keycap-dev/keycap/internal/authz/wire"
	"github.com/keycap-dev/keycap/internal/keys"
	"github.com/keycap-dev/keycap/internal/testenv"
)

// k8s is the uncached client of the real apiserver started by TestMain.
var k8s client.Client

func TestMain(m *testing.M) {
	os.Exit(func() int {
		env, err := testenv.New()
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		cfg, err := env.Start()
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer func() { _ = env.Stop() }()
		if k8s, err = client.New(cfg, client.Options{Scheme: testenv.Scheme()}); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		return m.Run()
	}())
}

// mapFinder is the LicenseFinder the data plane's index provides, as a map.
type mapFinder map[string]types.NamespacedName

func (f mapFinder) FindLicense(digest string) (types.NamespacedName, bool) {
	n, ok := f[digest]
	return n, ok
}

// newLicense creates a namespace and a License in it, writes a fresh key's digest into its status
// (the License controller's job, done here by hand) and returns the key.
func newLicense(t testing.TB, ctx context.Context, maxInstances int32, mutate func(*keycapv1alpha1.License)) (*keycapv1alpha1.License, string) {
	t.Helper()
	g := gomega.NewWithT(t)
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "activation-"}}
	g.Expect(k8s.Create(ctx, ns)).To(gomega.Succeed())
	t.Cleanup(func() { _ = k8s.Delete(context.Background(), ns) })
	lic := &keycapv1alpha1.License{
		ObjectMeta: metav1.ObjectMeta{Name: "cap", Namespace: ns.Name},
		Spec: keycapv1alpha1.LicenseSpec{Product: "cap", MaxInstances: maxInstances,
			RefreshInterval: &metav1.Duration{Duration: time.Hour}},
	}
	if mutate != nil {
		mutate(lic)
	}
	g.Expect(k8s.Create(ctx, lic)).To(gomega.Succeed())
	key, err := keys.Generate(keycapv1alpha1.LicenseKeyPrefix)
	g.Expect(err).NotTo(gomega.HaveOccurred())
	lic.Status.Digests = []string{keys.Digest(key)}
	g.Expect(k8s.Status().Update(ctx, lic)).To(gomega.Succeed())
	return lic, key
}

func post(t *testing.T, url, key, instance, body string) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url+Path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if key != "" {
		req.Header.Set(wire.HeaderLicenseKey, key)
	}
	if instance != "" {
		req.Header.Set(wire.HeaderInstanceID, instance)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Error(err)
		return 0, nil
	}
	defer func() { _ = resp.Body.Close() }()
	var out map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Errorf("body is not JSON: %v", err)
	}
	return resp.StatusCode, out
}

func reasonOf(body map[string]any) string {
	e, _ := body["error"].(map[string]any)
	r, _ := e["reason"].(string)
	return r
}

func serve(t *testing.T, finder LicenseFinder, clk *clocktesting.FakeClock) string {
	t.Helper()
	srv := httptest.NewServer(NewActivator(finder, k8s, k8s, clk))
	t.Cleanup(srv.Close)
	return srv.URL
}

func TestMaxInstancesHoldsUnderConcurrency(t *testing.T) {
	g := gomega.NewWithT(t)
	ctx := context.Background()
	lic, key := newLicense(t, ctx, 5, nil)
	url := serve(t, mapFinder{keys.Digest(key): client.ObjectKeyFromObject(lic)}, clocktesting.NewFakeClock(time.Now()))

	const n = 50
	type outcome struct {
		status int
		reason string
	}
	results := make([]outcome, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			status, body := post(t, url, key, fmt.Sprintf("instance-%02d", i), `{"reset": false}`)
			results[i] = outcome{status, reasonOf(body)}
		})
	}
	wg.Wait()

	ok, refused := 0, 0
	for _, r := range results {
		switch {
		case r.status == http.StatusOK:
			ok++
		case r.status == http.StatusForbidden && r.reason == string(ReasonTooManyInstances):
			refused++
		default:
			t.Errorf("unexpected outcome %+v", r)
		}
	}
	g.Expect(ok).To(gomega.Equal(5))
	g.Expect(refused).To(gomega.Equal(45))

	stored := &keycapv1alpha1.License{}
	g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(lic), stored)).To(gomega.Succeed())
	g.Expect(stored.Status.Activations).To(gomega.HaveLen(5))
	g.Expect(stored.Status.Digests).To(gomega.Equal(lic.Status.Digests), "the activation write keeps the rest of the status")
}

func TestActivationLifecycle(t *testing.T) {
	g := gomega.NewWithT(t)
	ctx := context.Background()
	lic, key := newLicense(t, ctx, 2, nil)
	name := client.ObjectKeyFromObject(lic)
	clk := clocktesting.NewFakeClock(time.Now().Truncate(time.Second))
	url := serve(t, mapFinder{keys.Digest(key): name}, clk)

	status, body := post(t, url, key, "a", `{"reset": false}`)
	g.Expect(status).To(gomega.Equal(http.StatusOK))
	g.Expect(body).To(gomega.HaveKeyWithValue("message", "License activated"))
	g.Expect(body).To(gomega.HaveKeyWithValue("refresh", float64(3600)))
	g.Expect(body).To(gomega.HaveKeyWithValue("expiryDate", float64(clk.Now().Add(3*time.Hour).Unix())))
	status, _ = post(t, url, key, "b", "")
	g.Expect(status).To(gomega.Equal(http.StatusOK), "an empty body means reset false")
	status, body = post(t, url, key, "c", `{"reset": false}`)
	g.Expect(status).To(gomega.Equal(http.StatusForbidden))
	g.Expect(reasonOf(body)).To(gomega.Equal("TOO_MANY_INSTANCES"))

	// a checks in two hours later; b does not and its seat is released after the heartbeat timeout.
	clk.Step(2 * time.Hour)
	status, _ = post(t, url, key, "a", `{}`)
	g.Expect(status).To(gomega.Equal(http.StatusOK))
	stored := &keycapv1alpha1.License{}
	g.Expect(k8s.Get(ctx, name, stored)).To(gomega.Succeed())
	g.Expect(stored.Status.Activations[0].LastSeenAt.Time).To(gomega.BeTemporally("==", clk.Now()), "re-activating refreshes lastSeenAt")
	clk.Step(time.Hour)
	status, _ = post(t, url, key, "c", `{"reset": false}`)
	g.Expect(status).To(gomega.Equal(http.StatusOK), "b's seat was released")

	status, _ = post(t, url, key, "d", `{"reset": true}`)
	g.Expect(status).To(gomega.Equal(http.StatusOK))
	g.Expect(k8s.Get(ctx, name, stored)).To(gomega.Succeed())
	g.Expect(ids(stored.Status.Activations)).To(gomega.Equal([]string{"d"}), "reset deactivates the other instances")

	stored.Spec.Disabled = true
	g.Expect(k8s.Update(ctx, stored)).To(gomega.Succeed())
	status, body = post(t, url, key, "d", `{"reset": false}`)
	g.Expect(status).To(gomega.Equal(http.StatusForbidden))
	g.Expect(reasonOf(body)).To(gomega.Equal("DISABLED"))
}

func TestActivationRefusesBadRequests(t *testing.T) {
	ctx := context.Background()
	lic, key := newLicense(t, ctx, 1, func(l *keycapv1alpha1.License) {
		l.Spec.ExpiresAt = &metav1.Time{Time: time.Now().Add(time.Hour)}
	})
	clk := clocktesting.NewFakeClock(time.Now())
	unknown, _ := keys.Generate(keycapv1alpha1.LicenseKeyPrefix)
	apiKey, _ := keys.Generate("kcak")
	url := serve(t, mapFinder{keys.Digest(key): client.ObjectKeyFromObject(lic)}, clk)

	cases := map[string]struct {
		key, instance, body string
		step                time.Duration
		status              int
		reason              string
	}{
		"a missing licensekey header is a bad request": {instance: "a", body: `{}`, status: 400, reason: "BAD_REQUEST"},
		"a missing instanceid header is a bad request": {key: key, body: `{}`, status: 400, reason: "BAD_REQUEST"},
		"a body that is not JSON is a bad request":     {key: key, instance: "a", body: `reset=true`, status: 400, reason: "BAD_REQUEST"},
		"a malformed key is refused":                   {key: key[:len(key)-1] + "x", instance: "a", body: `{}`, status: 401, reason: "MALFORMED"},
		"a key of another kind is refused":             {key: apiKey, instance: "a", body: `{}`, status: 401, reason: "MALFORMED"},
		"an unknown key is refused":                    {key: unknown, instance: "a", body: `{}`, status: 401, reason: "NOT_FOUND"},
		"an expired licence is refused":                {key: key, instance: "a", body: `{}`, step: 2 * time.Hour, status: 401, reason: "EXPIRED"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			g := gomega.NewWithT(t)
			clk.SetTime(time.Now().Add(tc.step))
			status, body := post(t, url, tc.key, tc.instance, tc.body)
			g.Expect(status).To(gomega.Equal(tc.status))
			g.Expect(reasonOf(body)).To(gomega.Equal(tc.reason))
		})
	}
}

func ids(acts []keycapv1alpha1.LicenseActivation) []string {
	out := []string{}
	for _, a := range acts {
		out = append(out, a.InstanceID)
	}
	return out
}

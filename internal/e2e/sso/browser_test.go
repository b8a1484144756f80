// Package sso_test drives keycap's SSO login links and sessions with a real headless Chromium
// (Debian's chromium, installed by hack/install-test-deps.sh) against the real controllers and
// data plane on a real kube-apiserver + etcd.
package sso_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	keycapv1alpha1 "github.com/keycap-dev/keycap/api/v1alpha1"
	"github.com/keycap-dev/keycap/controllers"
	"github.com/keycap-dev/keycap/internal/authz"
	"github.com/keycap-dev/keycap/internal/testenv"
)

const (
	operatorNamespace = "keycap-system"
	namespace         = "portal"
	// readyTimeout bounds waiting for the controllers and the data plane to see a change; it
	// is generous on purpose (the tests assert that it happens, not how fast).
	readyTimeout = 30 * time.Second
)

var (
	apiClient client.Client
	baseURL   string
)

func TestMain(m *testing.M) { os.Exit(runMain(m)) }

func runMain(m *testing.M) int {
	env, c, stop, err := testenv.Start()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer stop()
	apiClient = c
	for _, ns := range []string{operatorNamespace, namespace} {
		if err := c.Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	}
	ctrlMgr, err := ctrl.NewManager(env.Config, ctrl.Options{Scheme: testenv.Scheme(), Metrics: metricsserver.Options{BindAddress: "0"}})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if err := controllers.SetupWithManager(ctrlMgr, controllers.Options{OperatorNamespace: operatorNamespace}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	// The data plane alone, as `keycap --components=authz` runs it, on the real clock (the
	// browser judges cookie expiry on it too).
	mgr, err := ctrl.NewManager(env.Config, ctrl.Options{Scheme: testenv.Scheme(), Metrics: metricsserver.Options{BindAddress: "0"},
		Cache: authz.StandaloneCacheOptions()})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	dp, err := authz.SetupWithManager(mgr, authz.Options{
		GRPCAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", OperatorNamespace: operatorNamespace,
		PublicKeysRefreshInterval: 100 * time.Millisecond, SessionKeysRefreshInterval: 100 * time.Millisecond,
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 2)
	go func() { done <- ctrlMgr.Start(ctx) }()
	go func() { done <- mgr.Start(ctx) }()
	defer func() { cancel(); <-done; <-done }()
	waitCtx, waitCancel := context.WithTimeout(ctx, time.Minute)
	defer waitCancel()
	if !dp.WaitServing(waitCtx) {
		fmt.Fprintln(os.Stderr, "the data plane did not start serving")
		return 1
	}
	baseURL = "http://" + dp.HTTPAddr().String()
	return m.Run()
}

// browser starts a headless Chromium with a fresh profile and no network of its own. A missing
// Chromium fails the test: hack/install-test-deps.sh installs it.
func browser(t *testing.T) context.Context {
	t.Helper()
	path, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatalf("chromium is not installed (hack/install-test-deps.sh installs it): %v", err)
	}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(path),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("no-default-browser-check", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.Flag("disable-default-apps", true),
	}
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelCtx := chromedp.NewContext(allocCtx)
	t.Cleanup(func() { cancelCtx(); cancelAlloc() })
	// The first call starts the browser; it must not carry a timeout (that would stop it).
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("starting chromium: %v", err)
	}
	return ctx
}

// open navigates to target and returns where the browser landed and the text of selector there.
func open(t *testing.T, ctx context.Context, target, selector string) (location, text string) {
	t.Helper()
	runCtx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if err := chromedp.Do(runCtx, chromedp.Navigate(target)); err != nil {
		t.Fatalf("navigating to %s: %v", strings.SplitN(target, "?", 2)[0], err)
	}
	location, err := chromedp.Run(runCtx, chromedp.Location())
	if err != nil {
		t.Fatalf("reading the location: %v", err)
	}
	text, err = chromedp.Run(runCtx, chromedp.Evaluate[string](fmt.Sprintf(`(document.querySelector(%q) || {}).textContent || ""`, selector)))
	if err != nil {
		t.Fatalf("reading %s: %v", selector, err)
	}
	return location, strings.TrimSpace(text)
}

// createApiKey creates an ApiKey, waits for the controller to issue it and returns its key.
func createKey(t *testing.T, obj keycapv1alpha1.Credential, dataKey string) string {
	t.Helper()
	g := gomega.NewWithT(t)
	ctx := context.Background()
	g.Expect(apiClient.Create(ctx, obj)).To(gomega.Succeed())
	var key string
	g.Eventually(func(g gomega.Gomega) {
		var s corev1.Secret
		g.Expect(apiClient.Get(ctx, client.ObjectKey{Namespace: obj.GetNamespace(), Name: obj.GetName()}, &s)).To(gomega.Succeed())
		key = string(s.Data[dataKey])
		g.Expect(key).NotTo(gomega.BeEmpty())
	}, readyTimeout).Should(gomega.Succeed())
	return key
}

func setDisabled(t *testing.T, obj client.Object, disabled bool) {
	t.Helper()
	patch := client.RawPatch("application/merge-patch+json", fmt.Appendf(nil, `{"spec":{"disabled":%t}}`, disabled))
	gomega.NewWithT(t).Expect(apiClient.Patch(context.Background(), obj, patch)).To(gomega.Succeed())
}

func TestBrowserApiKeyLinkThenDisable(t *testing.T) {
	g := gomega.NewWithT(t)
	ak := &keycapv1alpha1.ApiKey{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: "alice"}}
	ak.Spec.Scopes = []string{"portal:read"}
	key := createKey(t, ak, keycapv1alpha1.ApiKeySecretKey)
	ctx := browser(t)

	// The data plane sees the new key within moments; until then the link is refused.
	g.Eventually(func() string {
		_, name := open(t, ctx, baseURL+"/auth/apikey-login?key="+key, "#name")
		return name
	}, readyTimeout).Should(gomega.Equal("alice"), "the SSO link lands on the portal, which shows who you are")
	loc, ns := open(t, ctx, baseURL+"/auth/portal", "#namespace")
	g.Expect(loc).To(gomega.Equal(baseURL + "/auth/portal"))
	g.Expect(ns).To(gomega.Equal(namespace), "the session cookie carries the login across navigations")

	setDisabled(t, ak, true)
	g.Eventually(func() string {
		loc, _ := open(t, ctx, baseURL+"/auth/portal", "#message")
		return loc
	}, readyTimeout).Should(gomega.Equal(baseURL+"/auth/login?error=session_ended"), "disabling the key ends its session at once")
	_, msg := open(t, ctx, baseURL+"/auth/portal", "#message")
	g.Expect(msg).To(gomega.ContainSubstring("session has ended"))

	loc, msg = open(t, ctx, baseURL+"/auth/apikey-login?key="+key, "#message")
	g.Expect(loc).To(gomega.Equal(baseURL+"/auth/login?error=invalid_link"), "a disabled key's link lands on the login page")
	g.Expect(msg).To(gomega.ContainSubstring("invalid or has expired"))
}

func TestBrowserAgentLink(t *testing.T) {
	g := gomega.NewWithT(t)
	parent := &keycapv1alpha1.ApiKey{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: "bob"}}
	createKey(t, parent, keycapv1alpha1.ApiKeySecretKey)
	agent := &keycapv1alpha1.AgentKey{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: "bob-agent"}}
	agent.Spec.APIKeyRef.Name = "bob"
	agent.Spec.Agent = "agent-7"
	key := createKey(t, agent, keycapv1alpha1.AgentKeySecretKey)
	ctx := browser(t)
	g.Eventually(func() string {
		_, a := open(t, ctx, baseURL+"/auth/agent-apikey-login?key="+key, "#agent")
		return a
	}, readyTimeout).Should(gomega.Equal("agent-7"))
	_, p := open(t, ctx, baseURL+"/auth/portal", "#parent")
	g.Expect(p).To(gomega.Equal("bob"))

	setDisabled(t, parent, true)
	g.Eventually(func() string {
		loc, _ := open(t, ctx, baseURL+"/auth/portal", "#message")
		return loc
	}, readyTimeout).Should(gomega.HaveSuffix("/auth/login?error=session_ended"), "an inactive parent ends the agent's session")
}

func TestBrowserOneTimeLink(t *testing.T) {
	g := gomega.NewWithT(t)
	ak := &keycapv1alpha1.ApiKey{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: "carol"}}
	key := createKey(t, ak, keycapv1alpha1.ApiKeySecretKey)
	var link struct {
		URL       string    `json:"url"`
		ExpiresAt time.Time `json:"expiresAt"`
	}
	g.Eventually(func(g gomega.Gomega) {
		req, _ := http.NewRequest(http.MethodPost, baseURL+"/auth/login-links", nil)
		req.Header.Set("x-api-key", key)
		resp, err := http.DefaultClient.Do(req)
		g.Expect(err).NotTo(gomega.HaveOccurred())
		defer resp.Body.Close()
		g.Expect(resp.StatusCode).To(gomega.Equal(http.StatusOK))
		g.Expect(resp.Header.Get("Cache-Control")).To(gomega.Equal("no-store"))
		g.Expect(json.NewDecoder(resp.Body).Decode(&link)).To(gomega.Succeed())
	}, readyTimeout).Should(gomega.Succeed())
	g.Expect(link.ExpiresAt).To(gomega.BeTemporally("<=", time.Now().Add(2*time.Minute+time.Second)))
	g.Expect(link.URL).NotTo(gomega.ContainSubstring(key), "the key is never in the link")

	ctx := browser(t)
	loc, name := open(t, ctx, link.URL, "#name")
	g.Expect(loc).To(gomega.Equal(baseURL + "/auth/portal"))
	g.Expect(name).To(gomega.Equal("carol"))
	loc, msg := open(t, ctx, link.URL, "#message")
	g.Expect(loc).To(gomega.Equal(baseURL+"/auth/login?error=invalid_link"), "the second use lands on the login page")
	g.Expect(msg).To(gomega.ContainSubstring("invalid or has expired"))
}

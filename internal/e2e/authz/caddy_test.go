package authz_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	keycapv1alpha1 "github.com/keycap-dev/keycap/api/v1alpha1"
	"github.com/keycap-dev/keycap/internal/authz"
	"github.com/keycap-dev/keycap/internal/routepolicy"
	"github.com/keycap-dev/keycap/internal/testenv"
)

// proxyStartTimeout bounds waiting for a proxy to accept connections.
const proxyStartTimeout = 30 * time.Second

// startDataPlane runs a second data plane, like `keycap --components=authz
// --trusted-request-attributes=src`, on the suite's apiserver and clock.
func startDataPlane(t *testing.T, src routepolicy.Source) *authz.DataPlane {
	t.Helper()
	return startDataPlaneWith(t, func(o *authz.Options) { o.TrustedRequestAttributes = src })
}

// startDataPlaneWith is startDataPlane with the options changed by mutate (a test's own clock,
// say, so that stepping it moves no other test's time).
func startDataPlaneWith(t *testing.T, mutate func(*authz.Options)) *authz.DataPlane {
	t.Helper()
	g := gomega.NewWithT(t)
	mgr, err := ctrl.NewManager(world.config, ctrl.Options{
		Scheme:                 testenv.Scheme(),
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		Cache:                  authz.StandaloneCacheOptions(),
	})
	g.Expect(err).NotTo(gomega.HaveOccurred())
	opts := authz.Options{
		GRPCAddr:                  "127.0.0.1:0",
		HTTPAddr:                  "127.0.0.1:0",
		Clock:                     world.clock,
		OperatorNamespace:         operatorNamespace,
		PublicKeysRefreshInterval: 100 * time.Millisecond,
		DisableLastUsed:           true,
	}
	mutate(&opts)
	dp, err := authz.SetupWithManager(mgr, opts)
	g.Expect(err).NotTo(gomega.HaveOccurred())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	waitCtx, waitCancel := context.WithTimeout(ctx, time.Minute)
	defer waitCancel()
	g.Expect(dp.WaitServing(waitCtx)).To(gomega.BeTrue(), "the second data plane did not start serving")
	return dp
}

// echoUpstream answers every request with what it received, as JSON.
func echoUpstream(t *testing.T) string {
	t.Helper()
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(upstreamSeen{Path: r.URL.Path, Headers: r.Header})
	}))
	t.Cleanup(upstream.Close)
	return strings.TrimPrefix(upstream.URL, "http://")
}

// runProxy starts cmd (a proxy listening on port), stops it at cleanup and waits until it accepts
// connections.
func runProxy(t *testing.T, name string, cmd *exec.Cmd, port int) {
	t.Helper()
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	g := gomega.NewWithT(t)
	g.Expect(cmd.Start()).To(gomega.Succeed())
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("%s output:\n%s", name, out.String())
		}
	})
	g.Eventually(func() error {
		select {
		case err := <-exited:
			exited <- err
			return gomega.StopTrying(name + " exited: " + out.String())
		default:
		}
		c, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(port), time.Second)
		if err == nil {
			_ = c.Close()
		}
		return err
	}).WithTimeout(proxyStartTimeout).Should(gomega.Succeed())
}

// findCaddy returns the caddy binary (Debian's package, installed by hack/install-test-deps.sh).
func findCaddy(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("caddy"); err == nil {
		return p
	}
	t.Fatal("caddy not found; run hack/install-test-deps.sh")
	return ""
}

// proxyAnswer is what a client got through a proxy.
type proxyAnswer struct {
	status int
	reason string
	seen   upstreamSeen
	body   string
}

func requestVia(t *testing.T, method, url, host string, headers http.Header) proxyAnswer {
	t.Helper()
	g := gomega.NewWithT(t)
	req, err := http.NewRequestWithContext(context.Background(), method, url, nil)
	g.Expect(err).NotTo(gomega.HaveOccurred())
	req.Header = headers
	req.Host = host
	resp, err := http.DefaultClient.Do(req)
	g.Expect(err).NotTo(gomega.HaveOccurred())
	defer func() { _ = resp.Body.Close() }()
	raw, err := io.ReadAll(resp.Body)
	g.Expect(err).NotTo(gomega.HaveOccurred())
	a := proxyAnswer{status: resp.StatusCode, reason: resp.Header.Get("X-Keycap-Reason"), body: string(raw)}
	if resp.StatusCode == http.StatusOK {
		g.Expect(json.Unmarshal(raw, &a.seen)).To(gomega.Succeed(), "upstream answer: %s", raw)
	}
	return a
}

// createShopPolicy creates the example RoutePolicy for host in ns.
func createShopPolicy(t *testing.T, ns, host string) {
	t.Helper()
	rp := &keycapv1alpha1.RoutePolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "shop"},
		Spec: keycapv1alpha1.RoutePolicySpec{
			Hosts: []string{host},
			Rules: []keycapv1alpha1.RoutePolicyRule{
				{Paths: []string{"/admin"}, Methods: []string{"POST", "DELETE"}, Scopes: []string{"shop:admin"}, Namespaces: []string{ns}},
				{Paths: []string{"/"}, Scopes: []string{"shop:read"}},
			},
		},
	}
	gomega.NewWithT(t).Expect(world.client.Create(context.Background(), rp)).To(gomega.Succeed())
}

// proxyCases are what every real forward-auth proxy is run through: base is the proxy's URL,
// host a host the shop RoutePolicy of ns holds.
func proxyCases(t *testing.T, base, host, ns string) {
	reader, _ := createApiKey(t, ns, "reader", func(k *keycapv1alpha1.ApiKey) { k.Spec.Scopes = []string{"shop:read", "reports:read"} })
	admin, _ := createApiKey(t, ns, "admin", func(k *keycapv1alpha1.ApiKey) { k.Spec.Scopes = []string{"shop:read", "shop:admin"} })
	browser, _ := createApiKey(t, ns, "browser", func(k *keycapv1alpha1.ApiKey) { k.Spec.Scopes = []string{"shop:read"} })
	g := gomega.NewWithT(t)

	t.Run("a valid key passes with its identity, and the key stays behind", func(t *testing.T) {
		g := gomega.NewWithT(t)
		a := requestVia(t, http.MethodGet, base+"/reports/2026", host, hdr("X-Api-Key", reader, "X-Keycap-Agent", "forged"))
		g.Expect(a.status).To(gomega.Equal(http.StatusOK), a.body)
		g.Expect(a.seen.Path).To(gomega.Equal("/reports/2026"))
		g.Expect(a.seen.Headers.Get("X-Keycap-Kind")).To(gomega.Equal("ApiKey"))
		g.Expect(a.seen.Headers.Get("X-Keycap-Namespace")).To(gomega.Equal(ns))
		g.Expect(a.seen.Headers.Get("X-Keycap-Name")).To(gomega.Equal("reader"))
		g.Expect(a.seen.Headers.Get("X-Keycap-Scopes")).To(gomega.Equal("reports:read,shop:read"))
		g.Expect(a.seen.Headers.Get("X-Keycap-Agent")).To(gomega.BeEmpty(), "a forged identity header reached the upstream")
		g.Expect(a.seen.Headers.Values("X-Api-Key")).To(gomega.BeEmpty(), "the key reached the upstream")
	})
	t.Run("the key as a bearer token is stripped too", func(t *testing.T) {
		g := gomega.NewWithT(t)
		a := requestVia(t, http.MethodGet, base+"/reports/x", host, hdr("Authorization", "Bearer "+reader))
		g.Expect(a.status).To(gomega.Equal(http.StatusOK), a.body)
		g.Expect(a.seen.Headers.Values("Authorization")).To(gomega.BeEmpty())
	})
	t.Run("a missing key is 401 with keycap's body", func(t *testing.T) {
		g := gomega.NewWithT(t)
		a := requestVia(t, http.MethodGet, base+"/reports/2026", host, hdr())
		g.Expect(a.status).To(gomega.Equal(http.StatusUnauthorized))
		g.Expect(a.body).To(gomega.ContainSubstring(`"reason":"MISSING"`))
	})
	t.Run("a key without the proxy's scope is 403", func(t *testing.T) {
		g := gomega.NewWithT(t)
		a := requestVia(t, http.MethodGet, base+"/reports/2026", host, hdr("X-Api-Key", admin))
		g.Expect(a.status).To(gomega.Equal(http.StatusForbidden))
		g.Expect(a.body).To(gomega.ContainSubstring(`"reason":"INSUFFICIENT_SCOPE"`))
	})
	t.Run("the RoutePolicy's rules apply by host, path and method", func(t *testing.T) {
		g := gomega.NewWithT(t)
		for _, c := range []struct {
			method, path, key string
			status            int
		}{
			{http.MethodGet, "/items", browser, http.StatusOK},
			{http.MethodGet, "/admin/users", browser, http.StatusOK}, // GET is not limited under /admin
			{http.MethodPost, "/admin/users", browser, http.StatusForbidden},
			{http.MethodPost, "/admin/users", admin, http.StatusOK},
			{http.MethodDelete, "/ADMIN", browser, http.StatusForbidden},
			{http.MethodPost, "/%61dmin/users", browser, http.StatusForbidden},
			{http.MethodPost, "/public/..%2fadmin", browser, http.StatusForbidden},
			{http.MethodGet, "/items", reader, http.StatusOK},
		} {
			a := requestVia(t, c.method, base+c.path, host, hdr("X-Api-Key", c.key))
			g.Expect(a.status).To(gomega.Equal(c.status), "%s %s: %s", c.method, c.path, a.body)
		}
		// The same request on a host no policy holds needs only a valid key.
		a := requestVia(t, http.MethodPost, base+"/admin/users", "other.example.com", hdr("X-Api-Key", browser))
		g.Expect(a.status).To(gomega.Equal(http.StatusOK), a.body)
	})
	_ = g
}

func TestCaddyForwardAuth(t *testing.T) {
	bin := findCaddy(t)
	dp := startDataPlane(t, routepolicy.SourceForwarded)
	ns := newNamespace(t)
	host := fmt.Sprintf("shop-%s.example.com", ns)
	createShopPolicy(t, ns, host)
	upstream := echoUpstream(t)
	port := freePort(t) // last, once the upstream listens (see freePort)
	cmd := exec.Command(bin, "run", "--adapter", "caddyfile", "--config",
		filepath.Join("..", "..", "..", "config", "samples", "integrations", "caddy", "Caddyfile"))
	cmd.Env = append(os.Environ(),
		"CADDY_PORT="+strconv.Itoa(port),
		"KEYCAP_HTTP="+dp.HTTPAddr().String(),
		"UPSTREAM="+upstream,
		"HOME="+t.TempDir(), "XDG_DATA_HOME="+t.TempDir(), "XDG_CONFIG_HOME="+t.TempDir())
	runProxy(t, "caddy", cmd, port)
	proxyCases(t, "http://127.0.0.1:"+strconv.Itoa(port), host, ns)
}

package authz_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"text/template"
	"time"

	"github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	keycapv1alpha1 "github.com/keycap-dev/keycap/api/v1alpha1"
	"github.com/keycap-dev/keycap/internal/keys"
)

// nginxStartTimeout bounds waiting for nginx to accept connections.
const nginxStartTimeout = 20 * time.Second

// findNginx returns the nginx binary. hack/install-test-deps.sh (run by `make test`) installs the
// Debian package when it is missing. Without it the test fails; it never skips.
func findNginx(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("nginx"); err == nil {
		return p
	}
	for _, p := range []string{"/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/local/nginx/sbin/nginx"} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	t.Fatal("nginx not found; run hack/install-test-deps.sh")
	return ""
}

// freePort returns a port for an external proxy (nginx, caddy, traefik) to bind itself: such a
// process takes a port number, not a listener. The listener is closed just before the return, so
// callers pick it last, right before starting the process, once every listener of the test's own
// (upstreams, data planes) is bound: nothing of the test can then take the port in between, and a
// test picks only one.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	gomega.NewWithT(t).Expect(err).NotTo(gomega.HaveOccurred())
	port := l.Addr().(*net.TCPAddr).Port
	_ = l.Close()
	return port
}

// upstreamSeen is what the upstream received.
type upstreamSeen struct {
	Path    string
	Headers http.Header
}

// startNginx runs nginx with testdata/nginx.conf.tmpl in front of an upstream that answers every
// request with the request's headers as JSON. It returns nginx's base URL.
func startNginx(t *testing.T, namespace string) string {
	t.Helper()
	g := gomega.NewWithT(t)
	bin := findNginx(t)

	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(upstreamSeen{Path: r.URL.Path, Headers: r.Header})
	}))
	t.Cleanup(upstream.Close)

	dir := t.TempDir()
	tmpl, err := template.ParseFiles(filepath.Join("testdata", "nginx.conf.tmpl"))
	g.Expect(err).NotTo(gomega.HaveOccurred())
	identity, err := os.ReadFile(filepath.Join("testdata", "keycap-identity.conf"))
	g.Expect(err).NotTo(gomega.HaveOccurred())
	g.Expect(os.WriteFile(filepath.Join(dir, "keycap-identity.conf"), identity, 0o600)).To(gomega.Succeed())
	port := freePort(t)
	var conf bytes.Buffer
	g.Expect(tmpl.Execute(&conf, map[string]any{
		"Dir":       dir,
		"Root":      os.Geteuid() == 0,
		"Port":      port,
		"Keycap":    world.dp.HTTPAddr().String(),
		"Upstream":  strings.TrimPrefix(upstream.URL, "http://"),
		"Namespace": namespace,
	})).To(gomega.Succeed())
	confPath := filepath.Join(dir, "nginx.conf")
	g.Expect(os.WriteFile(confPath, conf.Bytes(), 0o600)).To(gomega.Succeed())

	cmd := exec.Command(bin, "-p", dir, "-c", confPath, "-e", filepath.Join(dir, "error.log"))
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	g.Expect(cmd.Start()).To(gomega.Succeed())
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		// SIGQUIT: graceful shutdown of the master and its worker.
		_ = cmd.Process.Signal(syscall.SIGQUIT)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			log, _ := os.ReadFile(filepath.Join(dir, "error.log"))
			t.Logf("nginx output:\n%s\nerror.log:\n%s", out.String(), log)
		}
	})
	base := "http://127.0.0.1:" + strconv.Itoa(port)
	g.Eventually(func() error {
		select {
		case err := <-exited:
			exited <- err
			return gomega.StopTrying("nginx exited: " + out.String())
		default:
		}
		c, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(port), time.Second)
		if err == nil {
			_ = c.Close()
		}
		return err
	}).WithTimeout(nginxStartTimeout).Should(gomega.Succeed())
	return base
}

type nginxAnswer struct {
	status  int
	reason  string
	body    map[string]any
	seen    upstreamSeen
	rawBody string
}

func getVia(t *testing.T, url string, headers http.Header) nginxAnswer {
	t.Helper()
	g := gomega.NewWithT(t)
	req, err := http.NewRequestWithContext(context.Background(), http.MethodGet, url, nil)
	g.Expect(err).NotTo(gomega.HaveOccurred())
	req.Header = headers
	resp, err := http.DefaultClient.Do(req)
	g.Expect(err).NotTo(gomega.HaveOccurred())
	defer func() { _ = resp.Body.Close() }()
	raw, err := io.ReadAll(resp.Body)
	g.Expect(err).NotTo(gomega.HaveOccurred())
	a := nginxAnswer{status: resp.StatusCode, reason: resp.Header.Get("X-Keycap-Reason"), rawBody: string(raw)}
	if resp.StatusCode == http.StatusOK && len(raw) > 0 {
		g.Expect(json.Unmarshal(raw, &a.seen)).To(gomega.Succeed())
	} else if strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		_ = json.Unmarshal(raw, &a.body)
	}
	return a
}

func hdr(kv ...string) http.Header {
	h := http.Header{}
	for i := 0; i+1 < len(kv); i += 2 {
		h.Add(kv[i], kv[i+1])
	}
	return h
}

func TestNginxAuthRequest(t *testing.T) {
	ns := newNamespace(t)
	key, k := createApiKey(t, ns, "web", nil)
	base := startNginx(t, ns)
	g := gomega.NewWithT(t)
	g.Eventually(func() int {
		return getVia(t, base+"/videos/1", hdr("X-Api-Key", key)).status
	}).WithTimeout(propagationTimeout).Should(gomega.Equal(http.StatusOK))

	t.Run("a valid key passes, the upstream sees the identity but not the key", func(t *testing.T) {
		g := gomega.NewWithT(t)
		for _, h := range []http.Header{
			hdr("X-Api-Key", key, "X-Keycap-Agent", "forged", "X-Keycap-Kind", "forged"),
			hdr("Authorization", "Bearer "+key),
			hdr("X-CapData-Token", key),
		} {
			a := getVia(t, base+"/videos/1", h)
			g.Expect(a.status).To(gomega.Equal(http.StatusOK))
			seen := a.seen.Headers
			g.Expect(seen.Get("X-Keycap-Kind")).To(gomega.Equal("ApiKey"))
			g.Expect(seen.Get("X-Keycap-Namespace")).To(gomega.Equal(ns))
			g.Expect(seen.Get("X-Keycap-Name")).To(gomega.Equal("web"))
			g.Expect(seen.Get("X-Keycap-Key-Id")).To(gomega.Equal(keys.KeyID(keys.Digest(key))))
			g.Expect(seen.Get("X-Keycap-Scopes")).To(gomega.Equal("videos:read,videos:write"))
			g.Expect(seen).NotTo(gomega.HaveKey("X-Keycap-Agent"))
			for _, name := range []string{"X-Api-Key", "Authorization", "X-Capdata-Token"} {
				g.Expect(seen).NotTo(gomega.HaveKey(name))
			}
			g.Expect(a.rawBody).NotTo(gomega.ContainSubstring(key))
		}
	})

	t.Run("no key is refused with 401 and the JSON body", func(t *testing.T) {
		g := gomega.NewWithT(t)
		a := getVia(t, base+"/videos/1", hdr())
		g.Expect(a.status).To(gomega.Equal(http.StatusUnauthorized))
		g.Expect(a.reason).To(gomega.Equal("MISSING"))
		g.Expect(a.body).To(gomega.HaveKeyWithValue("error", gomega.HaveKeyWithValue("code", "unauthorized")))
		g.Expect(a.body).To(gomega.HaveKeyWithValue("error", gomega.HaveKeyWithValue("reason", "MISSING")))
	})

	t.Run("a route needing a scope the key lacks is forbidden", func(t *testing.T) {
		g := gomega.NewWithT(t)
		a := getVia(t, base+"/admin/users", hdr("X-Api-Key", key))
		g.Expect(a.status).To(gomega.Equal(http.StatusForbidden))
		g.Expect(a.reason).To(gomega.Equal("INSUFFICIENT_SCOPE"))
		g.Expect(a.body).To(gomega.HaveKeyWithValue("error", gomega.HaveKeyWithValue("code", "forbidden")))
	})

	t.Run("another tenant's key is forbidden on this tenant's route", func(t *testing.T) {
		g := gomega.NewWithT(t)
		otherNS := newNamespace(t)
		otherKey, _ := createApiKey(t, otherNS, "web", nil)
		g.Eventually(func() string {
			return getVia(t, base+"/videos/1", hdr("X-Api-Key", otherKey)).reason
		}).WithTimeout(propagationTimeout).Should(gomega.Equal("WRONG_NAMESPACE"))
		g.Expect(getVia(t, base+"/videos/1", hdr("X-Api-Key", otherKey)).status).To(gomega.Equal(http.StatusForbidden))
	})

	t.Run("bad input is refused with a 4xx and a reason, never a 5xx", func(t *testing.T) {
		other, _ := keys.Generate("kc")
		cases := map[string]struct {
			headers http.Header
			reason  string
		}{
			"x-api-key and a different bearer": {hdr("X-Api-Key", key, "Authorization", "Bearer "+other), "AMBIGUOUS"},
			"x-api-key repeated with two keys": {hdr("X-Api-Key", key, "X-Api-Key", other), "AMBIGUOUS"},
			"an empty bearer":                  {hdr("Authorization", "Bearer "), "MALFORMED"},
			"JWT-like junk":                    {hdr("Authorization", "Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2ln"), "ALGORITHM_NOT_ALLOWED"},
			"non-UTF-8 bytes":                  {hdr("X-Api-Key", "kc_\xff\xfe\xfd"), "MALFORMED"},
			"a 4 KiB key":                      {hdr("X-Api-Key", strings.Repeat("k", 4096)), "MALFORMED"},
			"a key with a bad checksum":        {hdr("X-Api-Key", key[:len(key)-6]+"000000"), "MALFORMED"},
		}
		for name, tc := range cases {
			t.Run(name, func(t *testing.T) {
				g := gomega.NewWithT(t)
				a := getVia(t, base+"/videos/1", tc.headers)
				g.Expect(a.status).To(gomega.Equal(http.StatusUnauthorized))
				g.Expect(a.reason).To(gomega.Equal(tc.reason))
			})
		}
		t.Run("headers larger than nginx accepts", func(t *testing.T) {
			a := getVia(t, base+"/videos/1", hdr("X-Api-Key", strings.Repeat("k", 64<<10)))
			gomega.NewWithT(t).Expect(a.status).To(gomega.And(gomega.BeNumerically(">=", 400), gomega.BeNumerically("<", 500)))
		})
	})

	t.Run("a disabled key is refused", func(t *testing.T) {
		g := gomega.NewWithT(t)
		setDisabled(t, k, true)
		g.Eventually(func() string {
			return getVia(t, base+"/videos/1", hdr("X-Api-Key", key)).reason
		}).WithTimeout(revocationTimeout).WithPolling(10 * time.Millisecond).Should(gomega.Equal("DISABLED"))
		setDisabled(t, k, false)
		g.Eventually(func() int {
			return getVia(t, base+"/videos/1", hdr("X-Api-Key", key)).status
		}).WithTimeout(propagationTimeout).Should(gomega.Equal(http.StatusOK))
	})

	t.Run("an expired key is refused", func(t *testing.T) {
		g := gomega.NewWithT(t)
		past := metav1.NewTime(world.clock.Now().Add(-time.Second))
		expired, _ := createApiKey(t, ns, "old", func(k *keycapv1alpha1.ApiKey) { k.Status.ExpiresAt = &past })
		g.Eventually(func() string {
			return getVia(t, base+"/videos/1", hdr("X-Api-Key", expired)).reason
		}).WithTimeout(propagationTimeout).Should(gomega.Equal("EXPIRED"))
		g.Expect(getVia(t, base+"/videos/1", hdr("X-Api-Key", expired)).status).To(gomega.Equal(http.StatusUnauthorized))
	})

	t.Run("a deleted key is refused", func(t *testing.T) {
		g := gomega.NewWithT(t)
		g.Expect(world.client.Delete(context.Background(), k)).To(gomega.Succeed())
		g.Eventually(func() string {
			return getVia(t, base+"/videos/1", hdr("X-Api-Key", key)).reason
		}).WithTimeout(revocationTimeout).WithPolling(10 * time.Millisecond).Should(gomega.Equal("NOT_FOUND"))
	})
}

func TestNginxAgentKeys(t *testing.T) {
	ns := newNamespace(t)
	_, parent := createApiKey(t, ns, "account", nil)
	agentKey, _ := createAgentKey(t, ns, "bot", "account", []string{"videos:read", "billing:read"})
	base := startNginx(t, ns)
	g := gomega.NewWithT(t)
	g.Eventually(func() int {
		return getVia(t, base+"/videos/1", hdr("X-Api-Key", agentKey)).status
	}).WithTimeout(propagationTimeout).Should(gomega.Equal(http.StatusOK))

	t.Run("an agent key passes with the agent and its parent, and scopes narrowed to the parent's", func(t *testing.T) {
		g := gomega.NewWithT(t)
		a := getVia(t, base+"/videos/1", hdr("Authorization", "Bearer "+agentKey, "X-Keycap-Parent", "forged"))
		g.Expect(a.status).To(gomega.Equal(http.StatusOK))
		seen := a.seen.Headers
		g.Expect(seen.Get("X-Keycap-Kind")).To(gomega.Equal("AgentKey"))
		g.Expect(seen.Get("X-Keycap-Name")).To(gomega.Equal("bot"))
		g.Expect(seen.Get("X-Keycap-Agent")).To(gomega.Equal("agent-bot"))
		g.Expect(seen.Get("X-Keycap-Parent")).To(gomega.Equal("account"))
		g.Expect(seen.Get("X-Keycap-Scopes")).To(gomega.Equal("videos:read"))
		g.Expect(seen).NotTo(gomega.HaveKey("Authorization"))
		g.Expect(a.rawBody).NotTo(gomega.ContainSubstring(agentKey))
	})

	t.Run("a route needing a scope the agent key lacks is forbidden", func(t *testing.T) {
		a := getVia(t, base+"/admin/users", hdr("X-Api-Key", agentKey))
		gomega.NewWithT(t).Expect(a.status).To(gomega.Equal(http.StatusForbidden))
		gomega.NewWithT(t).Expect(a.reason).To(gomega.Equal("INSUFFICIENT_SCOPE"))
	})

	t.Run("disabling the parent refuses the agent key, enabling it restores it", func(t *testing.T) {
		g := gomega.NewWithT(t)
		setDisabled(t, parent, true)
		g.Eventually(func() string {
			return getVia(t, base+"/videos/1", hdr("X-Api-Key", agentKey)).reason
		}).WithTimeout(revocationTimeout).Should(gomega.Equal("PARENT_INACTIVE"))
		g.Expect(getVia(t, base+"/videos/1", hdr("X-Api-Key", agentKey)).status).To(gomega.Equal(http.StatusUnauthorized))
		setDisabled(t, parent, false)
		g.Eventually(func() int {
			return getVia(t, base+"/videos/1", hdr("X-Api-Key", agentKey)).status
		}).WithTimeout(propagationTimeout).Should(gomega.Equal(http.StatusOK))
	})
}

package authz_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
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

	"github.com/keycap-dev/keycap/internal/session"
)

// portalSeen is what the portal upstream received: the identity headers and its Cookie header.
type portalSeen struct {
	Path    string
	Cookie  []string
	Headers http.Header
}

// startNginxPortal runs nginx with testdata/nginx-portal.conf.tmpl (the README's portal
// configuration) in front of a portal that answers every request with what it received as JSON.
// It returns nginx's base URL.
func startNginxPortal(t *testing.T, namespace string) string {
	t.Helper()
	g := gomega.NewWithT(t)
	bin := findNginx(t)

	portal := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		seen := portalSeen{Path: r.URL.Path, Cookie: r.Header.Values("Cookie"), Headers: http.Header{}}
		for name, v := range r.Header {
			if strings.HasPrefix(strings.ToLower(name), "x-keycap-") || strings.EqualFold(name, "X-Api-Key") || strings.EqualFold(name, "Authorization") {
				seen.Headers[name] = v
			}
		}
		_ = json.NewEncoder(w).Encode(seen)
	}))
	t.Cleanup(portal.Close)

	dir := t.TempDir()
	tmpl, err := template.ParseFiles(filepath.Join("testdata", "nginx-portal.conf.tmpl"))
	g.Expect(err).NotTo(gomega.HaveOccurred())
	port := freePort(t)
	var conf bytes.Buffer
	g.Expect(tmpl.Execute(&conf, map[string]any{
		"Dir":       dir,
		"Root":      os.Geteuid() == 0,
		"Port":      port,
		"Keycap":    world.dp.HTTPAddr().String(),
		"Portal":    strings.TrimPrefix(portal.URL, "http://"),
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
	return "http://127.0.0.1:" + strconv.Itoa(port)
}

// localhostJar is a cookie jar that, like a browser for http://127.0.0.1 (a secure context),
// sends Secure cookies over plain HTTP to the loopback address. It records every cookie set.
type localhostJar struct {
	jar *cookiejar.Jar
	set []*http.Cookie
}

func (j *localhostJar) SetCookies(u *url.URL, cookies []*http.Cookie) {
	for _, c := range cookies {
		cp := *c
		j.set = append(j.set, &cp)
		c.Secure = false
	}
	j.jar.SetCookies(u, cookies)
}

func (j *localhostJar) Cookies(u *url.URL) []*http.Cookie { return j.jar.Cookies(u) }

// browserless is an HTTP client with a cookie jar that does not follow redirects.
func browserless(t *testing.T) (*http.Client, *localhostJar) {
	t.Helper()
	inner, err := cookiejar.New(nil)
	gomega.NewWithT(t).Expect(err).NotTo(gomega.HaveOccurred())
	jar := &localhostJar{jar: inner}
	return &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}, jar
}

type portalAnswer struct {
	status   int
	location string
	reason   string
	seen     portalSeen
	body     string
}

func portalDo(t *testing.T, c *http.Client, method, u string, headers http.Header) portalAnswer {
	t.Helper()
	g := gomega.NewWithT(t)
	req, err := http.NewRequestWithContext(context.Background(), method, u, nil)
	g.Expect(err).NotTo(gomega.HaveOccurred())
	for name, v := range headers {
		req.Header[name] = v
	}
	resp, err := c.Do(req)
	g.Expect(err).NotTo(gomega.HaveOccurred())
	defer func() { _ = resp.Body.Close() }()
	raw, err := io.ReadAll(resp.Body)
	g.Expect(err).NotTo(gomega.HaveOccurred())
	a := portalAnswer{status: resp.StatusCode, location: resp.Header.Get("Location"), reason: resp.Header.Get("X-Keycap-Reason"), body: string(raw)}
	if resp.StatusCode == http.StatusOK && strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		g.Expect(json.Unmarshal(raw, &a.seen)).To(gomega.Succeed())
	}
	return a
}

// TestNginxPortalSession is the browser-less SSO flow through nginx's auth_request to a real
// portal upstream: the login link sets the cookie, the portal sees the identity and never the
// cookie, and disabling the key sends the browser to the login page.
func TestNginxPortalSession(t *testing.T) {
	ns := newNamespace(t)
	key, k := createApiKey(t, ns, "portal-user", nil)
	base := startNginxPortal(t, ns)
	c, jar := browserless(t)
	g := gomega.NewWithT(t)
	g.Eventually(func() int {
		return portalDo(t, http.DefaultClient, http.MethodGet, base+"/api/me", hdr("X-Api-Key", key)).status
	}).WithTimeout(propagationTimeout).Should(gomega.Equal(http.StatusOK))
	// Without a cookie the portal sends the browser to the login page.
	a := portalDo(t, c, http.MethodGet, base+"/home", nil)
	g.Expect(a.status).To(gomega.Equal(http.StatusFound))
	g.Expect(a.location).To(gomega.HaveSuffix("/auth/login?error=session_ended"))

	// The seed's SSO link, through nginx to keycap: 302 to the portal with the cookie.
	if now := time.Now().Add(time.Second); world.clock.Now().Before(now) {
		world.clock.SetTime(now) // see loginLink
	}
	g.Eventually(func() bool {
		a = portalDo(t, c, http.MethodGet, base+"/auth/apikey-login?key="+url.QueryEscape(key), nil)
		return len(jar.set) > 0
	}).WithTimeout(sessionLoginTimeout).WithPolling(100*time.Millisecond).Should(gomega.BeTrue(), "the login link set no cookie: %d %s", a.status, a.location)
	g.Expect(a.status).To(gomega.Equal(http.StatusFound))
	g.Expect(a.location).NotTo(gomega.ContainSubstring("error="))
	g.Expect(jar.set).To(gomega.HaveLen(1))
	set := jar.set[0]
	g.Expect(set.Name).To(gomega.Equal(session.CookieName))
	g.Expect(set.HttpOnly).To(gomega.BeTrue())
	g.Expect(set.Secure).To(gomega.BeTrue())
	g.Expect(set.SameSite).To(gomega.Equal(http.SameSiteLaxMode))
	g.Expect(set.Value).NotTo(gomega.ContainSubstring(key))
	// The portal's own cookie next to keycap's.
	u, err := url.Parse(base)
	g.Expect(err).NotTo(gomega.HaveOccurred())
	jar.jar.SetCookies(u, []*http.Cookie{{Name: "portal_pref", Value: "dark", Path: "/"}})

	t.Run("the portal sees the identity and not keycap's cookie", func(t *testing.T) {
		g := gomega.NewWithT(t)
		a := portalDo(t, c, http.MethodGet, base+"/home", hdr("X-Keycap-Name", "forged", "X-Keycap-Auth-Method", "forged"))
		g.Expect(a.status).To(gomega.Equal(http.StatusOK), a.body)
		seen := a.seen.Headers
		g.Expect(seen.Get("X-Keycap-Kind")).To(gomega.Equal("ApiKey"))
		g.Expect(seen.Get("X-Keycap-Namespace")).To(gomega.Equal(ns))
		g.Expect(seen.Get("X-Keycap-Name")).To(gomega.Equal("portal-user"))
		g.Expect(seen.Values("X-Keycap-Name")).To(gomega.HaveLen(1))
		g.Expect(seen.Get("X-Keycap-Key-Id")).To(gomega.Equal(k.Status.KeyID))
		g.Expect(seen.Get("X-Keycap-Scopes")).To(gomega.Equal("videos:read,videos:write"))
		g.Expect(seen.Get("X-Keycap-Auth-Method")).To(gomega.Equal("session"))
		g.Expect(a.seen.Cookie).To(gomega.Equal([]string{"portal_pref=dark"}))
		g.Expect(a.body).NotTo(gomega.ContainSubstring(session.CookieName))
		g.Expect(a.body).NotTo(gomega.ContainSubstring(set.Value))
	})

	t.Run("a key header through the portal wins, and keycap's cookie still does not pass", func(t *testing.T) {
		g := gomega.NewWithT(t)
		a := portalDo(t, c, http.MethodGet, base+"/home", hdr("X-Api-Key", key))
		g.Expect(a.status).To(gomega.Equal(http.StatusOK))
		g.Expect(a.seen.Headers.Get("X-Keycap-Auth-Method")).To(gomega.BeEmpty())
		g.Expect(a.seen.Headers).NotTo(gomega.HaveKey("X-Api-Key"))
		g.Expect(a.seen.Cookie).To(gomega.Equal([]string{"portal_pref=dark"}))
	})

	t.Run("CSRF: a cross-site POST is refused, a same-origin POST passes", func(t *testing.T) {
		g := gomega.NewWithT(t)
		a := portalDo(t, c, http.MethodPost, base+"/api/settings", hdr("Sec-Fetch-Site", "cross-site"))
		g.Expect(a.status).To(gomega.Equal(http.StatusForbidden))
		g.Expect(a.reason).To(gomega.Equal("CSRF"))
		a = portalDo(t, c, http.MethodPost, base+"/api/settings", nil)
		g.Expect(a.status).To(gomega.Equal(http.StatusForbidden))
		g.Expect(a.reason).To(gomega.Equal("CSRF"))
		a = portalDo(t, c, http.MethodPost, base+"/api/settings", hdr("Sec-Fetch-Site", "same-origin"))
		g.Expect(a.status).To(gomega.Equal(http.StatusOK))
		g.Expect(a.seen.Headers.Get("X-Keycap-Auth-Method")).To(gomega.Equal("session"))
		g.Expect(a.seen.Cookie).To(gomega.Equal([]string{"portal_pref=dark"}))
	})

	t.Run("disabling the key: 401, and the portal sends the browser to the login page", func(t *testing.T) {
		g := gomega.NewWithT(t)
		setDisabled(t, k, true)
		g.Eventually(func() int {
			return portalDo(t, c, http.MethodGet, base+"/api/me", nil).status
		}).WithTimeout(revocationTimeout).WithPolling(10 * time.Millisecond).Should(gomega.Equal(http.StatusUnauthorized))
		g.Expect(portalDo(t, c, http.MethodGet, base+"/api/me", nil).reason).To(gomega.Equal("DISABLED"))
		a := portalDo(t, c, http.MethodGet, base+"/home", nil)
		g.Expect(a.status).To(gomega.Equal(http.StatusFound))
		g.Expect(a.location).To(gomega.HaveSuffix("/auth/login?error=session_ended"))
		// The login page itself, served by keycap through nginx.
		page := portalDo(t, c, http.MethodGet, base+"/auth/login?error=session_ended", nil)
		g.Expect(page.status).To(gomega.Equal(http.StatusOK))
		g.Expect(page.body).NotTo(gomega.BeEmpty())
		// The login link refuses the disabled key and sets no cookie.
		n := len(jar.set)
		a = portalDo(t, c, http.MethodGet, base+"/auth/apikey-login?key="+url.QueryEscape(key), nil)
		g.Expect(a.status).To(gomega.Equal(http.StatusFound))
		g.Expect(a.location).To(gomega.ContainSubstring("error=invalid_link"))
		g.Expect(jar.set).To(gomega.HaveLen(n))
	})
}

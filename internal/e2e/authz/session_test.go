package authz_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/onsi/gomega"
	"google.golang.org/grpc/codes"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	keycapv1alpha1 "github.com/keycap-dev/keycap/api/v1alpha1"
	"github.com/keycap-dev/keycap/internal/session"
)

// sessionLoginTimeout bounds waiting for the operator's session keys to reach the data plane
// and a new credential to reach the index, so that a login link sets a cookie.
const sessionLoginTimeout = 30 * time.Second

// noRedirects is an HTTP client that returns the SSO endpoints' redirects instead of following
// them.
var noRedirects = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

// loginLink opens the seed's SSO link on the data plane (ApiKey or, with agent, AgentKey) until it
// answers 302 with keycap's session cookie, and returns the cookie's value.
func loginLink(t *testing.T, key string, agent bool) string {
	t.Helper()
	path := "/auth/apikey-login"
	if agent {
		path = "/auth/agent-apikey-login"
	}
	u := "http://" + world.dp.HTTPAddr().String() + path + "?key=" + url.QueryEscape(key)
	// A session issued before its credential's creationTimestamp ends at once (the binding to a
	// recreated object): keep the data plane's fake clock from lagging the apiserver's.
	if now := time.Now().Add(time.Second); world.clock.Now().Before(now) {
		world.clock.SetTime(now)
	}
	var value string
	gomega.NewWithT(t).Eventually(func() error {
		resp, err := noRedirects.Get(u)
		if err != nil {
			return err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusFound {
			return fmt.Errorf("login answered %d", resp.StatusCode)
		}
		for _, c := range resp.Cookies() {
			if c.Name == session.CookieName && c.Value != "" {
				value = c.Value
				return nil
			}
		}
		return fmt.Errorf("login redirected to %q without a session cookie", resp.Header.Get("Location"))
	}).WithTimeout(sessionLoginTimeout).WithPolling(100 * time.Millisecond).Should(gomega.Succeed())
	return value
}

func sessionCookie(value string) string { return session.CookieName + "=" + value }

// httpAnswer is an answer of /check.
type httpAnswer struct {
	status int
	reason string
	header http.Header
}

// httpCheck sends method /check?scopes=videos:read directly to the data plane's HTTP port.
func httpCheck(t *testing.T, method string, headers http.Header) httpAnswer {
	t.Helper()
	g := gomega.NewWithT(t)
	req, err := http.NewRequestWithContext(context.Background(), method, "http://"+world.dp.HTTPAddr().String()+"/check?scopes=videos:read", nil)
	g.Expect(err).NotTo(gomega.HaveOccurred())
	req.Header = headers
	resp, err := http.DefaultClient.Do(req)
	g.Expect(err).NotTo(gomega.HaveOccurred())
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	return httpAnswer{status: resp.StatusCode, reason: resp.Header.Get("X-Keycap-Reason"), header: resp.Header}
}

// grpcCheck sends a Check for method /videos with the scope videos:read.
func grpcCheck(t *testing.T, c authv3.AuthorizationClient, method string, headers map[string]string) result {
	t.Helper()
	req := checkRequest(headers, map[string]string{"keycap.dev/scopes": "videos:read"})
	req.Attributes.Request.Http.Method = method
	return check(t, c, req)
}

// identityOf returns the x-keycap-* identity headers of an allowed /check answer, without the
// auth method.
func identityOf(h http.Header) map[string]string {
	out := map[string]string{}
	for name, v := range h {
		lower := strings.ToLower(name)
		if strings.HasPrefix(lower, "x-keycap-") && lower != "x-keycap-auth-method" && lower != "x-keycap-reason" && lower != "x-keycap-cookie" {
			out[lower] = strings.Join(v, ",")
		}
	}
	return out
}

// grpcIdentityOf returns the x-keycap-* identity headers set by an allowed Check, without the
// auth method.
func grpcIdentityOf(r result) map[string]string {
	out := map[string]string{}
	for name, v := range r.headers {
		if strings.HasPrefix(name, "x-keycap-") && name != "x-keycap-auth-method" {
			out[name] = v
		}
	}
	return out
}

func TestSessionCheck(t *testing.T) {
	ns := newNamespace(t)
	c := grpcClient(t)
	key, _ := createApiKey(t, ns, "portal", nil)
	otherKey, _ := createApiKey(t, ns, "other", nil)
	g := gomega.NewWithT(t)
	g.Eventually(func() int { return httpCheck(t, http.MethodGet, hdr("X-Api-Key", otherKey)).status }).
		WithTimeout(propagationTimeout).Should(gomega.Equal(http.StatusOK))
	value := loginLink(t, key, false)
	cookie := sessionCookie(value)

	byKeyHTTP := httpCheck(t, http.MethodGet, hdr("X-Api-Key", key))
	g.Expect(byKeyHTTP.status).To(gomega.Equal(http.StatusOK))
	byKeyGRPC := grpcCheck(t, c, "GET", map[string]string{"x-api-key": key})
	g.Expect(byKeyGRPC.reason).To(gomega.Equal("OK"))

	t.Run("HTTP: the cookie is allowed with the credential's identity and auth method session", func(t *testing.T) {
		g := gomega.NewWithT(t)
		a := httpCheck(t, http.MethodGet, hdr("Cookie", "theme=dark; "+cookie+"; lang=en"))
		g.Expect(a.status).To(gomega.Equal(http.StatusOK), a.reason)
		g.Expect(a.reason).To(gomega.Equal("OK"))
		g.Expect(a.header.Get("X-Keycap-Auth-Method")).To(gomega.Equal("session"))
		g.Expect(identityOf(a.header)).To(gomega.Equal(identityOf(byKeyHTTP.header)))
		g.Expect(a.header.Get("X-Keycap-Name")).To(gomega.Equal("portal"))
		g.Expect(a.header.Get("X-Keycap-Namespace")).To(gomega.Equal(ns))
		// The Cookie header for the upstream, without keycap's.
		g.Expect(a.header.Values("X-Keycap-Cookie")).To(gomega.Equal([]string{"theme=dark; lang=en"}))
		g.Expect(byKeyHTTP.header.Get("X-Keycap-Auth-Method")).To(gomega.BeEmpty())
	})

	t.Run("HTTP: only keycap's cookie leaves an empty Cookie for the upstream", func(t *testing.T) {
		g := gomega.NewWithT(t)
		a := httpCheck(t, http.MethodGet, hdr("Cookie", cookie))
		g.Expect(a.status).To(gomega.Equal(http.StatusOK))
		g.Expect(a.header).To(gomega.HaveKeyWithValue("X-Keycap-Cookie", []string{""}))
	})

	t.Run("gRPC: the cookie is allowed with the credential's identity and the cookie header rewritten", func(t *testing.T) {
		g := gomega.NewWithT(t)
		r := grpcCheck(t, c, "GET", map[string]string{"cookie": "theme=dark; " + cookie + "; lang=en"})
		g.Expect(r.code).To(gomega.Equal(codes.OK))
		g.Expect(r.headers).To(gomega.HaveKeyWithValue("x-keycap-auth-method", "session"))
		g.Expect(grpcIdentityOf(r)).To(gomega.Equal(grpcIdentityOf(byKeyGRPC)))
		g.Expect(r.headers).To(gomega.HaveKeyWithValue("cookie", "theme=dark; lang=en"))
		g.Expect(r.removed).NotTo(gomega.ContainElement("x-keycap-auth-method"))

		r = grpcCheck(t, c, "GET", map[string]string{"cookie": cookie})
		g.Expect(r.code).To(gomega.Equal(codes.OK))
		g.Expect(r.removed).To(gomega.ContainElement("cookie"))
		g.Expect(r.headers).NotTo(gomega.HaveKey("cookie"))
	})

	t.Run("a credential header in the same request wins over the cookie", func(t *testing.T) {
		g := gomega.NewWithT(t)
		a := httpCheck(t, http.MethodGet, hdr("X-Api-Key", otherKey, "Cookie", cookie))
		g.Expect(a.status).To(gomega.Equal(http.StatusOK))
		g.Expect(a.header.Get("X-Keycap-Name")).To(gomega.Equal("other"))
		g.Expect(a.header.Get("X-Keycap-Auth-Method")).To(gomega.BeEmpty())
		r := grpcCheck(t, c, "GET", map[string]string{"authorization": "Bearer " + otherKey, "cookie": cookie})
		g.Expect(r.code).To(gomega.Equal(codes.OK))
		g.Expect(r.headers).To(gomega.HaveKeyWithValue("x-keycap-name", "other"))
		g.Expect(r.headers).NotTo(gomega.HaveKey("x-keycap-auth-method"))
		// A failing header is judged, not rescued by the cookie.
		last := map[bool]string{true: "y", false: "x"}[strings.HasSuffix(otherKey, "x")]
		a = httpCheck(t, http.MethodGet, hdr("X-Api-Key", otherKey[:len(otherKey)-1]+last, "Cookie", cookie))
		g.Expect(a.status).To(gomega.Equal(http.StatusUnauthorized))
		g.Expect(a.reason).NotTo(gomega.HavePrefix("SESSION"))
	})

	t.Run("forged and truncated cookies are refused with 401, never a 5xx", func(t *testing.T) {
		flipped := []byte(value)
		i := len(flipped) / 2
		flipped[i] = map[bool]byte{true: 'A', false: 'B'}[flipped[i] != 'A']
		cases := map[string]string{
			"truncated":          value[:len(value)/2],
			"one byte short":     value[:len(value)-1],
			"one character flip": string(flipped),
			"junk":               "not-a-session",
			"empty":              "",
			"4 KiB":              strings.Repeat("A", 4096),
			"non-UTF-8":          "\xff\xfe\xfd",
			"doubled":            value + value,
		}
		for name, v := range cases {
			t.Run(name, func(t *testing.T) {
				g := gomega.NewWithT(t)
				a := httpCheck(t, http.MethodGet, hdr("Cookie", sessionCookie(v)))
				g.Expect(a.status).To(gomega.Equal(http.StatusUnauthorized), "reason %s", a.reason)
				g.Expect(a.reason).To(gomega.BeElementOf("SESSION_INVALID", "MISSING", "MALFORMED"))
				// Envoy sends a value that is not UTF-8 in header_map as raw bytes.
				req := checkRequest(nil, map[string]string{"keycap.dev/scopes": "videos:read"})
				req.Attributes.Request.Http.HeaderMap = &corev3.HeaderMap{Headers: []*corev3.HeaderValue{{Key: "cookie", RawValue: []byte(sessionCookie(v))}}}
				r := check(t, c, req)
				g.Expect(r.code).To(gomega.Equal(codes.Unauthenticated))
				g.Expect(r.http).To(gomega.Equal(http.StatusUnauthorized))
				g.Expect(r.reason).To(gomega.Equal(a.reason))
			})
		}
		t.Run("two different keycap cookies", func(t *testing.T) {
			g := gomega.NewWithT(t)
			a := httpCheck(t, http.MethodGet, hdr("Cookie", cookie+"; "+sessionCookie(value[:len(value)-1])))
			g.Expect(a.status).To(gomega.BeNumerically("<", 500))
			g.Expect(a.status).NotTo(gomega.Equal(http.StatusOK))
		})
	})

	t.Run("CSRF: an unsafe method authenticated only by the cookie needs same-site evidence", func(t *testing.T) {
		g := gomega.NewWithT(t)
		for _, h := range []http.Header{
			hdr("Cookie", cookie),
			hdr("Cookie", cookie, "Sec-Fetch-Site", "cross-site"),
			hdr("Cookie", cookie, "Sec-Fetch-Site", "none"),
			hdr("Cookie", cookie, "Origin", "https://evil.example"),
		} {
			a := httpCheck(t, http.MethodPost, h)
			g.Expect(a.status).To(gomega.Equal(http.StatusForbidden), "%v", h)
			g.Expect(a.reason).To(gomega.Equal("CSRF"))
		}
		// nginx's auth_request subrequest is a GET: the location states the real method.
		a := httpCheck(t, http.MethodGet, hdr("Cookie", cookie, "X-Original-Method", "POST"))
		g.Expect(a.status).To(gomega.Equal(http.StatusForbidden))
		g.Expect(a.reason).To(gomega.Equal("CSRF"))
		a = httpCheck(t, http.MethodGet, hdr("Cookie", cookie, "X-Forwarded-Method", "DELETE"))
		g.Expect(a.reason).To(gomega.Equal("CSRF"))

		for _, site := range []string{"same-origin", "same-site"} {
			a := httpCheck(t, http.MethodPost, hdr("Cookie", cookie, "Sec-Fetch-Site", site))
			g.Expect(a.status).To(gomega.Equal(http.StatusOK), site)
			g.Expect(a.header.Get("X-Keycap-Auth-Method")).To(gomega.Equal("session"))
			a = httpCheck(t, http.MethodGet, hdr("Cookie", cookie, "Sec-Fetch-Site", site, "X-Original-Method", "PUT"))
			g.Expect(a.status).To(gomega.Equal(http.StatusOK), site)
		}
		// A credential header is no CSRF risk: browsers do not attach it.
		a = httpCheck(t, http.MethodPost, hdr("Cookie", cookie, "X-Api-Key", key))
		g.Expect(a.status).To(gomega.Equal(http.StatusOK))

		r := grpcCheck(t, c, "POST", map[string]string{"cookie": cookie})
		g.Expect(r.code).To(gomega.Equal(codes.PermissionDenied))
		g.Expect(r.http).To(gomega.Equal(http.StatusForbidden))
		g.Expect(r.reason).To(gomega.Equal("CSRF"))
		r = grpcCheck(t, c, "DELETE", map[string]string{"cookie": cookie, "sec-fetch-site": "cross-site"})
		g.Expect(r.reason).To(gomega.Equal("CSRF"))
		r = grpcCheck(t, c, "POST", map[string]string{"cookie": cookie, "sec-fetch-site": "same-origin"})
		g.Expect(r.code).To(gomega.Equal(codes.OK))
		g.Expect(r.headers).To(gomega.HaveKeyWithValue("x-keycap-auth-method", "session"))
	})
}

// sessionDenied waits until both transports refuse the cookie with 401 and reason.
func sessionDenied(t *testing.T, c authv3.AuthorizationClient, cookie, reason string) {
	t.Helper()
	g := gomega.NewWithT(t)
	g.Eventually(func() string {
		return httpCheck(t, http.MethodGet, hdr("Cookie", cookie)).reason
	}).WithTimeout(revocationTimeout).WithPolling(10 * time.Millisecond).Should(gomega.Equal(reason))
	g.Expect(httpCheck(t, http.MethodGet, hdr("Cookie", cookie)).status).To(gomega.Equal(http.StatusUnauthorized))
	r := grpcCheck(t, c, "GET", map[string]string{"cookie": cookie})
	g.Expect(r.code).To(gomega.Equal(codes.Unauthenticated))
	g.Expect(r.reason).To(gomega.Equal(reason))
}

func sessionAllowed(t *testing.T, c authv3.AuthorizationClient, cookie string) {
	t.Helper()
	g := gomega.NewWithT(t)
	g.Expect(httpCheck(t, http.MethodGet, hdr("Cookie", cookie)).status).To(gomega.Equal(http.StatusOK))
	g.Expect(grpcCheck(t, c, "GET", map[string]string{"cookie": cookie}).code).To(gomega.Equal(codes.OK))
}

func TestSessionEnds(t *testing.T) {
	ns := newNamespace(t)
	c := grpcClient(t)

	t.Run("a disabled credential", func(t *testing.T) {
		key, k := createApiKey(t, ns, "disabled", nil)
		cookie := sessionCookie(loginLink(t, key, false))
		sessionAllowed(t, c, cookie)
		setDisabled(t, k, true)
		sessionDenied(t, c, cookie, "DISABLED")
		setDisabled(t, k, false)
		gomega.NewWithT(t).Eventually(func() int { return httpCheck(t, http.MethodGet, hdr("Cookie", cookie)).status }).
			WithTimeout(propagationTimeout).Should(gomega.Equal(http.StatusOK))
	})

	t.Run("a deleted credential", func(t *testing.T) {
		key, k := createApiKey(t, ns, "deleted", nil)
		cookie := sessionCookie(loginLink(t, key, false))
		sessionAllowed(t, c, cookie)
		gomega.NewWithT(t).Expect(world.client.Delete(context.Background(), k)).To(gomega.Succeed())
		sessionDenied(t, c, cookie, "SESSION_ENDED")
	})

	t.Run("an agent session whose parent became inactive", func(t *testing.T) {
		_, parent := createApiKey(t, ns, "account", nil)
		agentKey, _ := createAgentKey(t, ns, "bot", "account", []string{"videos:read"})
		cookie := sessionCookie(loginLink(t, agentKey, true))
		g := gomega.NewWithT(t)
		a := httpCheck(t, http.MethodGet, hdr("Cookie", cookie))
		g.Expect(a.status).To(gomega.Equal(http.StatusOK))
		g.Expect(a.header.Get("X-Keycap-Kind")).To(gomega.Equal("AgentKey"))
		g.Expect(a.header.Get("X-Keycap-Agent")).To(gomega.Equal("agent-bot"))
		g.Expect(a.header.Get("X-Keycap-Parent")).To(gomega.Equal("account"))
		g.Expect(a.header.Get("X-Keycap-Auth-Method")).To(gomega.Equal("session"))
		setDisabled(t, parent, true)
		sessionDenied(t, c, cookie, "PARENT_INACTIVE")
	})

	t.Run("log out everywhere: spec.sessions.notBefore set after the login", func(t *testing.T) {
		key, k := createApiKey(t, ns, "logout", nil)
		cookie := sessionCookie(loginLink(t, key, false))
		sessionAllowed(t, c, cookie)
		g := gomega.NewWithT(t)
		at := metav1.NewTime(world.clock.Now().Add(time.Second))
		patch := &keycapv1alpha1.ApiKey{}
		g.Expect(world.client.Get(context.Background(), client.ObjectKeyFromObject(k), patch)).To(gomega.Succeed())
		base := patch.DeepCopy()
		patch.Spec.Sessions = &keycapv1alpha1.SessionPolicy{NotBefore: &at}
		g.Expect(world.client.Patch(context.Background(), patch, client.MergeFrom(base))).To(gomega.Succeed())
		sessionDenied(t, c, cookie, "SESSION_ENDED")
		// The key itself still works, and a login after notBefore starts a session that stands.
		g.Expect(httpCheck(t, http.MethodGet, hdr("X-Api-Key", key)).status).To(gomega.Equal(http.StatusOK))
		world.clock.Step(2 * time.Second)
		fresh := sessionCookie(loginLink(t, key, false))
		sessionAllowed(t, c, fresh)
	})
}

package sso

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/onsi/gomega"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/keycap-dev/keycap/internal/session"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// fakeCredentials knows keys by their plaintext (the data plane knows them by digest; the
// handlers do not care) and judges sessions by whether their credential is still active.
type fakeCredentials struct {
	keys     map[string]Login
	inactive map[string]bool
}

func (f *fakeCredentials) Ready() bool { return true }

func (f *fakeCredentials) ByKey(key string) (Login, bool) {
	l, ok := f.keys[key]
	return l, ok && !f.inactive[l.Name]
}

func (f *fakeCredentials) ByHeaders(h http.Header) (Login, bool) {
	return f.ByKey(h.Get("x-api-key"))
}

func (f *fakeCredentials) Judge(c *session.Claims) (Principal, bool) {
	if f.inactive[c.Name] {
		return Principal{}, false
	}
	return Principal{Kind: c.Kind, Namespace: c.Namespace, Name: c.Name, Parent: c.Parent}, true
}

type fixture struct {
	h     *Handler
	mux   *http.ServeMux
	clock *clocktesting.FakeClock
	creds *fakeCredentials
	keys  session.KeySet
}

func newFixture(t *testing.T, mutate ...func(*Options)) *fixture {
	t.Helper()
	clk := clocktesting.NewFakeClock(t0)
	ks, _, err := session.Plan(session.KeySet{}, t0, session.Policy{}, session.NewKey)
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{clock: clk, keys: ks, creds: &fakeCredentials{
		keys: map[string]Login{
			"kc_apikey":  {Identity: session.Identity{Kind: "ApiKey", Namespace: "acme", Name: "backend", KeyID: "k1"}},
			"kc_short":   {Identity: session.Identity{Kind: "ApiKey", Namespace: "acme", Name: "short", KeyID: "k3"}, SessionLifetime: time.Hour},
			"kcagent_ok": {Identity: session.Identity{Kind: "AgentKey", Namespace: "acme", Name: "bot", Parent: "backend", KeyID: "k2"}},
		},
		inactive: map[string]bool{},
	}}
	opts := Options{
		PortalURL:      "https://portal.example.com/",
		AgentPortalURL: "https://portal.example.com/agent",
		LoginURL:       "https://portal.example.com/login",
		ReturnTo:       []string{"https://portal.example.com/app/"},
		BaseURL:        "https://keycap.example.com",
		Clock:          clk,
	}
	for _, m := range mutate {
		m(&opts)
	}
	f.h = New(opts, f.creds, func() *session.KeySet { return &f.keys }, &MemoryClaimer{Clock: clk})
	f.mux = http.NewServeMux()
	f.h.Register(f.mux)
	return f
}

// answer is what a handler wrote: status, headers and cookies (read from a recorder, so there is
// no body to close).
type answer struct {
	StatusCode int
	Header     http.Header
	Body       *bytes.Reader
	cookies    []*http.Cookie
}

// Cookies returns the cookies the answer sets.
func (a answer) Cookies() []*http.Cookie { return a.cookies }

func (f *fixture) do(method, target string, header http.Header) answer {
	r := httptest.NewRequest(method, target, nil)
	r.RemoteAddr = "192.0.2.1:1234"
	for k, v := range header {
		r.Header[k] = v
	}
	w := httptest.NewRecorder()
	f.mux.ServeHTTP(w, r)
	resp := w.Result()
	return answer{StatusCode: resp.StatusCode, Header: resp.Header, Body: bytes.NewReader(w.Body.Bytes()), cookies: resp.Cookies()}
}

func sessionCookie(resp answer) *http.Cookie {
	for _, c := range resp.Cookies() {
		if c.Name == session.CookieName {
			return c
		}
	}
	return nil
}

func TestKeyLogin(t *testing.T) {
	for name, tc := range map[string]struct {
		target   string
		location string
		cookie   bool
	}{
		"an ApiKey's key":                            {"/auth/apikey-login?key=kc_apikey", "https://portal.example.com/", true},
		"an AgentKey's key on the agent link":        {"/auth/agent-apikey-login?key=kcagent_ok", "https://portal.example.com/agent", true},
		"an allowed returnTo":                        {"/auth/apikey-login?key=kc_apikey&returnTo=" + url.QueryEscape("https://portal.example.com/app/videos?x=1"), "https://portal.example.com/app/videos?x=1", true},
		"a returnTo outside the allow-list":          {"/auth/apikey-login?key=kc_apikey&returnTo=" + url.QueryEscape("https://evil.example/app/"), "https://portal.example.com/", true},
		"a returnTo on the allowed host, other path": {"/auth/apikey-login?key=kc_apikey&returnTo=" + url.QueryEscape("https://portal.example.com/application"), "https://portal.example.com/", true},
		"a returnTo with credentials":                {"/auth/apikey-login?key=kc_apikey&returnTo=" + url.QueryEscape("https://x@portal.example.com/app/"), "https://portal.example.com/", true},
		"a protocol-relative returnTo":               {"/auth/apikey-login?key=kc_apikey&returnTo=" + url.QueryEscape("//evil.example/app/"), "https://portal.example.com/", true},
		"an AgentKey's key on the ApiKey link":       {"/auth/apikey-login?key=kcagent_ok", "https://portal.example.com/login?error=invalid_link", false},
		"an ApiKey's key on the agent link":          {"/auth/agent-apikey-login?key=kc_apikey", "https://portal.example.com/login?error=invalid_link", false},
		"an unknown key":                             {"/auth/apikey-login?key=kc_nope", "https://portal.example.com/login?error=invalid_link", false},
		"no key":                                     {"/auth/apikey-login", "https://portal.example.com/login?error=invalid_link", false},
		"an empty key":                               {"/auth/apikey-login?key=", "https://portal.example.com/login?error=invalid_link", false},
		"a repeated key":                             {"/auth/apikey-login?key=kc_apikey&key=kc_apikey", "https://portal.example.com/login?error=invalid_link", false},
		"a query that does not parse":                {"/auth/apikey-login?key=%zz", "https://portal.example.com/login?error=invalid_link", false},
		"non-UTF-8":                                  {"/auth/apikey-login?key=%ff%fe", "https://portal.example.com/login?error=invalid_link", false},
		"a huge key":                                 {"/auth/apikey-login?key=" + strings.Repeat("k", 60000), "https://portal.example.com/login?error=invalid_link", false},
	} {
		t.Run(name, func(t *testing.T) {
			g := gomega.NewWithT(t)
			f := newFixture(t)
			resp := f.do(http.MethodGet, tc.target, nil)
			g.Expect(resp.StatusCode).To(gomega.Equal(http.StatusFound))
			g.Expect(resp.Header.Get("Location")).To(gomega.Equal(tc.location))
			g.Expect(resp.Header.Get("Referrer-Policy")).To(gomega.Equal("no-referrer"))
			g.Expect(resp.Header.Get("Cache-Control")).To(gomega.Equal("no-store"))
			c := sessionCookie(resp)
			if !tc.cookie {
				g.Expect(c).To(gomega.BeNil(), "a failed login sets no cookie")
				return
			}
			g.Expect(c).NotTo(gomega.BeNil())
			g.Expect(c.HttpOnly).To(gomega.BeTrue())
			g.Expect(c.Secure).To(gomega.BeTrue())
			g.Expect(c.SameSite).To(gomega.Equal(http.SameSiteLaxMode))
			g.Expect(c.Path).To(gomega.Equal("/"))
			g.Expect(c.MaxAge).To(gomega.Equal(int((30 * 24 * time.Hour).Seconds())))
			claims, err := f.keys.Open(session.PurposeSession, c.Value, t0)
			g.Expect(err).NotTo(gomega.HaveOccurred())
			g.Expect(claims.ExpiresAt).To(gomega.Equal(t0.Add(30 * 24 * time.Hour)))
		})
	}
}

func TestSessionLifetimeOverride(t *testing.T) {
	g := gomega.NewWithT(t)
	f := newFixture(t)
	resp := f.do(http.MethodGet, "/auth/apikey-login?key=kc_short", nil)
	c := sessionCookie(resp)
	g.Expect(c.MaxAge).To(gomega.Equal(3600))
}

func TestDisabledKeyCannotLogIn(t *testing.T) {
	g := gomega.NewWithT(t)
	f := newFixture(t)
	f.creds.inactive["backend"] = true
	resp := f.do(http.MethodGet, "/auth/apikey-login?key=kc_apikey", nil)
	g.Expect(resp.Header.Get("Location")).To(gomega.HaveSuffix("error=invalid_link"))
	g.Expect(sessionCookie(resp)).To(gomega.BeNil())
}

func TestFailedLoginsAreRateLimitedPerAddress(t *testing.T) {
	g := gomega.NewWithT(t)
	f := newFixture(t, func(o *Options) { o.FailedLoginBurst, o.FailedLoginEvery = 3, 10*time.Second })
	for range 3 {
		g.Expect(f.do(http.MethodGet, "/auth/apikey-login?key=wrong", nil).StatusCode).To(gomega.Equal(http.StatusFound))
	}
	resp := f.do(http.MethodGet, "/auth/apikey-login?key=kc_apikey", nil)
	g.Expect(resp.StatusCode).To(gomega.Equal(http.StatusTooManyRequests), "even a valid key waits out the burst")
	g.Expect(resp.Header.Get("Retry-After")).To(gomega.Equal("10"))
	g.Expect(resp.Header.Get("Cache-Control")).To(gomega.Equal("no-store"))

	other := httptest.NewRequest(http.MethodGet, "/auth/apikey-login?key=kc_apikey", nil)
	other.RemoteAddr = "192.0.2.2:1"
	w := httptest.NewRecorder()
	f.mux.ServeHTTP(w, other)
	g.Expect(w.Code).To(gomega.Equal(http.StatusFound), "another address is not limited")

	f.clock.Step(10 * time.Second)
	g.Expect(f.do(http.MethodGet, "/auth/apikey-login?key=kc_apikey", nil).StatusCode).To(gomega.Equal(http.StatusFound))
	g.Expect(f.do(http.MethodPost, "/auth/login-links", http.Header{"X-Api-Key": {"wrong"}}).StatusCode).To(gomega.Equal(http.StatusUnauthorized))
	g.Expect(f.do(http.MethodPost, "/auth/login-links", http.Header{"X-Api-Key": {"kc_apikey"}}).StatusCode).To(gomega.Equal(http.StatusTooManyRequests))
}

func createLink(t *testing.T, f *fixture, key string) linkAnswer {
	t.Helper()
	resp := f.do(http.MethodPost, "/auth/login-links", http.Header{"X-Api-Key": {key}})
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("POST /auth/login-links: %d", resp.StatusCode)
	}
	var a linkAnswer
	if err := json.NewDecoder(resp.Body).Decode(&a); err != nil {
		t.Fatal(err)
	}
	return a
}

func TestLoginLinkIsSingleUse(t *testing.T) {
	g := gomega.NewWithT(t)
	f := newFixture(t)
	a := createLink(t, f, "kcagent_ok")
	g.Expect(a.ExpiresAt).To(gomega.Equal(t0.Add(MaxLinkTTL)))
	g.Expect(a.URL).To(gomega.HavePrefix("https://keycap.example.com/auth/login-link?token="))
	path := strings.TrimPrefix(a.URL, "https://keycap.example.com")

	resp := f.do(http.MethodGet, path, nil)
	g.Expect(resp.StatusCode).To(gomega.Equal(http.StatusFound))
	g.Expect(resp.Header.Get("Location")).To(gomega.Equal("https://portal.example.com/agent"))
	g.Expect(sessionCookie(resp)).NotTo(gomega.BeNil())

	resp = f.do(http.MethodGet, path, nil)
	g.Expect(resp.Header.Get("Location")).To(gomega.HaveSuffix("error=invalid_link"), "the second use lands on the login page")
	g.Expect(sessionCookie(resp)).To(gomega.BeNil())
}

func TestLoginLinkRefusals(t *testing.T) {
	g := gomega.NewWithT(t)
	f := newFixture(t)
	expired := strings.TrimPrefix(createLink(t, f, "kc_apikey").URL, "https://keycap.example.com")
	disabled := strings.TrimPrefix(createLink(t, f, "kcagent_ok").URL, "https://keycap.example.com")
	f.creds.inactive["bot"] = true

	g.Expect(f.do(http.MethodPost, "/auth/login-links", http.Header{"X-Api-Key": {"nope"}}).StatusCode).To(gomega.Equal(http.StatusUnauthorized))
	g.Expect(f.do(http.MethodPost, "/auth/login-links", nil).StatusCode).To(gomega.Equal(http.StatusUnauthorized))
	g.Expect(f.do(http.MethodGet, "/auth/login-links", http.Header{"X-Api-Key": {"kc_apikey"}}).StatusCode).To(gomega.Equal(http.StatusMethodNotAllowed))

	resp := f.do(http.MethodGet, disabled, nil)
	g.Expect(resp.Header.Get("Location")).To(gomega.HaveSuffix("error=invalid_link"), "the credential was disabled after the link was made")
	f.clock.Step(MaxLinkTTL)
	resp = f.do(http.MethodGet, expired, nil)
	g.Expect(resp.Header.Get("Location")).To(gomega.HaveSuffix("error=invalid_link"), "an expired link")

	// A session cookie is no link.
	c := sessionCookie(f.do(http.MethodGet, "/auth/apikey-login?key=kc_apikey", nil))
	resp = f.do(http.MethodGet, "/auth/login-link?token="+c.Value, nil)
	g.Expect(resp.Header.Get("Location")).To(gomega.HaveSuffix("error=invalid_link"))
	for _, bad := range []string{"", "?token=", "?token=abc", "?token=%ff", "?token=" + strings.Repeat("A", 5000)} {
		resp := f.do(http.MethodGet, "/auth/login-link"+bad, nil)
		g.Expect(resp.StatusCode).To(gomega.Equal(http.StatusFound), bad)
		g.Expect(resp.Header.Get("Location")).To(gomega.HaveSuffix("error=invalid_link"), bad)
	}
}

func TestPortalAndLoginPages(t *testing.T) {
	g := gomega.NewWithT(t)
	f := newFixture(t)
	c := sessionCookie(f.do(http.MethodGet, "/auth/agent-apikey-login?key=kcagent_ok", nil))
	portal := func(cookie string) answer {
		return f.do(http.MethodGet, "/auth/portal", http.Header{"Cookie": {"other=1; " + session.CookieName + "=" + cookie}})
	}
	resp := portal(c.Value)
	g.Expect(resp.StatusCode).To(gomega.Equal(http.StatusOK))
	body := readAll(resp)
	g.Expect(body).To(gomega.ContainSubstring(`<dd id="name">bot</dd>`))
	g.Expect(body).To(gomega.ContainSubstring(`<dd id="parent">backend</dd>`))

	for name, cookie := range map[string]string{
		"forged":    "AQAAAAB" + strings.Repeat("x", 80),
		"truncated": c.Value[:len(c.Value)-4],
		"empty":     "",
		"non-UTF-8": "\xff\xfe",
	} {
		resp := portal(cookie)
		g.Expect(resp.StatusCode).To(gomega.Equal(http.StatusFound), name)
		g.Expect(resp.Header.Get("Location")).To(gomega.HaveSuffix("error=session_ended"), name)
	}
	f.creds.inactive["bot"] = true
	g.Expect(portal(c.Value).Header.Get("Location")).To(gomega.HaveSuffix("error=session_ended"), "a disabled credential ends the session")

	login := f.do(http.MethodGet, "/auth/login?error=invalid_link", nil)
	g.Expect(readAll(login)).To(gomega.ContainSubstring("invalid or has expired"))
	g.Expect(readAll(f.do(http.MethodGet, "/auth/login?error=%3Cscript%3E", nil))).NotTo(gomega.ContainSubstring("<script>"), "an unknown code shows nothing")

	out := f.do(http.MethodPost, "/auth/logout", nil)
	g.Expect(out.StatusCode).To(gomega.Equal(http.StatusFound))
	g.Expect(sessionCookie(out).MaxAge).To(gomega.BeNumerically("<", 0))
}

func readAll(resp answer) string {
	var b strings.Builder
	buf := make([]byte, 4096)
	for {
		n, err := resp.Body.Read(buf)
		b.Write(buf[:n])
		if err != nil {
			return b.String()
		}
	}
}

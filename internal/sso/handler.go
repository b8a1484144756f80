// Package sso serves keycap's SSO login links and browser sessions on the data plane's HTTP port:
//
//   - GET /auth/apikey-login?key= and GET /auth/agent-apikey-login?key= (the links CapData hands
//     out): a valid key of an active ApiKey (an AgentKey whose parent is active, for the agent
//     link) sets the session cookie and answers 302 to the portal; anything else answers 302 to
//     the login page with the one message code invalid_link, so keys cannot be probed.
//   - POST /auth/login-links with the credential in a header: a single-use link valid for at most
//     MaxLinkTTL (see links.go), redeemed at GET /auth/login-link?token=.
//   - GET /auth/login and GET /auth/portal: a minimal login page showing the message of a code,
//     and a minimal portal page showing who the session is, so the flow works out of the box.
//   - POST /auth/logout clears the cookie.
//
// Every answer carries Referrer-Policy: no-referrer and Cache-Control: no-store (the key is in
// the URL of the seed's links), and nothing here logs a request's URL. Failed logins are rate
// limited per client address (429). The handlers judge credentials through the Credentials
// interface, which the data plane implements with the same decision /check makes.
package sso

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"k8s.io/utils/clock"

	"github.com/keycap-dev/keycap/internal/session"
)

// Paths on the HTTP port.
const (
	PathAPIKeyLogin      = "/auth/apikey-login"
	PathAgentAPIKeyLogin = "/auth/agent-apikey-login"
	PathLoginLinks       = "/auth/login-links"
	PathRedeemLink       = "/auth/login-link"
	PathLoginPage        = "/auth/login"
	PathPortalPage       = "/auth/portal"
	PathLogout           = "/auth/logout"
)

// Message codes in the login page's ?error= (fixed, never the reason of a failure).
const (
	// CodeInvalidLink answers every failed login link: unknown, malformed, disabled, expired,
	// wrong kind, already used.
	CodeInvalidLink = "invalid_link"
	// CodeSessionEnded: the portal's session is missing, expired or ended.
	CodeSessionEnded = "session_ended"
	// CodeLoggedOut follows a logout.
	CodeLoggedOut = "logged_out"
	// CodeUnavailable: the data plane is not ready to log anyone in yet.
	CodeUnavailable = "unavailable"
)

// Principal is who a session is, as the portal page shows it.
type Principal struct {
	Kind, Namespace, Name string
	// Agent and Parent are set for an agent key.
	Agent, Parent string
	// Scopes are the effective scopes, comma-separated.
	Scopes string
	// SessionLifetime is the credential's own session lifetime (zero: the default).
	SessionLifetime time.Duration
}

// Login is a credential someone may log in with.
type Login struct {
	session.Identity
	// SessionLifetime is the credential's own session lifetime (spec.sessions.duration); zero
	// means the configured default.
	SessionLifetime time.Duration
}

// Credentials judge credentials for the SSO endpoints. The data plane implements them with the
// decision of /check, so a login is refused exactly when a request would be.
type Credentials interface {
	// Ready reports whether the data plane may decide (its index has synced).
	Ready() bool
	// ByKey judges a presented key: ok only for an active ApiKey or AgentKey (and an AgentKey's
	// active parent).
	ByKey(key string) (Login, bool)
	// ByHeaders judges the one credential in a request's credential headers (x-api-key, Bearer,
	// the extra headers), as /check reads them.
	ByHeaders(h http.Header) (Login, bool)
	// Judge reports who a session or link's credential is, ok only while the credential is active
	// now and the claims still stand for it (session.Claims.Stands).
	Judge(c *session.Claims) (Principal, bool)
}

// Options configure the SSO endpoints.
type Options struct {
	// PortalURL is where an ApiKey login lands (default: keycap's own portal page).
	PortalURL string
	// AgentPortalURL is where an AgentKey login lands (default PortalURL).
	AgentPortalURL string
	// LoginURL is the login page failures are sent to (default: keycap's own).
	LoginURL string
	// ReturnTo lists URL prefixes ("https://portal.example.com/app/") a returnTo parameter may
	// name; any other returnTo is ignored, so the endpoints are no open redirect.
	ReturnTo []string
	// BaseURL is the absolute URL the /auth/ endpoints are reached at, for the URLs of login links
	// (default: http://<the request's Host>).
	BaseURL string
	// SessionLifetime is a session's lifetime unless its credential sets one (default 30 days,
	// at most session.MaxSessionLifetime).
	SessionLifetime time.Duration
	// LinkTTL is a login link's validity (default and maximum MaxLinkTTL).
	LinkTTL time.Duration
	// CookieDomain is the session cookie's Domain (default: none, the host that set it).
	CookieDomain string
	// FailedLoginBurst failed logins in a row are allowed per client address, then one per
	// FailedLoginEvery (defaults 10 and 6s).
	FailedLoginBurst int
	FailedLoginEvery time.Duration
	// Clock defaults to the real clock.
	Clock clock.PassiveClock
}

// Handler serves the SSO endpoints.
type Handler struct {
	opts    Options
	creds   Credentials
	keys    func() *session.KeySet
	claimer Claimer
	limiter *failureLimiter
}

// New returns a Handler. keys returns the current session key set (nil until read).
func New(opts Options, creds Credentials, keys func() *session.KeySet, claimer Claimer) *Handler {
	if opts.Clock == nil {
		opts.Clock = clock.RealClock{}
	}
	if opts.PortalURL == "" {
		opts.PortalURL = PathPortalPage
	}
	if opts.AgentPortalURL == "" {
		opts.AgentPortalURL = opts.PortalURL
	}
	if opts.LoginURL == "" {
		opts.LoginURL = PathLoginPage
	}
	if opts.SessionLifetime <= 0 {
		opts.SessionLifetime = session.DefaultSessionLifetime
	}
	opts.SessionLifetime = min(opts.SessionLifetime, session.MaxSessionLifetime)
	if opts.LinkTTL <= 0 || opts.LinkTTL > MaxLinkTTL {
		opts.LinkTTL = MaxLinkTTL
	}
	if opts.FailedLoginBurst <= 0 {
		opts.FailedLoginBurst = 10
	}
	if opts.FailedLoginEvery <= 0 {
		opts.FailedLoginEvery = 6 * time.Second
	}
	return &Handler{opts: opts, creds: creds, keys: keys, claimer: claimer,
		limiter: newFailureLimiter(opts.FailedLoginBurst, opts.FailedLoginEvery, opts.Clock)}
}

// Register adds the endpoints to mux.
func (h *Handler) Register(mux *http.ServeMux) {
	mux.Handle(PathAPIKeyLogin, h.wrap(func(w http.ResponseWriter, r *http.Request) { h.keyLogin(w, r, PathAPIKeyLogin, false) }))
	mux.Handle(PathAgentAPIKeyLogin, h.wrap(func(w http.ResponseWriter, r *http.Request) { h.keyLogin(w, r, PathAgentAPIKeyLogin, true) }))
	mux.Handle(PathLoginLinks, h.wrap(h.createLink))
	mux.Handle(PathRedeemLink, h.wrap(h.redeemLink))
	mux.Handle(PathLoginPage, h.wrap(h.loginPage))
	mux.Handle(PathPortalPage, h.wrap(h.portalPage))
	mux.Handle(PathLogout, h.wrap(h.logout))
}

// wrap sets the headers every SSO answer carries and turns a panic into a plain refusal.
func (h *Handler) wrap(f http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		hd.Set("Referrer-Policy", "no-referrer")
		hd.Set("Cache-Control", "no-store")
		hd.Set("X-Content-Type-Options", "nosniff")
		f(w, r)
	})
}

// clientAddress is the address failed logins are counted against: the peer's IP. A proxy in
// front makes every client one address; rate limiting then protects keycap, not one client.
func clientAddress(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// onlyParam returns the one value of a query parameter: ok false when it is missing, repeated
// or the query does not parse.
func onlyParam(r *http.Request, name string) (string, bool) {
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return "", false
	}
	v := q[name]
	if len(v) != 1 || v[0] == "" {
		return "", false
	}
	return v[0], true
}

// rateLimited answers 429 when client has failed too often; it reports whether it did.
func (h *Handler) rateLimited(w http.ResponseWriter, r *http.Request, endpoint string, asJSON bool) bool {
	ok, wait := h.limiter.allowed(clientAddress(r))
	if ok {
		return false
	}
	loginsTotal.WithLabelValues(endpoint, ResultRateLimited).Inc()
	secs := max(int((wait+time.Second-1)/time.Second), 1)
	w.Header().Set("Retry-After", strconv.Itoa(secs))
	msg := fmt.Sprintf("Too many failed logins from your address; try again in %d seconds.", secs)
	if asJSON {
		writeJSONError(w, http.StatusTooManyRequests, "too_many_requests", msg)
		return true
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(http.StatusTooManyRequests)
	_, _ = fmt.Fprintln(w, msg)
	return true
}

// keyLogin serves the seed's links: the key in the query.
func (h *Handler) keyLogin(w http.ResponseWriter, r *http.Request, endpoint string, agent bool) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		methodNotAllowed(w, "GET")
		return
	}
	if h.rateLimited(w, r, endpoint, false) {
		return
	}
	if !h.ready() {
		loginsTotal.WithLabelValues(endpoint, ResultUnavailable).Inc()
		h.toLogin(w, r, CodeUnavailable)
		return
	}
	key, ok := onlyParam(r, "key")
	var login Login
	if ok {
		login, ok = h.creds.ByKey(key)
	}
	wantKind := "ApiKey"
	if agent {
		wantKind = "AgentKey"
	}
	if !ok || login.Kind != wantKind {
		h.fail(w, r, endpoint)
		return
	}
	h.startSession(w, r, endpoint, login)
}

func (h *Handler) ready() bool {
	ks := h.keys()
	return h.creds.Ready() && ks != nil && ks.CanSeal(h.opts.Clock.Now())
}

// fail records a failed login and sends the browser to the login page.
func (h *Handler) fail(w http.ResponseWriter, r *http.Request, endpoint string) {
	h.limiter.failed(clientAddress(r))
	loginsTotal.WithLabelValues(endpoint, ResultInvalid).Inc()
	h.toLogin(w, r, CodeInvalidLink)
}

// startSession sets the cookie for login and redirects to the portal (or an allowed returnTo).
func (h *Handler) startSession(w http.ResponseWriter, r *http.Request, endpoint string, login Login) {
	now := h.opts.Clock.Now()
	ttl := h.opts.SessionLifetime
	if login.SessionLifetime > 0 {
		ttl = min(login.SessionLifetime, session.MaxSessionLifetime)
	}
	claims, err := session.NewClaims(login.Identity, now, ttl)
	var value string
	if err == nil {
		value, err = h.keys().Seal(session.PurposeSession, claims, now)
	}
	if err != nil {
		loginsTotal.WithLabelValues(endpoint, ResultUnavailable).Inc()
		h.toLogin(w, r, CodeUnavailable)
		return
	}
	http.SetCookie(w, &http.Cookie{
		Name:     session.CookieName,
		Value:    value,
		Path:     "/",
		Domain:   h.opts.CookieDomain,
		Expires:  claims.ExpiresAt,
		MaxAge:   int(claims.ExpiresAt.Sub(now) / time.Second),
		HttpOnly: true,
		Secure:   true,
		SameSite: http.SameSiteLaxMode,
	})
	loginsTotal.WithLabelValues(endpoint, ResultOK).Inc()
	target := h.opts.PortalURL
	if login.Kind == "AgentKey" {
		target = h.opts.AgentPortalURL
	}
	if rt, ok := onlyParam(r, "returnTo"); ok && h.returnToAllowed(rt) {
		target = rt
	}
	http.Redirect(w, r, target, http.StatusFound)
}

// returnToAllowed reports whether target is an absolute http(s) URL under one of the allowed
// prefixes: same scheme and host, and a path under the prefix's path on a segment boundary.
func (h *Handler) returnToAllowed(target string) bool {
	u, err := url.Parse(target)
	if err != nil || u.User != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") ||
		strings.ContainsAny(target, "\\\r\n\t") {
		return false
	}
	for _, prefix := range h.opts.ReturnTo {
		p, err := url.Parse(prefix)
		if err != nil || !strings.EqualFold(p.Scheme, u.Scheme) || !strings.EqualFold(p.Host, u.Host) {
			continue
		}
		base := strings.TrimSuffix(p.Path, "/")
		if u.Path == base || strings.HasPrefix(u.Path, base+"/") || base == "" {
			return true
		}
	}
	return false
}

// toLogin redirects to the login page with a fixed message code.
func (h *Handler) toLogin(w http.ResponseWriter, r *http.Request, code string) {
	target := h.opts.LoginURL
	sep := "?"
	if strings.Contains(target, "?") {
		sep = "&"
	}
	http.Redirect(w, r, target+sep+"error="+code, http.StatusFound)
}

// linkAnswer is the body of POST /auth/login-links.
type linkAnswer struct {
	URL       string    `json:"url"`
	ExpiresAt time.Time `json:"expiresAt"`
}

// createLink answers a single-use login link for the credential in the request's headers.
func (h *Handler) createLink(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		methodNotAllowed(w, "POST")
		return
	}
	if h.rateLimited(w, r, PathLoginLinks, true) {
		return
	}
	if !h.ready() {
		loginsTotal.WithLabelValues(PathLoginLinks, ResultUnavailable).Inc()
		writeJSONError(w, http.StatusServiceUnavailable, "unavailable", "Login links are not available yet; try again shortly.")
		return
	}
	login, ok := h.creds.ByHeaders(r.Header)
	if !ok {
		h.limiter.failed(clientAddress(r))
		loginsTotal.WithLabelValues(PathLoginLinks, ResultInvalid).Inc()
		w.Header().Set("WWW-Authenticate", `Bearer realm="keycap"`)
		writeJSONError(w, http.StatusUnauthorized, "unauthorized", "Invalid or expired API key")
		return
	}
	now := h.opts.Clock.Now()
	claims, err := session.NewClaims(login.Identity, now, h.opts.LinkTTL)
	var token string
	if err == nil {
		token, err = h.keys().Seal(session.PurposeLink, claims, now)
	}
	if err != nil {
		loginsTotal.WithLabelValues(PathLoginLinks, ResultUnavailable).Inc()
		writeJSONError(w, http.StatusServiceUnavailable, "unavailable", "Login links are not available yet; try again shortly.")
		return
	}
	base := strings.TrimSuffix(h.opts.BaseURL, "/")
	if base == "" {
		base = "http://" + r.Host
	}
	loginsTotal.WithLabelValues(PathLoginLinks, ResultOK).Inc()
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(linkAnswer{URL: base + PathRedeemLink + "?token=" + token, ExpiresAt: claims.ExpiresAt})
}

// redeemLink turns a single-use link into a session, once.
func (h *Handler) redeemLink(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		methodNotAllowed(w, "GET")
		return
	}
	if h.rateLimited(w, r, PathRedeemLink, false) {
		return
	}
	if !h.ready() {
		loginsTotal.WithLabelValues(PathRedeemLink, ResultUnavailable).Inc()
		h.toLogin(w, r, CodeUnavailable)
		return
	}
	token, ok := onlyParam(r, "token")
	if !ok {
		h.fail(w, r, PathRedeemLink)
		return
	}
	claims, err := h.keys().Open(session.PurposeLink, token, h.opts.Clock.Now())
	if err != nil || claims.ExpiresAt.Sub(claims.IssuedAt) > MaxLinkTTL {
		h.fail(w, r, PathRedeemLink)
		return
	}
	who, ok := h.creds.Judge(&claims)
	if !ok {
		h.fail(w, r, PathRedeemLink)
		return
	}
	// Claim last: a link refused for another reason is not used up.
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	if err := h.claimer.Claim(ctx, claims.ID, claims.ExpiresAt); err != nil {
		if errors.Is(err, ErrLinkUsed) {
			h.limiter.failed(clientAddress(r))
			loginsTotal.WithLabelValues(PathRedeemLink, ResultUsed).Inc()
			h.toLogin(w, r, CodeInvalidLink)
			return
		}
		loginsTotal.WithLabelValues(PathRedeemLink, ResultUnavailable).Inc()
		h.toLogin(w, r, CodeUnavailable)
		return
	}
	h.startSession(w, r, PathRedeemLink, Login{Identity: claims.Identity, SessionLifetime: who.SessionLifetime})
}

// logout clears the cookie. It ends this browser's session only; "log out everywhere" is the
// credential's spec.sessions.notBefore.
func (h *Handler) logout(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		methodNotAllowed(w, "POST")
		return
	}
	http.SetCookie(w, &http.Cookie{Name: session.CookieName, Value: "", Path: "/", Domain: h.opts.CookieDomain,
		MaxAge: -1, HttpOnly: true, Secure: true, SameSite: http.SameSiteLaxMode})
	h.toLogin(w, r, CodeLoggedOut)
}

// Principal opens the session cookie of r and judges it: ok only for a live session.
func (h *Handler) Principal(r *http.Request) (Principal, bool) {
	value, found, ok := session.FromCookieHeaders(r.Header.Values("Cookie"))
	ks := h.keys()
	if !found || !ok || ks == nil || !h.creds.Ready() {
		return Principal{}, false
	}
	claims, err := ks.Open(session.PurposeSession, value, h.opts.Clock.Now())
	if err != nil {
		return Principal{}, false
	}
	return h.creds.Judge(&claims)
}

func methodNotAllowed(w http.ResponseWriter, allow string) {
	w.Header().Set("Allow", allow)
	writeJSONError(w, http.StatusMethodNotAllowed, "method_not_allowed", "Use "+allow+".")
}

func writeJSONError(w http.ResponseWriter, status int, code, message string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]map[string]string{"error": {"code": code, "message": message}})
}

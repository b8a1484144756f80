package main

import (
	"flag"
	"net/url"
	"strings"
	"time"

	"github.com/keycap-dev/keycap/internal/session"
	"github.com/keycap-dev/keycap/internal/sso"
)

// ssoFlags configure the data plane's SSO login links and sessions (internal/sso).
type ssoFlags struct {
	portalURL, agentPortalURL, loginURL, baseURL string
	returnTo, allowedOrigins, cookieDomain       string
	sessionDuration                              time.Duration
}

func (f *ssoFlags) bind(fs *flag.FlagSet) {
	fs.StringVar(&f.portalURL, "sso-portal-url", "",
		"Where an ApiKey's SSO login lands (302). Default: keycap's own minimal portal page, "+sso.PathPortalPage+" on the HTTP port.")
	fs.StringVar(&f.agentPortalURL, "sso-agent-portal-url", "", "Where an AgentKey's SSO login lands. Default: --sso-portal-url.")
	fs.StringVar(&f.loginURL, "sso-login-url", "",
		"The login page a failed login is sent to, with ?error=<code>. Default: keycap's own minimal login page, "+sso.PathLoginPage+".")
	fs.StringVar(&f.returnTo, "sso-return-to", "",
		"Comma-separated URL prefixes (https://portal.example.com/app/) a login's returnTo parameter may name; any other returnTo is ignored.")
	fs.StringVar(&f.baseURL, "sso-base-url", "",
		"Absolute URL the /auth/ endpoints are reached at, for the links POST /auth/login-links answers. Default: http://<the request's Host>.")
	fs.StringVar(&f.allowedOrigins, "sso-allowed-origins", "",
		"Comma-separated Origins (https://portal.example.com) that count as same-site evidence for an unsafe request only the session cookie authenticates, when the browser sends no Sec-Fetch-Site. Default: the origins of the portal URLs and of --sso-return-to.")
	fs.StringVar(&f.cookieDomain, "sso-cookie-domain", "", "Domain of the session cookie. Default: none (the host that set it).")
	fs.DurationVar(&f.sessionDuration, "sso-session-duration", session.DefaultSessionLifetime,
		"Lifetime of an SSO session unless its credential's spec.sessions.duration says otherwise (at most 2160h).")
}

func (f *ssoFlags) options() sso.Options {
	return sso.Options{
		PortalURL:       f.portalURL,
		AgentPortalURL:  f.agentPortalURL,
		LoginURL:        f.loginURL,
		ReturnTo:        splitList(f.returnTo),
		BaseURL:         f.baseURL,
		SessionLifetime: f.sessionDuration,
		CookieDomain:    f.cookieDomain,
	}
}

// origins are the Origins the CSRF rule accepts: the flag's, or those of the portal URLs and
// the returnTo prefixes.
func (f *ssoFlags) origins() []string {
	if f.allowedOrigins != "" {
		return splitList(f.allowedOrigins)
	}
	var out []string
	for _, s := range append([]string{f.portalURL, f.agentPortalURL}, splitList(f.returnTo)...) {
		if u, err := url.Parse(s); err == nil && u.Scheme != "" && u.Host != "" {
			o := strings.ToLower(u.Scheme + "://" + u.Host)
			if !contains(out, o) {
				out = append(out, o)
			}
		}
	}
	return out
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

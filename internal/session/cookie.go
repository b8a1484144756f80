package session

import "strings"

// FromCookieHeaders returns the value of keycap's session cookie in the request's Cookie header
// values (HTTP/1 sends one, HTTP/2 and gRPC may send several; Envoy joins them with "; "). found
// reports whether the cookie is there at all; ok is false when it appears more than once with
// different values (a request must be unambiguous). It does not allocate.
func FromCookieHeaders(headers []string) (value string, found, ok bool) {
	for _, h := range headers {
		for h != "" {
			var part string
			part, h, _ = strings.Cut(h, ";")
			name, v, eq := strings.Cut(strings.TrimSpace(part), "=")
			if !eq || name != CookieName {
				continue
			}
			v = strings.Trim(v, `"`)
			if found && v != value {
				return "", true, false
			}
			value, found = v, true
		}
	}
	return value, found, true
}

// StripCookie returns a Cookie header value without keycap's session cookie, so the upstream
// never sees it. It returns h itself (no allocation) when the cookie is not in it.
func StripCookie(h string) string {
	if !strings.Contains(h, CookieName) {
		return h
	}
	var b strings.Builder
	for h != "" {
		var part string
		part, h, _ = strings.Cut(h, ";")
		trimmed := strings.TrimSpace(part)
		if name, _, _ := strings.Cut(trimmed, "="); name == CookieName || trimmed == "" {
			continue
		}
		if b.Len() > 0 {
			b.WriteString("; ")
		}
		b.WriteString(trimmed)
	}
	return b.String()
}

// SafeMethod reports whether method cannot change state (RFC 9110 §9.2.1), so a request that
// only a cookie authenticates needs no evidence that it came from the site itself.
func SafeMethod(method string) bool {
	switch method {
	case "GET", "HEAD", "OPTIONS", "TRACE":
		return true
	}
	return false
}

// SameSiteEvidence reports whether a request carries evidence that a page of the site itself
// sent it: Sec-Fetch-Site same-origin or same-site (sent by every current browser and not
// settable by a page), or else an Origin in allowedOrigins (exact "scheme://host[:port]").
// A request with an unsafe method that only the session cookie authenticates is refused (CSRF)
// without it.
func SameSiteEvidence(secFetchSite, origin string, allowedOrigins []string) bool {
	switch secFetchSite {
	case "same-origin", "same-site":
		return true
	case "":
	default:
		// cross-site or none: the browser says it was not the site; an Origin cannot overrule it.
		return false
	}
	if origin == "" || origin == "null" {
		return false
	}
	for _, o := range allowedOrigins {
		if strings.EqualFold(o, origin) {
			return true
		}
	}
	return false
}

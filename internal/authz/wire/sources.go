package wire

import (
	"strings"
	"sync/atomic"

	"github.com/keycap-dev/keycap/internal/session"
)

// MaxCredentialLength bounds a presented opaque credential. keycap's own keys are at most 54
// characters; bring-your-own keys may be in any format but not longer than this. Longer values are
// refused as MALFORMED without being hashed. (A JWT may be up to MaxTokenLength.)
const MaxCredentialLength = 512

// MaxTokenLength bounds a presented JWT (apptoken.MaxTokenLength).
const MaxTokenLength = 8 << 10

// maxCredentialValues bounds how many header values (and comma-separated parts) a request may
// carry credentials in.
const maxCredentialValues = 16

// MaxKeyHeaders bounds the credential headers: x-api-key, Authorization and up to 14 extra.
const MaxKeyHeaders = 16

// DefaultExtraKeyHeaders are the extra credential headers read unless configured otherwise.
var DefaultExtraKeyHeaders = []string{"X-CapData-Token"}

// Sources are the configured credential sources of a request: the key headers (x-api-key,
// Authorization: Bearer, the extra headers), the licence headers and the SSO session cookie (a
// credential header or a licence in the same request wins over the cookie).
type Sources struct {
	// names are the lowercase key headers in order: x-api-key, authorization, extras.
	names []string
	// canonical are the same names in http.Header's canonical form.
	canonical []string

	// sessionOrigins are the Origins that count as same-site evidence for the CSRF rule.
	sessionOrigins []string

	// remove[fields] holds, once computed, the remove-lists of answers whose identity sets
	// fields: [licence headers used][key headers used, the first eight].
	remove [fieldSets]atomic.Pointer[[2][256]Removal]
}

// Removal is what an allowed request loses upstream: the headers that carried the credential and
// the identity headers the answer does not set. Joined is the list as one comma-separated value.
type Removal struct {
	Headers []string
	Joined  string
}

// NewSources returns the sources reading x-api-key, Authorization and the extra headers.
func NewSources(extra []string) *Sources {
	s := &Sources{}
	add := func(n string) {
		n = strings.ToLower(strings.TrimSpace(n))
		if n == "" || len(s.names) == MaxKeyHeaders {
			return
		}
		for _, have := range s.names {
			if have == n {
				return
			}
		}
		s.names = append(s.names, n)
		s.canonical = append(s.canonical, Canonical(n))
	}
	add(HeaderAPIKey)
	add(HeaderAuthorization)
	for _, n := range extra {
		add(n)
	}
	return s
}

// SetSessionOrigins sets the Origins (exact "scheme://host[:port]") that count as same-site
// evidence for a request only the session cookie authenticates. Call it before serving.
func (s *Sources) SetSessionOrigins(origins []string) { s.sessionOrigins = origins }

// Names returns the lowercase key header names, in the order a Form indexes them.
func (s *Sources) Names() []string { return s.names }

// Form is a request in the one form every transport turns it into: the values of each credential
// source. It lives on the caller's stack: filling and reading it allocates nothing.
type Form struct {
	// one[i] is key header i's value when hasOne's bit i is set (a CheckRequest's headers map);
	// it comes before the values in v[i]. (Kept apart from v rather than sliced into it: a slice
	// of itself would move the whole struct to the heap on every request.)
	one    [MaxKeyHeaders]string
	hasOne uint32
	v      [MaxKeyHeaders][]string

	license, instance single

	// cookies are the Cookie header's values; cookieOne is the one value of a CheckRequest's
	// headers map, when hasCookieOne is set.
	cookies      []string
	cookieOne    string
	hasCookieOne bool

	// What the CSRF rule reads of the original request when only the cookie authenticates it:
	// whether its method (any the proxy states) is unsafe, its Sec-Fetch-Site and its Origin.
	unsafeMethod         bool
	secFetchSite, origin string
}

// SetOrigin records what the CSRF rule needs of the original request: its method(s) as the
// transport knows them (any unsafe one makes the request unsafe), Sec-Fetch-Site and Origin.
func (f *Form) SetOrigin(secFetchSite, origin string, methods ...string) {
	f.secFetchSite, f.origin = secFetchSite, origin
	for _, m := range methods {
		if m != "" && !session.SafeMethod(m) {
			f.unsafeMethod = true
		}
	}
}

// single is a header that must have one value: repeated with different values it conflicts.
type single struct {
	value             string
	present, conflict bool
}

func (s *single) add(v string) {
	if s.present && s.value != v {
		s.conflict = true
	}
	s.value, s.present = v, true
}

// SetOne sets key header i's value from a map holding one value per header.
func (f *Form) SetOne(i int, v string) {
	f.one[i] = v
	f.hasOne |= 1 << uint(i)
}

// Add appends a value of key header i.
func (f *Form) Add(i int, v string) { f.v[i] = append(f.v[i], v) }

// AddLicenseKey and AddInstanceID add a value of the licence headers.
func (f *Form) AddLicenseKey(v string) { f.license.add(v) }

// AddInstanceID adds a value of the instanceid header.
func (f *Form) AddInstanceID(v string) { f.instance.add(v) }

// SetCookie sets the Cookie header's value from a map holding one value per header.
func (f *Form) SetCookie(v string) { f.cookieOne, f.hasCookieOne = v, true }

// AddCookie appends a value of the Cookie header.
func (f *Form) AddCookie(v string) { f.cookies = append(f.cookies, v) }

// sessionCookie returns keycap's session cookie among the Cookie header values (see
// session.FromCookieHeaders).
func (f *Form) sessionCookie() (value string, found, ok bool) {
	one := [1]string{f.cookieOne}
	if f.hasCookieOne {
		value, found, ok = session.FromCookieHeaders(one[:])
		if !ok {
			return "", true, false
		}
	}
	v, found2, ok := session.FromCookieHeaders(f.cookies)
	switch {
	case !ok || found && found2 && v != value:
		return "", true, false
	case found2:
		value, found = v, true
	}
	return value, found, true
}

// CookieHeader returns the request's Cookie header as one value (several are joined with "; ",
// as RFC 9113 §8.2.3 joins them).
func (f *Form) CookieHeader() string {
	switch {
	case f.hasCookieOne && len(f.cookies) == 0:
		return f.cookieOne
	case !f.hasCookieOne && len(f.cookies) == 1:
		return f.cookies[0]
	}
	parts := f.cookies
	if f.hasCookieOne {
		parts = append([]string{f.cookieOne}, parts...)
	}
	return strings.Join(parts, "; ")
}

// HasCookie reports whether the request has a Cookie header at all.
func (f *Form) HasCookie() bool { return f.hasCookieOne || len(f.cookies) > 0 }

// count returns how many values key header i has.
func (f *Form) count(i int) int {
	return len(f.v[i]) + int(f.hasOne>>uint(i)&1)
}

// value returns key header i's j-th value.
func (f *Form) value(i, j int) string {
	if f.hasOne&(1<<uint(i)) != 0 {
		if j == 0 {
			return f.one[i]
		}
		j--
	}
	return f.v[i][j]
}

var (
	canonicalLicenseKey = Canonical(HeaderLicenseKey)
	canonicalInstanceID = Canonical(HeaderInstanceID)
	canonicalCookie     = Canonical(HeaderCookie)
)

// HeaderCookie is the request header the session cookie comes in.
const HeaderCookie = "cookie"

// FromHTTP reads the credential sources of an http.Header (canonical names; nginx auth_request,
// Traefik forwardAuth, Envoy HTTP ext_authz), every value of repeated headers included.
func (s *Sources) FromHTTP(h map[string][]string, f *Form) {
	for i, name := range s.canonical {
		f.v[i] = h[name]
	}
	for _, v := range h[canonicalLicenseKey] {
		f.license.add(v)
	}
	for _, v := range h[canonicalInstanceID] {
		f.instance.add(v)
	}
	f.cookies = h[canonicalCookie]
}

// Presented is the credential a request carries, from one source.
type Presented struct {
	// Key is an opaque key, a JWT or a licence key.
	Key string
	// From is a bit set over the key headers (Sources.Names) that carried Key.
	From uint64
	// License is set when Key came from the licence headers; Instance is then the instanceid.
	License  bool
	Instance string
	// LicenseConflict and InstanceConflict are set when a licence header was repeated with
	// different values: the licence or the instance is then not usable.
	LicenseConflict, InstanceConflict bool
	// Session is set when Key is the value of keycap's session cookie: the request has no other
	// credential.
	Session bool
	// CrossSite is set for a session when the request's method is unsafe and it carries no
	// same-site evidence (session.SameSiteEvidence): the CSRF rule refuses it.
	CrossSite bool
}

// Extract returns the single credential in the request, or the reason there is none usable:
// MISSING (no credential), MALFORMED (empty, too long, not printable ASCII, too many values) or
// AMBIGUOUS (two different credentials, or a licence and a key). A key header repeated with the
// same value, or the same key in x-api-key and a bearer, is one credential. Values are split at
// commas because proxies join repeated headers with them (Envoy's gRPC ext_authz does), so a key
// cannot contain a comma. An Authorization header with a scheme other than Bearer is not a
// credential for keycap and is left alone.
func (s *Sources) Extract(f *Form) (Presented, Reason) {
	var p Presented
	count := 0
	for i, name := range s.names {
		for j, n := 0, f.count(i); j < n; j++ {
			v := f.value(i, j)
			if name == HeaderAuthorization {
				token, isBearer := bearer(v)
				if !isBearer {
					continue
				}
				v = token
			}
			for {
				part, rest, more := strings.Cut(v, ",")
				part = TrimSpace(part)
				count++
				switch {
				case count > maxCredentialValues || !ValidCredential(part):
					return Presented{}, ReasonMalformed
				case p.Key == "":
					p.Key = part
				case p.Key != part:
					return Presented{}, ReasonAmbiguous
				}
				p.From |= 1 << uint(i)
				if !more {
					break
				}
				v = rest
			}
		}
	}
	if f.license.present {
		if p.Key != "" {
			return Presented{}, ReasonAmbiguous
		}
		return Presented{
			Key: TrimSpace(f.license.value), License: true, Instance: TrimSpace(f.instance.value),
			LicenseConflict: f.license.conflict, InstanceConflict: f.instance.conflict,
		}, ReasonOK
	}
	if p.Key == "" {
		// The session cookie is the last source: any credential header or licence wins over it.
		v, found, ok := f.sessionCookie()
		switch {
		case !found:
			return Presented{}, ReasonMissing
		case !ok || v == "" || len(v) > session.MaxValueLength:
			return Presented{Session: true}, ReasonSessionInvalid
		}
		crossSite := f.unsafeMethod && !session.SameSiteEvidence(f.secFetchSite, f.origin, s.sessionOrigins)
		return Presented{Key: v, Session: true, CrossSite: crossSite}, ReasonOK
	}
	return p, ReasonOK
}

// headersOf returns the lowercase names of the key headers in from.
func (s *Sources) headersOf(from uint64) []string {
	out := make([]string, 0, 2)
	for i, n := range s.names {
		if from&(1<<uint(i)) != 0 {
			out = append(out, n)
		}
	}
	return out
}

// HeadersOf returns the lowercase names of the headers that carried p.
func (s *Sources) HeadersOf(p *Presented) []string {
	if p.License {
		return []string{HeaderLicenseKey}
	}
	return s.headersOf(p.From)
}

// Removal returns the headers an allowed request with credential p and identity fields must lose
// upstream: those that carried the credential (licensekey for a licence; instanceid stays) and
// the optional identity headers the answer does not set (a client may have forged them; the
// others are overwritten). The common lists are computed once per identity shape; callers must
// not modify the result.
func (s *Sources) Removal(p *Presented, fields Field) *Removal {
	lic := 0
	if p.License {
		lic = 1
	}
	if p.From < 256 {
		table := s.remove[fields].Load()
		if table == nil {
			// Computed on first use of an identity shape; concurrent first uses compute the same.
			table = &[2][256]Removal{}
			for l := range 2 {
				for from := range uint64(1) << min(len(s.names), 8) {
					table[l][from] = s.computeRemoval(from, l == 1, fields)
				}
			}
			s.remove[fields].Store(table)
		}
		return &table[lic][p.From]
	}
	r := s.computeRemoval(p.From, p.License, fields)
	return &r
}

func (s *Sources) computeRemoval(from uint64, license bool, fields Field) Removal {
	out := s.headersOf(from)
	if license {
		out = append(out, HeaderLicenseKey)
	}
	for _, h := range identityHeaders {
		if h.Field != 0 && fields&h.Field == 0 {
			out = append(out, h.Name)
		}
	}
	return Removal{Headers: out, Joined: strings.Join(out, ",")}
}

// bearer returns the token of an "Authorization: Bearer <token>" value (scheme case-insensitive)
// and whether the value uses the Bearer scheme at all.
func bearer(v string) (string, bool) {
	v = TrimSpace(v)
	const scheme = "bearer"
	if len(v) < len(scheme) || !strings.EqualFold(v[:len(scheme)], scheme) {
		return "", false
	}
	rest := v[len(scheme):]
	if rest == "" {
		return "", true
	}
	if rest[0] != ' ' && rest[0] != '\t' {
		return "", false // e.g. "Bearerish"
	}
	return TrimSpace(rest), true
}

// LooksLikeJWT reports whether s has the shape of a compact JWS (three base64url parts), so the
// data plane can tell a bearer JWT from an opaque key without parsing it.
func LooksLikeJWT(s string) bool {
	return strings.Count(s, ".") == 2 && strings.HasPrefix(s, "eyJ")
}

// ValidCredential reports whether s may be a credential: non-empty, bounded (MaxCredentialLength,
// or MaxTokenLength for what looks like a JWT), visible ASCII only (which also refuses invalid
// UTF-8 and control characters).
func ValidCredential(s string) bool {
	if s == "" || len(s) > MaxCredentialLength && (len(s) > MaxTokenLength || !LooksLikeJWT(s)) {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x21 || c > 0x7e {
			return false
		}
	}
	return true
}

// TrimSpace trims spaces and tabs (what HTTP allows around a header value).
func TrimSpace(s string) string { return strings.Trim(s, " \t") }

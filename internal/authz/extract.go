package authz

import (
	"net/http"
	"strings"
)

// MaxCredentialLength bounds a presented credential. keycap's own keys are at most 54 characters;
// bring-your-own keys may be in any format but not longer than this. Longer values are refused
// as MALFORMED without being hashed.
const MaxCredentialLength = 512

// maxCredentialValues bounds how many header values (and comma-separated parts) a request may
// carry credentials in.
const maxCredentialValues = 16

// Header names the data plane reads and writes. Identity headers are set on allowed requests for
// the upstream; the proxy must overwrite or remove any the client sent (Envoy does, as they are
// answered with OVERWRITE_IF_EXISTS_OR_ADD and listed in headers_to_remove when absent; for nginx
// see internal/e2e/authz/testdata/nginx.conf.tmpl).
const (
	HeaderAPIKey        = "x-api-key"
	HeaderAuthorization = "authorization"
	HeaderKind          = "x-keycap-kind"
	HeaderNamespace     = "x-keycap-namespace"
	HeaderName          = "x-keycap-name"
	HeaderKeyID         = "x-keycap-key-id"
	HeaderScopes        = "x-keycap-scopes"
	HeaderAgent         = "x-keycap-agent"
	HeaderParent        = "x-keycap-parent"
	// HeaderReason carries the reason code on every answer (allowed: OK).
	HeaderReason = "x-keycap-reason"
	// HeaderErrorBody carries the JSON denial body as a header too, because nginx's auth_request
	// drops the subrequest's body; the nginx config returns it from an error_page.
	HeaderErrorBody = "x-keycap-error-body"
)

// identityHeaders are every identity header, for removal of forged ones.
var identityHeaders = []string{HeaderKind, HeaderNamespace, HeaderName, HeaderKeyID, HeaderScopes, HeaderAgent, HeaderParent}

// DefaultExtraKeyHeaders are the extra headers read when Options.ExtraKeyHeaders is nil.
var DefaultExtraKeyHeaders = []string{"X-CapData-Token"}

// headerSource gives the values of a request header by its lowercase name.
type headerSource interface {
	values(lowerName string, fn func(v string) bool)
}

// extractor finds the credential of a request in the configured headers.
type extractor struct {
	// names are the lowercase credential headers in order: x-api-key, authorization, extras.
	names []string
	// canonical are the same names in http.Header's canonical form.
	canonical []string
}

func newExtractor(extra []string) *extractor {
	e := &extractor{}
	add := func(n string) {
		n = strings.ToLower(strings.TrimSpace(n))
		if n == "" {
			return
		}
		for _, have := range e.names {
			if have == n {
				return
			}
		}
		e.names = append(e.names, n)
		e.canonical = append(e.canonical, http.CanonicalHeaderKey(n))
	}
	add(HeaderAPIKey)
	add(HeaderAuthorization)
	for _, n := range extra {
		add(n)
	}
	return e
}

// presented is the credential a request carries and the headers that carried it.
type presented struct {
	key string
	// from is a bit set over extractor.names of the headers that carried the credential.
	from uint64
}

// extract returns the single credential in the request, or the reason there is none usable:
// MISSING (no credential header), MALFORMED (empty, too long, not printable ASCII, too many
// values) or AMBIGUOUS (two different credentials). A credential header repeated with the same
// value, or the same key in x-api-key and a bearer, is one credential. Values are split at commas
// because proxies join repeated headers with them (Envoy's gRPC ext_authz does), so a key cannot
// contain a comma. An Authorization header with a scheme other than Bearer is not a credential
// for keycap and is left alone.
func (e *extractor) extract(h headerSource) (presented, Reason) {
	var p presented
	reason := ReasonOK
	count := 0
	for i, name := range e.names {
		h.values(name, func(v string) bool {
			if name == HeaderAuthorization {
				token, isBearer := bearer(v)
				if !isBearer {
					return true
				}
				v = token
			}
			for {
				part, rest, more := strings.Cut(v, ",")
				part = trimSpace(part)
				count++
				switch {
				case count > maxCredentialValues || !validCredential(part):
					reason = ReasonMalformed
					return false
				case p.key == "":
					p.key = part
				case p.key != part:
					reason = ReasonAmbiguous
					return false
				}
				p.from |= 1 << uint(i)
				if !more {
					return true
				}
				v = rest
			}
		})
		if reason != ReasonOK {
			return presented{}, reason
		}
	}
	if p.key == "" {
		return presented{}, ReasonMissing
	}
	return p, ReasonOK
}

// headersOf returns the lowercase names of the headers that carried p.
func (e *extractor) headersOf(p presented) []string {
	out := make([]string, 0, 2)
	for i, n := range e.names {
		if p.from&(1<<uint(i)) != 0 {
			out = append(out, n)
		}
	}
	return out
}

// bearer returns the token of an "Authorization: Bearer <token>" value (scheme case-insensitive)
// and whether the value uses the Bearer scheme at all.
func bearer(v string) (string, bool) {
	v = trimSpace(v)
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
	return trimSpace(rest), true
}

// validCredential reports whether s may be a credential: non-empty, bounded, visible ASCII only
// (which also refuses invalid UTF-8 and control characters).
func validCredential(s string) bool {
	if s == "" || len(s) > MaxCredentialLength {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x21 || c > 0x7e {
			return false
		}
	}
	return true
}

func trimSpace(s string) string { return strings.Trim(s, " \t") }

// httpHeaders reads an http.Header (nginx auth_request, Traefik forwardAuth, Envoy HTTP
// ext_authz), every value of repeated headers included.
type httpHeaders struct {
	h         http.Header
	canonical map[string]string
}

func (s httpHeaders) values(lowerName string, fn func(string) bool) {
	name, ok := s.canonical[lowerName]
	if !ok {
		name = http.CanonicalHeaderKey(lowerName)
	}
	for _, v := range s.h[name] {
		if !fn(v) {
			return
		}
	}
}

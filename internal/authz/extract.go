package authz

import (
	"net/http"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"

	"github.com/keycap-dev/keycap/internal/apptoken"
	"github.com/keycap-dev/keycap/internal/index"
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
	// HeaderSubject is an AppToken's sub.
	HeaderSubject = "x-keycap-subject"
	// HeaderEntitlements is a licence's entitlements, comma-separated.
	HeaderEntitlements = "x-keycap-entitlements"
	// HeaderLicenseKey and HeaderInstanceID carry a licence on a request (as on activation).
	HeaderLicenseKey = "licensekey"
	HeaderInstanceID = "instanceid"
	// HeaderReason carries the reason code on every answer (allowed: OK).
	HeaderReason = "x-keycap-reason"
	// HeaderErrorBody carries the JSON denial body as a header too, because nginx's auth_request
	// drops the subrequest's body; the nginx config returns it from an error_page.
	HeaderErrorBody = "x-keycap-error-body"
)

// identityHeaders are every identity header, for removal of forged ones.
var identityHeaders = []string{HeaderKind, HeaderNamespace, HeaderName, HeaderKeyID, HeaderScopes, HeaderAgent, HeaderParent, HeaderSubject, HeaderEntitlements}

// Answer variants: which identity headers an allowed answer sets beyond the common five.
const (
	variantApiKey = iota
	variantAgent
	variantToken
	variantLicense
	variantCount
)

// variantOf returns the answer variant of a credential kind.
func variantOf(kind string) int {
	switch kind {
	case index.KindAgentKey:
		return variantAgent
	case index.KindAppToken:
		return variantToken
	case index.KindLicense:
		return variantLicense
	}
	return variantApiKey
}

// DefaultExtraKeyHeaders are the extra headers read when Options.ExtraKeyHeaders is nil.
var DefaultExtraKeyHeaders = []string{"X-CapData-Token"}

// maxKeyHeaders bounds the credential headers: x-api-key, Authorization and up to 14 extra.
const maxKeyHeaders = 16

// headerValues holds the values of each credential header of one request, indexed like
// extractor.names. It lives on the caller's stack: filling and reading it allocates nothing.
type headerValues struct {
	// one[i] is header i's value in a CheckRequest's headers map, when hasOne's bit i is set; it
	// comes before the values in v[i]. (Kept apart from v rather than sliced into it: a slice of
	// itself would move the whole struct to the heap on every request.)
	one    [maxKeyHeaders]string
	hasOne uint32
	v      [maxKeyHeaders][]string
}

// count returns how many values header i has.
func (hv *headerValues) count(i int) int {
	return len(hv.v[i]) + int(hv.hasOne>>uint(i)&1)
}

// value returns header i's j-th value.
func (hv *headerValues) value(i, j int) string {
	if hv.hasOne&(1<<uint(i)) != 0 {
		if j == 0 {
			return hv.one[i]
		}
		j--
	}
	return hv.v[i][j]
}

// extractor finds the credential of a request in the configured headers.
type extractor struct {
	// names are the lowercase credential headers in order: x-api-key, authorization, extras.
	names []string
	// canonical are the same names in http.Header's canonical form.
	canonical []string
	// remove[variant][from] are the precomputed results of toRemove for the first credential
	// headers.
	remove [variantCount][256][]string
}

func newExtractor(extra []string) *extractor {
	e := &extractor{}
	add := func(n string) {
		n = strings.ToLower(strings.TrimSpace(n))
		if n == "" || len(e.names) == maxKeyHeaders {
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
	for from := range uint64(1) << min(len(e.names), 8) {
		for v := range variantCount {
			e.remove[v][from] = e.computeRemove(from, v)
		}
	}
	return e
}

// fromHTTP reads the credential headers of an http.Header (nginx auth_request, Traefik
// forwardAuth, Envoy HTTP ext_authz), every value of repeated headers included.
func (e *extractor) fromHTTP(h http.Header, hv *headerValues) {
	for i, name := range e.canonical {
		hv.v[i] = h[name]
	}
}

// fromGRPC reads the credential headers of a CheckRequest: the headers map (Envoy lowercases the
// names and joins repeated headers with commas) and the header_map Envoy sends instead when
// encode_raw_headers is set (raw values may be any bytes).
func (e *extractor) fromGRPC(m map[string]string, hm *corev3.HeaderMap, hv *headerValues) {
	for i, name := range e.names {
		if v, ok := m[name]; ok {
			hv.one[i] = v
			hv.hasOne |= 1 << uint(i)
		}
	}
	for _, h := range hm.GetHeaders() {
		for i, name := range e.names {
			if !strings.EqualFold(h.GetKey(), name) {
				continue
			}
			v := h.GetValue()
			if v == "" && len(h.GetRawValue()) > 0 {
				v = string(h.GetRawValue())
			}
			hv.v[i] = append(hv.v[i], v)
		}
	}
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
func (e *extractor) extract(hv *headerValues) (presented, Reason) {
	var p presented
	count := 0
	for i, name := range e.names {
		for j, n := 0, hv.count(i); j < n; j++ {
			v := hv.value(i, j)
			if name == HeaderAuthorization {
				token, isBearer := bearer(v)
				if !isBearer {
					continue
				}
				v = token
			}
			for {
				part, rest, more := strings.Cut(v, ",")
				part = trimSpace(part)
				count++
				switch {
				case count > maxCredentialValues || !validCredential(part):
					return presented{}, ReasonMalformed
				case p.key == "":
					p.key = part
				case p.key != part:
					return presented{}, ReasonAmbiguous
				}
				p.from |= 1 << uint(i)
				if !more {
					break
				}
				v = rest
			}
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

// toRemove returns the headers an allowed request must lose upstream: those that carried the
// credential (the licensekey header for a licence) and the identity headers the answer does not
// set for this kind of credential (a client may have forged them; the others are overwritten).
// The common sets are computed once; callers must not modify the result.
func (e *extractor) toRemove(from uint64, variant int) []string {
	if from < uint64(len(e.remove[variant])) {
		return e.remove[variant][from]
	}
	return e.computeRemove(from, variant)
}

func (e *extractor) computeRemove(from uint64, variant int) []string {
	out := e.headersOf(presented{from: from})
	if variant == variantLicense {
		out = append(out, HeaderLicenseKey)
	}
	if variant != variantAgent {
		out = append(out, HeaderAgent, HeaderParent)
	}
	if variant != variantToken {
		out = append(out, HeaderSubject)
	}
	if variant != variantLicense {
		out = append(out, HeaderEntitlements)
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

// validCredential reports whether s may be a credential: non-empty, bounded (MaxCredentialLength,
// or apptoken.MaxTokenLength for what looks like a JWT), visible ASCII only (which also refuses
// invalid UTF-8 and control characters).
func validCredential(s string) bool {
	if s == "" || len(s) > MaxCredentialLength && (len(s) > apptoken.MaxTokenLength || !apptoken.LooksLikeJWT(s)) {
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

package routepolicy

import (
	"fmt"
	"strings"
)

// Source says where a deployment's proxy states the original request's host, path and method on
// the HTTP forward-auth port (--trusted-request-attributes). Exactly one is trusted: if several
// were, a client could pick the one it forges. gRPC Check always uses Envoy's attributes.
type Source string

const (
	// SourceEnvoy is the path after /check and the Host header and method of the check request
	// itself, as Envoy's HTTP ext_authz sends them (Envoy, Istio and Envoy Gateway HTTP
	// providers: path_prefix /check, the client's path appended).
	SourceEnvoy Source = "envoy"
	// SourceForwarded is X-Forwarded-Host, X-Forwarded-Uri and X-Forwarded-Method, which Traefik's
	// forwardAuth and Caddy's forward_auth set (overwriting what a client sent).
	SourceForwarded Source = "forwarded"
	// SourceOriginalURL is X-Original-URL and X-Original-Method, which ingress-nginx's auth-url
	// sets (and an nginx auth_request location can: proxy_set_header X-Original-URL
	// $scheme://$http_host$request_uri).
	SourceOriginalURL Source = "original-url"
)

// Sources are the valid values of --trusted-request-attributes.
var Sources = []Source{SourceEnvoy, SourceForwarded, SourceOriginalURL}

// ParseSource parses a --trusted-request-attributes value.
func ParseSource(s string) (Source, error) {
	for _, src := range Sources {
		if string(src) == s {
			return src, nil
		}
	}
	return "", fmt.Errorf("unknown request attribute source %q (one of envoy, forwarded, original-url)", s)
}

// Canonical header names the sources read.
const (
	HeaderForwardedHost   = "X-Forwarded-Host"
	HeaderForwardedURI    = "X-Forwarded-Uri"
	HeaderForwardedMethod = "X-Forwarded-Method"
	HeaderOriginalURL     = "X-Original-Url"
	HeaderOriginalMethod  = "X-Original-Method"
)

// Header gives the values of a header by canonical name; net/http's http.Header implements it.
type Header interface {
	Values(key string) []string
}

// View is a transport-neutral view of an authorization request.
type View struct {
	// GRPC says the view is of a gRPC CheckRequest: Host, Target and Method are Envoy's
	// attributes.request.http host, path and method, and Header is not read.
	GRPC bool
	// Host is the gRPC attribute host (":authority"), or the HTTP check request's Host.
	Host string
	// Target is the gRPC attribute path (path and query), or the HTTP check request's request
	// target as received, still escaped (net/http's Request.RequestURI).
	Target string
	// Method is the gRPC attribute method, or the HTTP check request's method.
	Method string
	// Header holds the HTTP check request's headers.
	Header Header
	// CheckPath is the forward-auth path ("/check") that SourceEnvoy strips from Target.
	CheckPath string
}

// Attributes returns the original request's host (normalised by NormalizeHost), request target
// (path and query, still escaped: NormalizePath takes it from there) and method (upper case) as
// the trusted source states them. ok is false when the source does not state all three, or
// states one twice or malformed: the route is then unknown, and a caller with policies for the
// host (or, without a host, with any policy) must refuse rather than skip them.
func Attributes(src Source, v *View) (host, target, method string, ok bool) {
	var rawHost string
	switch {
	case v.GRPC:
		rawHost, target, method = v.Host, v.Target, v.Method
	case src == SourceEnvoy:
		rest, found := strings.CutPrefix(v.Target, v.CheckPath)
		if !found || !strings.HasPrefix(rest, "/") {
			// Exactly /check (an nginx auth_request location, say) states no path.
			h, _ := NormalizeHost(v.Host)
			return h, "", "", false
		}
		rawHost, target, method = v.Host, rest, v.Method
	case src == SourceForwarded:
		var ok1, ok2, ok3 bool
		rawHost, ok1 = single(v.Header, HeaderForwardedHost)
		target, ok2 = single(v.Header, HeaderForwardedURI)
		method, ok3 = single(v.Header, HeaderForwardedMethod)
		if !ok1 || !ok2 || !ok3 {
			return "", "", "", false
		}
	case src == SourceOriginalURL:
		u, ok1 := single(v.Header, HeaderOriginalURL)
		m, ok2 := single(v.Header, HeaderOriginalMethod)
		if !ok1 || !ok2 {
			return "", "", "", false
		}
		var uok bool
		if rawHost, target, uok = splitAbsoluteURL(u); !uok {
			return "", "", "", false
		}
		method = m
	default:
		return "", "", "", false
	}
	host, hok := NormalizeHost(rawHost)
	method, mok := NormalizeMethod(method)
	if !hok || !mok || target == "" || target[0] != '/' {
		return host, "", "", false
	}
	return host, target, method, true
}

// single returns the one value of a header; a header that is missing, empty, repeated or a
// comma-separated list is not a value a proxy set.
func single(h Header, name string) (string, bool) {
	if h == nil {
		return "", false
	}
	vs := h.Values(name)
	if len(vs) != 1 || vs[0] == "" || strings.IndexByte(vs[0], ',') >= 0 {
		return "", false
	}
	return vs[0], true
}

// splitAbsoluteURL splits "scheme://authority/path?query" into the authority and the target
// ("/path?query"; "/" when the URL has no path). Userinfo is refused.
func splitAbsoluteURL(u string) (authority, target string, ok bool) {
	scheme, rest, found := strings.Cut(u, "://")
	if !found || !strings.EqualFold(scheme, "http") && !strings.EqualFold(scheme, "https") {
		return "", "", false
	}
	end := strings.IndexAny(rest, "/?#")
	if end < 0 {
		return rest, "/", !strings.Contains(rest, "@")
	}
	authority, target = rest[:end], rest[end:]
	if strings.Contains(authority, "@") {
		return "", "", false
	}
	if target[0] != '/' {
		target = "/" + target
	}
	return authority, target, true
}

// NormalizeMethod returns the method in upper case; ok is false when it is not an HTTP token.
func NormalizeMethod(m string) (string, bool) {
	if m == "" || len(m) > 32 {
		return "", false
	}
	upper := true
	for i := 0; i < len(m); i++ {
		c := m[i]
		switch {
		case 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '-', c == '_':
		case 'a' <= c && c <= 'z':
			upper = false
		default:
			return "", false
		}
	}
	if !upper {
		m = strings.ToUpper(m)
	}
	return m, true
}

package routepolicy

import (
	"net/http"
	"slices"
	"testing"

	keycapv1alpha1 "github.com/keycap-dev/keycap/api/v1alpha1"
)

func TestAttributes(t *testing.T) {
	type want struct {
		host, target, method string
		ok                   bool
	}
	h := func(kv ...string) http.Header {
		out := http.Header{}
		for i := 0; i < len(kv); i += 2 {
			out.Add(kv[i], kv[i+1])
		}
		return out
	}
	forwarded := h(HeaderForwardedHost, "Shop.example.com", HeaderForwardedURI, "/admin/x?y=1", HeaderForwardedMethod, "post")
	cases := map[string]struct {
		src  Source
		view View
		want want
	}{
		"gRPC attributes, whatever the HTTP source": {SourceForwarded,
			View{GRPC: true, Host: "shop.example.com:443", Target: "/admin?x", Method: "DELETE", Header: forwarded},
			want{"shop.example.com", "/admin?x", "DELETE", true}},
		"Envoy HTTP: the path after /check, the Host and the method": {SourceEnvoy,
			View{Host: "shop.example.com", Target: "/check/admin//users?x=1", Method: "POST", CheckPath: "/check"},
			want{"shop.example.com", "/admin//users?x=1", "POST", true}},
		"Envoy HTTP: the root path": {SourceEnvoy,
			View{Host: "shop.example.com", Target: "/check/", Method: "GET", CheckPath: "/check"},
			want{"shop.example.com", "/", "GET", true}},
		"Envoy HTTP: exactly /check states no path, but the host": {SourceEnvoy,
			View{Host: "keycap:9002", Target: "/check?scopes=a", Method: "GET", CheckPath: "/check"},
			want{"keycap", "", "", false}},
		"Envoy HTTP: /checkout is not under /check": {SourceEnvoy,
			View{Host: "shop.example.com", Target: "/checkout", Method: "GET", CheckPath: "/check"},
			want{"shop.example.com", "", "", false}},
		"Envoy HTTP ignores forwarded headers": {SourceEnvoy,
			View{Host: "shop.example.com", Target: "/check/public", Method: "GET", Header: forwarded, CheckPath: "/check"},
			want{"shop.example.com", "/public", "GET", true}},
		"forwarded: Traefik's and Caddy's headers": {SourceForwarded,
			View{Host: "keycap:9002", Target: "/check?scopes=a", Method: "GET", Header: forwarded, CheckPath: "/check"},
			want{"shop.example.com", "/admin/x?y=1", "POST", true}},
		"forwarded: a missing header": {SourceForwarded,
			View{Target: "/check", Method: "GET", Header: h(HeaderForwardedHost, "shop.example.com", HeaderForwardedMethod, "GET"), CheckPath: "/check"},
			want{"", "", "", false}},
		"forwarded: a repeated header": {SourceForwarded,
			View{Target: "/check", Method: "GET", Header: h(HeaderForwardedHost, "shop.example.com", HeaderForwardedURI, "/public", HeaderForwardedURI, "/admin", HeaderForwardedMethod, "GET"), CheckPath: "/check"},
			want{"", "", "", false}},
		"forwarded: a host list": {SourceForwarded,
			View{Target: "/check", Method: "GET", Header: h(HeaderForwardedHost, "evil.example.org, shop.example.com", HeaderForwardedURI, "/", HeaderForwardedMethod, "GET"), CheckPath: "/check"},
			want{"", "", "", false}},
		"forwarded: a URI that is not a path": {SourceForwarded,
			View{Target: "/check", Method: "GET", Header: h(HeaderForwardedHost, "shop.example.com", HeaderForwardedURI, "admin", HeaderForwardedMethod, "GET"), CheckPath: "/check"},
			want{"shop.example.com", "", "", false}},
		"original-url: ingress-nginx's headers": {SourceOriginalURL,
			View{Target: "/check", Method: "GET", Header: h(HeaderOriginalURL, "https://shop.example.com/admin?x=1", HeaderOriginalMethod, "DELETE"), CheckPath: "/check"},
			want{"shop.example.com", "/admin?x=1", "DELETE", true}},
		"original-url: no path is the root": {SourceOriginalURL,
			View{Header: h(HeaderOriginalURL, "http://shop.example.com:8080", HeaderOriginalMethod, "GET")},
			want{"shop.example.com", "/", "GET", true}},
		"original-url: a query right after the host": {SourceOriginalURL,
			View{Header: h(HeaderOriginalURL, "http://shop.example.com?x=/admin", HeaderOriginalMethod, "GET")},
			want{"shop.example.com", "/?x=/admin", "GET", true}},
		"original-url: userinfo is refused": {SourceOriginalURL,
			View{Header: h(HeaderOriginalURL, "http://evil@shop.example.com/admin", HeaderOriginalMethod, "GET")},
			want{"", "", "", false}},
		"original-url: another scheme is refused": {SourceOriginalURL,
			View{Header: h(HeaderOriginalURL, "ftp://shop.example.com/admin", HeaderOriginalMethod, "GET")},
			want{"", "", "", false}},
		"original-url: a missing method": {SourceOriginalURL,
			View{Header: h(HeaderOriginalURL, "https://shop.example.com/admin")},
			want{"", "", "", false}},
		"a method that is not a token": {SourceEnvoy,
			View{Host: "shop.example.com", Target: "/check/admin", Method: "GET /", CheckPath: "/check"},
			want{"shop.example.com", "", "", false}},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			host, target, method, ok := Attributes(c.src, &c.view)
			if got := (want{host, target, method, ok}); got != c.want {
				t.Errorf("Attributes = %+v, want %+v", got, c.want)
			}
		})
	}
}

func TestParseSource(t *testing.T) {
	for _, s := range Sources {
		if got, err := ParseSource(string(s)); err != nil || got != s {
			t.Errorf("ParseSource(%q) = %q, %v", s, got, err)
		}
	}
	if _, err := ParseSource("envoy,forwarded"); err == nil {
		t.Error("ParseSource accepted two sources; a client could then pick the one it forges")
	}
}

func TestRoute(t *testing.T) {
	ix := Build([]*keycapv1alpha1.RoutePolicy{shop()})
	var buf [4]*Rule
	cases := map[string]struct {
		src     Source
		view    View
		scopes  []string
		refusal Refusal
		policy  bool
	}{
		"a host without a policy": {SourceEnvoy,
			View{Host: "other.example.com", Target: "/check/admin", Method: "POST", CheckPath: "/check"}, nil, RefusalNone, false},
		"nginx auth_request on exactly /check, keycap's own host": {SourceEnvoy,
			View{Host: "127.0.0.1:9002", Target: "/check?scopes=a", Method: "GET", CheckPath: "/check"}, nil, RefusalNone, false},
		"the policy's host without a path": {SourceEnvoy,
			View{Host: "shop.example.com", Target: "/check", Method: "GET", CheckPath: "/check"}, nil, RefusalRouteUnknown, true},
		"forwarded headers missing: any policy might apply": {SourceForwarded,
			View{Host: "127.0.0.1:9002", Target: "/check", Method: "GET", Header: http.Header{}, CheckPath: "/check"}, nil, RefusalRouteUnknown, false},
		"an encoded slash": {SourceEnvoy,
			View{Host: "shop.example.com", Target: "/check/admin%2fusers", Method: "POST", CheckPath: "/check"}, nil, RefusalAmbiguousPath, true},
		"a dot-dot into /admin": {SourceEnvoy,
			View{Host: "shop.example.com", Target: "/check/public/../admin", Method: "POST", CheckPath: "/check"}, []string{"shop:admin"}, RefusalNone, true},
		"gRPC, a lower-case method": {SourceEnvoy,
			View{GRPC: true, Host: "shop.example.com", Target: "//ADMIN/x", Method: "delete"}, []string{"shop:admin"}, RefusalNone, true},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			r := ix.Route(c.src, &c.view, buf[:0])
			if got := scopesOf(r.Rules); !slices.Equal(got, c.scopes) || r.Refusal != c.refusal || (r.Policy != nil) != c.policy {
				t.Errorf("Route = scopes %v, refusal %q, policy %v; want %v, %q, %v", got, r.Refusal, r.Policy != nil, c.scopes, c.refusal, c.policy)
			}
		})
	}
	if r := (*Index)(nil).Route(SourceEnvoy, &View{}, nil); r.Policy != nil || r.Refusal != RefusalNone {
		t.Errorf("a nil index routes to %+v", r)
	}
}

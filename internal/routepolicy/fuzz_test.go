package routepolicy

import (
	"net/url"
	"path"
	"slices"
	"strings"
	"testing"

	keycapv1alpha1 "github.com/keycap-dev/keycap/api/v1alpha1"
)

// underAdmin reports whether an upstream reading target in one of the ways upstreams do (decode
// once or twice, backslash as a separator, ";parameters" stripped, case ignored, dot segments
// resolved, slashes merged) would serve something under /admin.
func underAdmin(target string) bool {
	if i := strings.IndexAny(target, "?#"); i >= 0 {
		target = target[:i]
	}
	readings := []string{target}
	if once, err := url.PathUnescape(target); err == nil {
		readings = append(readings, once)
		if twice, err := url.PathUnescape(once); err == nil {
			readings = append(readings, twice)
		}
	}
	for _, r := range readings {
		for _, v := range []string{r, strings.ReplaceAll(r, "\\", "/"), stripParams(r)} {
			clean := path.Clean("/" + strings.ToLower(v))
			if clean == "/admin" || strings.HasPrefix(clean, "/admin/") {
				return true
			}
		}
	}
	return false
}

// FuzzRoute checks, against readings of the path computed independently (net/url and path.Clean),
// that a request an upstream may serve under /admin always gets /admin's requirements or is
// refused: no spelling of the path reaches /admin with only "/"'s requirements.
func FuzzRoute(f *testing.F) {
	for _, seed := range []string{
		"/admin", "/admin/users", "/public/../admin", "//admin", "/%61dmin", "/%2e%2e/admin",
		"/public/%2e%2e/admin", "/admin%2fusers", "/public/..%2fadmin", "/public/..%5cadmin",
		"/%2561dmin", "/public/..;/admin", "/admin;jsessionid=1", "/ADMIN", "/./admin", "/admin?x",
		"/public#/admin", "/public/..\\admin", "/a/b/../../admin/x", "/admin%00", "/%23", "/%3fadmin", "/public%23/../admin",
	} {
		f.Add(seed)
	}
	ix := Build([]*keycapv1alpha1.RoutePolicy{shop()})
	f.Fuzz(func(t *testing.T, target string) {
		var buf [4]*Rule
		r := ix.Route(SourceEnvoy, &View{GRPC: true, Host: "shop.example.com", Target: target, Method: "POST"}, buf[:0])
		if r.Refusal != RefusalNone {
			return
		}
		if underAdmin(target) && !slices.Contains(scopesOf(r.Rules), "shop:admin") {
			t.Errorf("%q reaches /admin with only %v", target, scopesOf(r.Rules))
		}
		if p, _, ok := NormalizePath(target); ok {
			if again, _, ok2 := NormalizePath(p); !ok2 || again != p {
				t.Errorf("NormalizePath is not idempotent: %q -> %q -> %q (%v)", target, p, again, ok2)
			}
		}
	})
}

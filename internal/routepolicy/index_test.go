package routepolicy

import (
	"slices"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	keycapv1alpha1 "github.com/keycap-dev/keycap/api/v1alpha1"
)

var epoch = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func policy(ns, name string, age time.Duration, hosts []string, rules ...keycapv1alpha1.RoutePolicyRule) *keycapv1alpha1.RoutePolicy {
	return &keycapv1alpha1.RoutePolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, CreationTimestamp: metav1.NewTime(epoch.Add(-age))},
		Spec:       keycapv1alpha1.RoutePolicySpec{Hosts: hosts, Rules: rules},
	}
}

// shop is the example policy.
func shop() *keycapv1alpha1.RoutePolicy {
	return policy("shop", "shop", time.Hour, []string{"shop.example.com"},
		keycapv1alpha1.RoutePolicyRule{Paths: []string{"/admin"}, Methods: []string{"POST", "DELETE"}, Scopes: []string{"shop:admin"}, Namespaces: []string{"shop"}},
		keycapv1alpha1.RoutePolicyRule{Paths: []string{"/"}, Scopes: []string{"shop:read"}},
	)
}

// scopesOf flattens the scopes of the rules a request matched.
func scopesOf(rules []*Rule) []string {
	var out []string
	for _, r := range rules {
		out = append(out, r.Scopes...)
	}
	slices.Sort(out)
	return out
}

func TestMatch(t *testing.T) {
	rp := shop()
	rp.Spec.Rules = append(rp.Spec.Rules,
		keycapv1alpha1.RoutePolicyRule{Paths: []string{"/admin/reports/"}, Methods: []string{"GET"}, Scopes: []string{"reports:read"}},
		keycapv1alpha1.RoutePolicyRule{Paths: []string{"/healthz"}},
		keycapv1alpha1.RoutePolicyRule{Paths: []string{"/Admin"}, Methods: []string{"delete"}, Scopes: []string{"shop:delete"}},
	)
	p := Build([]*keycapv1alpha1.RoutePolicy{rp}).Lookup("shop.example.com")
	cases := map[string]struct {
		path, alt, method string
		scopes            []string
	}{
		"a POST under /admin gets /admin's rule":        {"/admin/users", "", "POST", []string{"shop:admin"}},
		"a POST to /admin itself gets it":               {"/admin", "", "POST", []string{"shop:admin"}},
		"a GET under /admin falls back to /":            {"/admin/users", "", "GET", []string{"shop:read"}},
		"prefixes match whole segments":                 {"/administrators", "", "POST", []string{"shop:read"}},
		"two rules on one prefix both apply":            {"/admin/x", "", "DELETE", []string{"shop:admin", "shop:delete"}},
		"the longest prefix wins":                       {"/admin/reports/2026", "", "GET", []string{"reports:read"}},
		"HEAD is matched by a GET rule":                 {"/admin/reports", "", "HEAD", []string{"reports:read"}},
		"a rule without requirements carves a path out": {"/healthz", "", "GET", nil},
		"the root":                                        {"/", "", "GET", []string{"shop:read"}},
		"the alternative path's rules apply too":          {"/public;x/..;/admin", "/admin", "POST", []string{"shop:admin", "shop:read"}},
		"a rule matched by both paths is listed once":     {"/admin/x;y", "/admin/x", "POST", []string{"shop:admin"}},
		"a segment with parameters is another segment":    {"/admin;x", "/admin", "POST", []string{"shop:admin", "shop:read"}},
		"a trailing slash on the request changes nothing": {"/admin/", "", "POST", []string{"shop:admin"}},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			got := scopesOf(p.Match(c.path, c.alt, c.method, nil))
			if !slices.Equal(got, c.scopes) {
				t.Errorf("Match(%q, %q, %q) scopes = %v, want %v", c.path, c.alt, c.method, got, c.scopes)
			}
		})
	}
}

func TestLookup(t *testing.T) {
	exact := policy("a", "exact", time.Hour, []string{"shop.example.com"}, keycapv1alpha1.RoutePolicyRule{Paths: []string{"/"}})
	wild := policy("b", "wild", time.Hour, []string{"*.example.com"}, keycapv1alpha1.RoutePolicyRule{Paths: []string{"/"}})
	deeper := policy("c", "deeper", time.Hour, []string{"*.eu.example.com"}, keycapv1alpha1.RoutePolicyRule{Paths: []string{"/"}})
	ix := Build([]*keycapv1alpha1.RoutePolicy{exact, wild, deeper})
	cases := map[string]string{
		"shop.example.com":      "exact",
		"api.example.com":       "wild",
		"a.b.example.com":       "wild",
		"shop.eu.example.com":   "deeper",
		"example.com":           "",
		"shop.example.com.evil": "",
		"other.org":             "",
		"localhost":             "",
	}
	for host, want := range cases {
		got := ""
		if p := ix.Lookup(host); p != nil {
			got = p.Name.Name
		}
		if got != want {
			t.Errorf("Lookup(%q) = %q, want %q", host, got, want)
		}
	}
	if ix.Len() != 3 {
		t.Errorf("Len = %d, want 3", ix.Len())
	}
}

func TestBuildConflicts(t *testing.T) {
	older := policy("team-a", "shop", 2*time.Hour, []string{"shop.example.com", "*.example.com"}, keycapv1alpha1.RoutePolicyRule{Paths: []string{"/"}, Scopes: []string{"a"}})
	newer := policy("team-b", "shop", time.Hour, []string{"SHOP.example.com", "api.example.com"}, keycapv1alpha1.RoutePolicyRule{Paths: []string{"/"}, Scopes: []string{"b"}})
	sameAgeFirst := policy("team-c", "x", time.Hour, []string{"only.example.com"}, keycapv1alpha1.RoutePolicyRule{Paths: []string{"/"}})
	sameAgeSecond := policy("team-d", "x", time.Hour, []string{"only.example.com"}, keycapv1alpha1.RoutePolicyRule{Paths: []string{"/"}})
	deleting := policy("team-e", "gone", 3*time.Hour, []string{"shop.example.com"}, keycapv1alpha1.RoutePolicyRule{Paths: []string{"/"}})
	deleting.DeletionTimestamp = &metav1.Time{Time: epoch}

	// Whatever order the informer lists them in.
	for _, order := range [][]*keycapv1alpha1.RoutePolicy{
		{older, newer, sameAgeFirst, sameAgeSecond, deleting},
		{deleting, sameAgeSecond, sameAgeFirst, newer, older},
	} {
		ix := Build(order)
		if got := ix.Lookup("shop.example.com").Name; got != (types.NamespacedName{Namespace: "team-a", Name: "shop"}) {
			t.Errorf("shop.example.com held by %v, want the oldest, team-a/shop", got)
		}
		if got := ix.Lookup("api.example.com").Name.Namespace; got != "team-b" {
			t.Errorf("api.example.com held by %v, want team-b: the newer policy keeps its other hosts", got)
		}
		want := map[types.NamespacedName][]Conflict{
			{Namespace: "team-b", Name: "shop"}: {{Host: "shop.example.com", Holder: types.NamespacedName{Namespace: "team-a", Name: "shop"}}},
			{Namespace: "team-d", Name: "x"}:    {{Host: "only.example.com", Holder: types.NamespacedName{Namespace: "team-c", Name: "x"}}},
		}
		if len(ix.Conflicts) != len(want) {
			t.Errorf("conflicts = %v, want %v", ix.Conflicts, want)
		}
		for name, w := range want {
			if !slices.Equal(ix.Conflicts[name], w) {
				t.Errorf("conflicts of %v = %v, want %v", name, ix.Conflicts[name], w)
			}
		}
	}
}

func TestNormalizeHost(t *testing.T) {
	cases := map[string]struct {
		host string
		ok   bool
	}{
		"shop.example.com":      {"shop.example.com", true},
		"Shop.Example.COM:8443": {"shop.example.com", true},
		"shop.example.com.":     {"shop.example.com", true},
		"[::1]:9002":            {"[::1]", true},
		"127.0.0.1:80":          {"127.0.0.1", true},
		"":                      {"", false},
		"shop.example.com:x":    {"", false},
		"shop example.com":      {"", false},
		"user@shop.example.com": {"", false},
		"[::1":                  {"", false},
	}
	for in, c := range cases {
		host, ok := NormalizeHost(in)
		if host != c.host || ok != c.ok {
			t.Errorf("NormalizeHost(%q) = %q, %v; want %q, %v", in, host, ok, c.host, c.ok)
		}
	}
}

func TestLookupCostsNoAllocation(t *testing.T) {
	ix := Build([]*keycapv1alpha1.RoutePolicy{shop(), policy("w", "w", time.Hour, []string{"*.example.org"}, keycapv1alpha1.RoutePolicyRule{Paths: []string{"/"}})})
	var buf [4]*Rule
	v := &View{GRPC: true, Host: "shop.example.com", Target: "/admin/users?page=2", Method: "POST"}
	if n := testing.AllocsPerRun(100, func() {
		ix.Lookup("a.b.example.org")
		ix.Route(SourceEnvoy, v, buf[:0])
	}); n != 0 {
		t.Errorf("a lookup and a route of a clean path allocated %v times", n)
	}
}

package wire

import (
	"strings"
	"testing"

	"github.com/onsi/gomega"
)

func TestParseQuery(t *testing.T) {
	cases := map[string]struct {
		query string
		want  Requirements
		aud   Audience
	}{
		"every parameter, repeated lists kept apart": {
			query: "scopes=a,b&namespace=acme&audience=reports&entitlements=sso&entitlements=pro&other=x",
			want:  Requirements{Scopes: []string{"a,b"}, Namespaces: []string{"acme"}, Entitlements: []string{"sso", "pro"}},
			aud:   Audience{Name: "reports"},
		},
		"an escaped value is unescaped": {
			query: "audience=https%3A%2F%2Fapi.example",
			aud:   Audience{Name: "https://api.example"},
		},
		"two different audiences match nothing": {
			query: "audience=a&audience=b",
			aud:   Audience{Name: "b", Unmeetable: true},
		},
		"a value that cannot be unescaped is a requirement nobody meets": {
			query: "entitlements=%zz",
			want:  Requirements{Entitlements: []string{""}, unmeetable: UnmeetableEntitlements},
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			g := gomega.NewWithT(t)
			got, aud := ParseQuery(tc.query, nil, nil, nil)
			g.Expect(got.Scopes).To(gomega.Equal(tc.want.Scopes))
			g.Expect(got.Namespaces).To(gomega.Equal(tc.want.Namespaces))
			g.Expect(aud).To(gomega.Equal(tc.aud))
			g.Expect(got.Entitlements).To(gomega.Equal(tc.want.Entitlements))
			g.Expect(got.Unmeetable()).To(gomega.Equal(tc.want.unmeetable))
		})
	}
}

func TestRequirementsOnACredentialHoldingNothing(t *testing.T) {
	// Non-licence credentials hold no entitlements: only a route that names none lets them pass.
	g := gomega.NewWithT(t)
	g.Expect((&Requirements{}).EntitlementsHeld(nil)).To(gomega.BeTrue())
	g.Expect((&Requirements{Entitlements: []string{"", " , "}}).EntitlementsHeld(nil)).To(gomega.BeTrue())
	g.Expect((&Requirements{Entitlements: []string{"", "sso"}}).EntitlementsHeld(nil)).To(gomega.BeFalse())
}

// FuzzParseQuery feeds arbitrary forward-auth queries to the requirement parser: it must never
// panic, and a credential holding nothing in no namespace passes only a query that requires
// nothing it could read.
func FuzzParseQuery(f *testing.F) {
	for _, q := range []string{"", "scopes=a,b&namespace=acme", "audience=a&audience=b", "entitlements=%zz",
		"scopes=a&scopes=b", "scope=admin", "Scopes=x;namespace=y", "namespace=x&namespace=y,acme"} {
		f.Add(q)
	}
	f.Fuzz(func(t *testing.T, q string) {
		req, _ := ParseQuery(q, nil, nil, nil)
		for _, l := range append(append(append([]string(nil), req.Scopes...), req.Namespaces...), req.Entitlements...) {
			if !strings.Contains(q, "=") && l != "" {
				t.Fatalf("a requirement %q from a query without a parameter", l)
			}
		}
		if req.ScopesHeld(nil) && req.EntitlementsHeld(nil) && req.NamespaceAllowed("") {
			for _, l := range append(append([]string(nil), req.Scopes...), req.Entitlements...) {
				if _, _, ok := nextPart(l); ok {
					t.Fatalf("a required %q was met by a credential holding nothing", l)
				}
			}
		}
	})
}

// A forward-auth query is the proxy's configuration: a parameter keycap does not know (a typo, a
// wrong case, a `;` separator) is refused, never ignored, so a misconfigured proxy fails closed.
func TestParseQueryRefusesUnknownParameters(t *testing.T) {
	refused := []string{"scope=admin", "Scopes=admin", "scopes=a&SCOPES=b", "scopes=a;namespace=b", "scopes=a&other=1",
		"scop%65s=a", "namespace=acme&_=/shop/items", "=a", "scopes=a&audience=x;y"}
	for _, q := range refused {
		t.Run(q, func(t *testing.T) {
			g := gomega.NewWithT(t)
			req, _ := ParseQuery(q, nil, nil, nil)
			g.Expect(req.Refusal()).To(gomega.Equal(ReasonUnknownParameter))
			g.Expect(req.ScopesHeld([]string{"a", "admin", "b"})).To(gomega.BeFalse())
			g.Expect(req.NamespaceAllowed("acme")).To(gomega.BeFalse())
		})
	}
	for _, q := range []string{"", "scopes=a", "scopes=a&&namespace=b&", "scopes=&namespace=", "audience=x&entitlements=y"} {
		req, _ := ParseQuery(q, nil, nil, nil)
		gomega.NewWithT(t).Expect(req.Refusal()).To(gomega.Equal(ReasonOK), q)
	}
}

// A repeated requirement parameter narrows, never widens (issue 11): scopes and entitlements
// add up (all must be held), repeated namespace lists are intersected (the credential's
// namespace must be in every one), two different audiences match nothing.
func TestRepeatedRequirementsNarrow(t *testing.T) {
	g := gomega.NewWithT(t)
	req, _ := ParseQuery("namespace=acme&namespace=other", nil, nil, nil)
	g.Expect(req.NamespaceAllowed("acme")).To(gomega.BeFalse())
	g.Expect(req.NamespaceAllowed("other")).To(gomega.BeFalse())
	req, _ = ParseQuery("namespace=x&namespace=y,acme", nil, nil, nil)
	g.Expect(req.NamespaceAllowed("acme")).To(gomega.BeFalse())
	req, _ = ParseQuery("namespace=acme,other&namespace=acme", nil, nil, nil)
	g.Expect(req.NamespaceAllowed("acme")).To(gomega.BeTrue())
	g.Expect(req.NamespaceAllowed("other")).To(gomega.BeFalse())
	req, _ = ParseQuery("namespace=acme&namespace=", nil, nil, nil)
	g.Expect(req.NamespaceAllowed("acme")).To(gomega.BeTrue())
	req, _ = ParseQuery("scopes=a&scopes=b&entitlements=e&entitlements=f", nil, nil, nil)
	g.Expect(req.ScopesHeld([]string{"a"})).To(gomega.BeFalse())
	g.Expect(req.ScopesHeld([]string{"a", "b"})).To(gomega.BeTrue())
	g.Expect(req.EntitlementsHeld([]string{"e"})).To(gomega.BeFalse())
	_, aud := ParseQuery("audience=a&audience=b", nil, nil, nil)
	g.Expect(aud.Unmeetable).To(gomega.BeTrue())
}

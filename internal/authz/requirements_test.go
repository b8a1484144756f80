package authz

import (
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"github.com/onsi/gomega"
)

func TestParseRequirements(t *testing.T) {
	cases := map[string]struct {
		query string
		want  Requirements
	}{
		"every parameter, repeated lists kept apart": {
			query: "scopes=a,b&namespace=acme&audience=reports&entitlements=sso&entitlements=pro&other=x",
			want: Requirements{Scopes: []string{"a,b"}, Namespaces: []string{"acme"}, Audience: "reports",
				Entitlements: []string{"sso", "pro"}},
		},
		"an escaped value is unescaped": {
			query: "audience=https%3A%2F%2Fapi.example",
			want:  Requirements{Audience: "https://api.example"},
		},
		"two different audiences match nothing": {
			query: "audience=a&audience=b",
			want:  Requirements{Audience: "\x00ambiguous"},
		},
		"a value that cannot be unescaped is a requirement nobody meets": {
			query: "entitlements=%zz",
			want:  Requirements{Entitlements: []string{"\x00invalid"}},
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			g := gomega.NewWithT(t)
			got := parseRequirements(tc.query, nil, nil, nil)
			g.Expect(got.Scopes).To(gomega.Equal(tc.want.Scopes))
			g.Expect(got.Namespaces).To(gomega.Equal(tc.want.Namespaces))
			g.Expect(got.Audience).To(gomega.Equal(tc.want.Audience))
			g.Expect(got.Entitlements).To(gomega.Equal(tc.want.Entitlements))
		})
	}
}

func TestRequirementsOnACredentialHoldingNothing(t *testing.T) {
	// Non-licence credentials hold no entitlements: only a route that names none lets them pass.
	g := gomega.NewWithT(t)
	g.Expect(scopesHeld(nil, nil)).To(gomega.BeTrue())
	g.Expect(scopesHeld([]string{"", " , "}, nil)).To(gomega.BeTrue())
	g.Expect(scopesHeld([]string{"", "sso"}, nil)).To(gomega.BeFalse())
}

func TestGRPCLicenseHeaders(t *testing.T) {
	cases := map[string]struct {
		m             map[string]string
		raw           [][2]string
		key, instance string
		present       bool
	}{
		"from the headers map": {m: map[string]string{"licensekey": " k ", "instanceid": "i"}, key: "k", instance: "i", present: true},
		"absent":               {m: map[string]string{"x-api-key": "k"}},
		"from header_map":      {raw: [][2]string{{"LicenseKey", "k"}, {"InstanceID", "i"}}, key: "k", instance: "i", present: true},
		"repeated with two values is invalid": {
			raw: [][2]string{{"licensekey", "k1"}, {"licensekey", "k2"}, {"instanceid", "i"}}, key: "\x00repeated", instance: "i", present: true,
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			g := gomega.NewWithT(t)
			hm := &corev3.HeaderMap{}
			for _, h := range tc.raw {
				hm.Headers = append(hm.Headers, &corev3.HeaderValue{Key: h[0], Value: h[1]})
			}
			key, instance, ok := grpcLicense(tc.m, hm)
			g.Expect([]any{key, instance, ok}).To(gomega.Equal([]any{tc.key, tc.instance, tc.present}))
		})
	}
}

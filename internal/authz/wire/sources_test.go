package wire

import (
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/onsi/gomega"
)

// key is a well-formed keycap key (its checksum is not judged here).
const (
	key   = "kc_5Zb1gYkVbWq3sJ8mN2pR7tX9yA4cD6eF_3kq8Lz"
	other = "kc_7Hf2kLmN9pQ4rS6tU8vW1xY3zA5bC7dE_1a2B3c"
)

func extractHTTP(s *Sources, h map[string][]string) (Presented, Reason) {
	var f Form
	s.FromHTTP(h, &f)
	return s.Extract(&f)
}

func TestExtract(t *testing.T) {
	s := NewSources(DefaultExtraKeyHeaders)
	cases := map[string]struct {
		headers map[string][]string
		want    string
		reason  Reason
		from    []string
		license bool
	}{
		"x-api-key":                               {headers: map[string][]string{"X-Api-Key": {key}}, want: key, from: []string{"x-api-key"}},
		"a bearer, scheme in any case":            {headers: map[string][]string{"Authorization": {"bEaReR  " + key}}, want: key, from: []string{"authorization"}},
		"the configured extra header":             {headers: map[string][]string{"X-Capdata-Token": {key}}, want: key, from: []string{"x-capdata-token"}},
		"the same key in two headers":             {headers: map[string][]string{"X-Api-Key": {key}, "Authorization": {"Bearer " + key}}, want: key, from: []string{"x-api-key", "authorization"}},
		"a header repeated with the same key":     {headers: map[string][]string{"X-Api-Key": {key, key}}, want: key, from: []string{"x-api-key"}},
		"nothing":                                 {headers: map[string][]string{}, reason: ReasonMissing},
		"basic auth only":                         {headers: map[string][]string{"Authorization": {"Basic Zm9vOmJhcg=="}}, reason: ReasonMissing},
		"a scheme that merely starts with bearer": {headers: map[string][]string{"Authorization": {"Bearerx " + key}}, reason: ReasonMissing},
		"an empty bearer":                         {headers: map[string][]string{"Authorization": {"Bearer"}}, reason: ReasonMalformed},
		"an empty x-api-key":                      {headers: map[string][]string{"X-Api-Key": {"  "}}, reason: ReasonMalformed},
		"two different keys":                      {headers: map[string][]string{"X-Api-Key": {key}, "X-Capdata-Token": {other}}, reason: ReasonAmbiguous},
		"two keys joined by a proxy":              {headers: map[string][]string{"X-Api-Key": {key + ", " + other}}, reason: ReasonAmbiguous},
		"a control character":                     {headers: map[string][]string{"X-Api-Key": {"kc_a\x00b"}}, reason: ReasonMalformed},
		"non-UTF-8":                               {headers: map[string][]string{"X-Api-Key": {"\xc3\x28"}}, reason: ReasonMalformed},
		"too long":                                {headers: map[string][]string{"X-Api-Key": {strings.Repeat("a", MaxCredentialLength+1)}}, reason: ReasonMalformed},
		"too many repeats":                        {headers: map[string][]string{"X-Api-Key": strings.Split(strings.TrimSuffix(strings.Repeat(key+",", 20), ","), ",")}, reason: ReasonMalformed},
		"a licence":                               {headers: map[string][]string{"Licensekey": {" " + key}, "Instanceid": {"i"}}, want: key, from: []string{"licensekey"}, license: true},
		"a licence and a key":                     {headers: map[string][]string{"Licensekey": {key}, "X-Api-Key": {other}}, reason: ReasonAmbiguous},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			g := gomega.NewWithT(t)
			p, reason := extractHTTP(s, tc.headers)
			g.Expect(reason).To(gomega.Equal(tc.reason))
			g.Expect(p.Key).To(gomega.Equal(tc.want))
			g.Expect(p.License).To(gomega.Equal(tc.license))
			if tc.from != nil {
				g.Expect(s.HeadersOf(&p)).To(gomega.ConsistOf(tc.from))
			}
		})
	}
}

func TestLicenseHeaders(t *testing.T) {
	s := NewSources(nil)
	cases := map[string]struct {
		key, instance          []string
		want                   Presented
		keyConflict, iConflict bool
	}{
		"one of each, trimmed":                 {key: []string{" k "}, instance: []string{"i"}, want: Presented{Key: "k", Instance: "i", License: true}},
		"repeated with the same value":         {key: []string{"k", "k"}, instance: []string{"i", "i"}, want: Presented{Key: "k", Instance: "i", License: true}},
		"a key repeated with two values":       {key: []string{"k1", "k2"}, instance: []string{"i"}, want: Presented{Key: "k2", Instance: "i", License: true, LicenseConflict: true}},
		"an instance repeated with two values": {key: []string{"k"}, instance: []string{"i1", "i2"}, want: Presented{Key: "k", Instance: "i2", License: true, InstanceConflict: true}},
		"no instance":                          {key: []string{"k"}, want: Presented{Key: "k", License: true}},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			g := gomega.NewWithT(t)
			var f Form
			for _, v := range tc.key {
				f.AddLicenseKey(v)
			}
			for _, v := range tc.instance {
				f.AddInstanceID(v)
			}
			p, reason := s.Extract(&f)
			g.Expect(reason).To(gomega.Equal(ReasonOK))
			g.Expect(p).To(gomega.Equal(tc.want))
		})
	}
}

func TestRemoval(t *testing.T) {
	g := gomega.NewWithT(t)
	s := NewSources(DefaultExtraKeyHeaders)
	p, _ := extractHTTP(s, map[string][]string{"X-Api-Key": {key}, "Authorization": {"Bearer " + key}})
	g.Expect(s.Removal(&p, 0).Headers).To(gomega.ConsistOf("x-api-key", "authorization", HeaderAgent, HeaderParent, HeaderSubject, HeaderEntitlements, HeaderAuthMethod))
	g.Expect(s.Removal(&p, FieldAgent|FieldParent).Headers).To(gomega.ConsistOf("x-api-key", "authorization", HeaderSubject, HeaderEntitlements, HeaderAuthMethod))
	lic := Presented{Key: key, License: true}
	r := s.Removal(&lic, FieldEntitlements)
	g.Expect(r.Headers).To(gomega.ConsistOf(HeaderLicenseKey, HeaderAgent, HeaderParent, HeaderSubject, HeaderAuthMethod))
	sess := Presented{Key: "cookie", Session: true}
	g.Expect(s.Removal(&sess, FieldAuthMethod).Headers).To(gomega.ConsistOf(HeaderAgent, HeaderParent, HeaderSubject, HeaderEntitlements),
		"a session removes no credential header (the cookie is rewritten, not removed)")
	g.Expect(r.Joined).To(gomega.Equal(strings.Join(r.Headers, ",")))
}

func TestSessionCookieIsTheLastSource(t *testing.T) {
	s := NewSources(DefaultExtraKeyHeaders)
	for name, tc := range map[string]struct {
		h      map[string][]string
		want   Presented
		reason Reason
	}{
		"the cookie alone":                  {map[string][]string{"Cookie": {"a=1; keycap_session=abc"}}, Presented{Key: "abc", Session: true}, ReasonOK},
		"a key header wins over the cookie": {map[string][]string{"Cookie": {"keycap_session=abc"}, "X-Api-Key": {key}}, Presented{Key: key, From: 1}, ReasonOK},
		"other cookies only":                {map[string][]string{"Cookie": {"a=1"}}, Presented{}, ReasonMissing},
		"the cookie twice, different":       {map[string][]string{"Cookie": {"keycap_session=a", "keycap_session=b"}}, Presented{Session: true}, ReasonSessionInvalid},
		"an empty cookie":                   {map[string][]string{"Cookie": {"keycap_session="}}, Presented{Session: true}, ReasonSessionInvalid},
	} {
		t.Run(name, func(t *testing.T) {
			g := gomega.NewWithT(t)
			p, reason := extractHTTP(s, tc.h)
			g.Expect(reason).To(gomega.Equal(tc.reason))
			g.Expect(p).To(gomega.Equal(tc.want))
		})
	}
	var f Form
	f.SetCookie("a=1; keycap_session=abc")
	f.AddCookie("keycap_session=abc")
	p, reason := s.Extract(&f)
	if reason != ReasonOK || p.Key != "abc" || f.CookieHeader() != "a=1; keycap_session=abc; keycap_session=abc" {
		t.Fatalf("gRPC headers map and header_map: %v %+v %q", reason, p, f.CookieHeader())
	}
}

// FuzzExtract feeds arbitrary header values to credential extraction, as HTTP headers and as
// Envoy's gRPC ext_authz sends them (repeated values joined with commas in the headers map, or
// raw bytes in header_map): it must never panic, and a credential it returns is one
// printable-ASCII, bounded, comma-free part of the input.
func FuzzExtract(f *testing.F) {
	f.Add(key, "", "", "")
	f.Add("", "Bearer "+key, "", "")
	f.Add(key, "Bearer "+key, key, "")
	f.Add("a,b", "bearer", "\xff", "")
	f.Add("", "Bearer eyJhbGciOiJub25lIn0.e30.", "", "")
	f.Add("", "", "", "kclic_x\nkclic_y")
	s := NewSources(DefaultExtraKeyHeaders)
	f.Fuzz(func(t *testing.T, apiKey, authorization, extra, license string) {
		h := map[string][]string{}
		for name, v := range map[string]string{"X-Api-Key": apiKey, "Authorization": authorization, "X-Capdata-Token": extra, "Licensekey": license} {
			if v != "" {
				h[name] = strings.Split(v, "\n")
			}
		}
		joined := map[string]string{}
		for name, v := range h {
			joined[strings.ToLower(name)] = strings.Join(v, ",")
		}
		for _, fill := range []func(*Form){
			func(f *Form) { s.FromHTTP(h, f) },
			func(f *Form) {
				for i, name := range s.Names() {
					if v, ok := joined[name]; ok {
						f.SetOne(i, v)
					}
				}
				if v, ok := joined[HeaderLicenseKey]; ok {
					f.AddLicenseKey(v)
				}
			},
			func(f *Form) {
				for i, name := range s.Names() {
					for _, v := range h[Canonical(name)] {
						f.Add(i, v)
					}
				}
				for _, v := range h[Canonical(HeaderLicenseKey)] {
					f.AddLicenseKey(v)
				}
			},
		} {
			var form Form
			fill(&form)
			p, reason := s.Extract(&form)
			if reason != ReasonOK {
				if p.Key != "" {
					t.Fatalf("refused with %s but returned a key", reason)
				}
				continue
			}
			if !strings.Contains(strings.ReplaceAll(apiKey+authorization+extra+license, "\n", ","), p.Key) {
				t.Fatalf("returned %q, which is not in the input", p.Key)
			}
			if p.License {
				if apiKey+extra != "" {
					t.Fatal("a licence and a key were not refused as ambiguous")
				}
				continue
			}
			if !ValidCredential(p.Key) || !utf8.ValidString(p.Key) || strings.Contains(p.Key, ",") {
				t.Fatalf("returned an invalid credential %q", p.Key)
			}
			if len(s.HeadersOf(&p)) == 0 || len(s.Removal(&p, 0).Headers) < 5 {
				t.Fatal("no header carried the credential")
			}
		}
	})
}

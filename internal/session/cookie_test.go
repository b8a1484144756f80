package session

import "testing"

func TestFromCookieHeaders(t *testing.T) {
	for name, tc := range map[string]struct {
		headers   []string
		value     string
		found, ok bool
	}{
		"no header":                        {nil, "", false, true},
		"other cookies only":               {[]string{"a=1; b=2"}, "", false, true},
		"keycap's cookie among others":     {[]string{"a=1; keycap_session=abc; b=2"}, "abc", true, true},
		"quoted":                           {[]string{`keycap_session="abc"`}, "abc", true, true},
		"split over two headers":           {[]string{"a=1", "keycap_session=abc"}, "abc", true, true},
		"the same value twice":             {[]string{"keycap_session=abc; keycap_session=abc"}, "abc", true, true},
		"two different values":             {[]string{"keycap_session=abc; keycap_session=xyz"}, "", true, false},
		"a name that only starts the same": {[]string{"keycap_session2=abc"}, "", false, true},
		"no value":                         {[]string{"keycap_session="}, "", true, true},
	} {
		t.Run(name, func(t *testing.T) {
			v, found, ok := FromCookieHeaders(tc.headers)
			if v != tc.value || found != tc.found || ok != tc.ok {
				t.Fatalf("got (%q, %v, %v), want (%q, %v, %v)", v, found, ok, tc.value, tc.found, tc.ok)
			}
		})
	}
}

func TestStripCookie(t *testing.T) {
	for in, want := range map[string]string{
		"":                             "",
		"a=1; b=2":                     "a=1; b=2",
		"keycap_session=abc":           "",
		"a=1; keycap_session=abc; b=2": "a=1; b=2",
		"keycap_session=abc;a=1":       "a=1",
		"a=1; keycap_session=x; keycap_session=y": "a=1",
	} {
		if got := StripCookie(in); got != want {
			t.Errorf("StripCookie(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestSameSiteEvidence(t *testing.T) {
	allowed := []string{"https://portal.example.com"}
	for name, tc := range map[string]struct {
		site, origin string
		want         bool
	}{
		"same-origin fetch":                             {"same-origin", "", true},
		"same-site fetch":                               {"same-site", "https://evil.example", true},
		"cross-site fetch":                              {"cross-site", "https://portal.example.com", false},
		"a navigation the user typed":                   {"none", "", false},
		"no fetch metadata, allowed origin":             {"", "https://portal.example.com", true},
		"no fetch metadata, allowed origin, other case": {"", "HTTPS://PORTAL.example.com", true},
		"no fetch metadata, other origin":               {"", "https://evil.example", false},
		"no fetch metadata, null origin":                {"", "null", false},
		"no evidence at all":                            {"", "", false},
	} {
		t.Run(name, func(t *testing.T) {
			if got := SameSiteEvidence(tc.site, tc.origin, allowed); got != tc.want {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
		})
	}
	if !SafeMethod("GET") || SafeMethod("POST") || SafeMethod("get") {
		t.Fatal("SafeMethod")
	}
}

package routepolicy

import "testing"

func TestNormalizePath(t *testing.T) {
	cases := map[string]struct {
		target, path, alt string
		ok                bool
	}{
		"a clean path is returned as it is":               {"/shop/items", "/shop/items", "", true},
		"the query and fragment are cut off":              {"/admin?x=/public", "/admin", "", true},
		"the root":                                        {"/", "/", "", true},
		"dot-dot climbs":                                  {"/public/../admin", "/admin", "", true},
		"dot-dot at the root stays at the root":           {"/../../admin", "/admin", "", true},
		"a dot segment is dropped":                        {"/./admin/./users", "/admin/users", "", true},
		"repeated slashes merge":                          {"//admin///users", "/admin/users", "", true},
		"a trailing slash is kept":                        {"/admin/", "/admin/", "", true},
		"a final dot-dot names a directory":               {"/admin/users/..", "/admin/", "", true},
		"percent-encoded letters decode":                  {"/%61dmin", "/admin", "", true},
		"encoded dots are dot segments, as Envoy decodes": {"/public/%2e%2E/admin", "/admin", "", true},
		"upper case is lowered":                           {"/ADMIN/Users", "/admin/users", "", true},
		"a segment of dots that is not a dot segment":     {"/a.../b", "/a.../b", "", true},
		"a file name with a dot":                          {"/admin/.env", "/admin/.env", "", true},
		"semicolon parameters give an alternative":        {"/admin;x=1/users", "/admin;x=1/users", "/admin/users", true},
		"a semicolon hides a dot-dot from some upstreams": {"/public/..;/admin", "/public/..;/admin", "/admin", true},
		"an encoded slash is ambiguous":                   {"/admin%2Fusers", "", "", false},
		"an encoded backslash is ambiguous":               {"/public/..%5Cadmin", "", "", false},
		"a raw backslash is ambiguous":                    {"/public/..\\admin", "", "", false},
		"an encoded percent is ambiguous":                 {"/%2561dmin", "", "", false},
		"an encoded NUL is refused":                       {"/admin%00.png", "", "", false},
		"a truncated escape is refused":                   {"/admin%2", "", "", false},
		"an invalid escape is refused":                    {"/admin%zz", "", "", false},
		"a target without a leading slash is refused":     {"admin", "", "", false},
		"an empty target is refused":                      {"", "", "", false},
		"an asterisk target is refused":                   {"*", "", "", false},
		"a control character is refused":                  {"/ad\tmin", "", "", false},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			path, alt, ok := NormalizePath(c.target)
			if path != c.path || alt != c.alt || ok != c.ok {
				t.Errorf("NormalizePath(%q) = %q, %q, %v; want %q, %q, %v", c.target, path, alt, ok, c.path, c.alt, c.ok)
			}
		})
	}
}

func TestNormalizePathCleanCostsNoAllocation(t *testing.T) {
	if n := testing.AllocsPerRun(100, func() { NormalizePath("/shop/items/42?x=1") }); n != 0 {
		t.Errorf("a clean path allocated %v times", n)
	}
}

package routepolicy

import "strings"

// NormalizePath returns the path an upstream serves for target, the request target as the proxy
// received it (path and optional query, still percent-encoded), in the form rules are matched
// against:
//
//   - the query and fragment are cut off;
//   - percent-encodings are decoded (Envoy's normalize_path and nginx decode them too, so
//     "/%61dmin" is "/admin");
//   - dot segments are removed as RFC 3986 section 5.2.4 says ("/admin/../x" is "/x", "/./admin"
//     is "/admin"), after decoding, so "%2e%2e" is "..", as Envoy and nginx resolve them;
//   - repeated slashes are merged ("//admin" is "/admin", as nginx's merge_slashes does);
//   - ASCII letters are lower-cased: rules match case-insensitively, so an upstream that routes
//     without regard to case cannot be reached around a rule.
//
// A trailing slash is kept ("/admin/" stays "/admin/"); rules match segment by segment, so it
// does not matter to them.
//
// ok is false when the path's meaning depends on the upstream, and the caller must refuse the
// request rather than guess: an encoded slash or backslash ("%2F", "%5C", which one upstream
// decodes into a separator and another keeps inside a segment), an encoded percent sign ("%25",
// decoded twice by some), an encoded "?" or "#" (a second decoding would cut the path there), a raw backslash (a separator to some servers), a NUL or other control
// character, an invalid percent-encoding, or a target that is not a path (no leading "/").
//
// alt is the same path with every ";parameter" removed from each segment (Tomcat and Spring
// strip them, so "/admin;x=1/users" is served as "/admin/users"); it is empty when the path has
// no ';'. A caller applies the rules matching either.
func NormalizePath(target string) (path, alt string, ok bool) {
	if i := strings.IndexAny(target, "?#"); i >= 0 {
		target = target[:i]
	}
	if target == "" || target[0] != '/' {
		return "", "", false
	}
	if clean(target) {
		return target, "", true
	}
	// Decode into a buffer, refusing the ambiguous encodings.
	buf := make([]byte, 0, len(target))
	semicolon := false
	for i := 0; i < len(target); i++ {
		c := target[i]
		switch c {
		case '%':
			if i+2 >= len(target) {
				return "", "", false
			}
			hi, ok1 := unhex(target[i+1])
			lo, ok2 := unhex(target[i+2])
			if !ok1 || !ok2 {
				return "", "", false
			}
			c = hi<<4 | lo
			// An encoded "?" or "#" is part of the path to an upstream, but a second reading
			// (a proxy decoding once more) would cut the path there: ambiguous as well.
			if c == '/' || c == '\\' || c == '%' || c == '?' || c == '#' {
				return "", "", false
			}
			i += 2
		case '\\':
			return "", "", false
		}
		if c < 0x20 || c == 0x7f {
			return "", "", false
		}
		if c == ';' {
			semicolon = true
		}
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		buf = append(buf, c)
	}
	decoded := string(buf)
	path = removeDotSegments(decoded)
	if semicolon {
		alt = removeDotSegments(stripParams(decoded))
	}
	return path, alt, true
}

// clean reports whether p needs no work: no percent-encoding, backslash, control or upper-case
// character, semicolon, empty segment or dot segment. Most requests take this path and cost no
// allocation.
func clean(p string) bool {
	for i := 0; i < len(p); i++ {
		c := p[i]
		switch {
		case c == '%', c == '\\', c == ';', c < 0x20, c == 0x7f, 'A' <= c && c <= 'Z':
			return false
		case c == '/':
			if i+1 < len(p) && p[i+1] == '/' {
				return false
			}
		case c == '.':
			// A dot segment: "." or ".." between slashes (or at the end).
			if p[i-1] == '/' {
				j := i + 1
				if j < len(p) && p[j] == '.' {
					j++
				}
				if j == len(p) || p[j] == '/' {
					return false
				}
			}
		}
	}
	return true
}

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// removeDotSegments resolves "." and ".." segments and merges repeated slashes of a decoded path
// that starts with '/'. A ".." at the root stays at the root. A trailing slash, or a final dot
// segment (which names a directory), leaves the result ending in '/'.
func removeDotSegments(p string) string {
	segs := make([]string, 0, strings.Count(p, "/"))
	trailing := false
	for _, s := range strings.Split(p[1:], "/") {
		trailing = false
		switch s {
		case "":
			trailing = true
		case ".":
			trailing = true
		case "..":
			if len(segs) > 0 {
				segs = segs[:len(segs)-1]
			}
			trailing = true
		default:
			segs = append(segs, s)
		}
	}
	out := "/" + strings.Join(segs, "/")
	if trailing && len(segs) > 0 {
		out += "/"
	}
	return out
}

// stripParams removes ";..." from every segment of a decoded path.
func stripParams(p string) string {
	var b strings.Builder
	b.Grow(len(p))
	inParam := false
	for i := 0; i < len(p); i++ {
		switch c := p[i]; {
		case c == '/':
			inParam = false
			b.WriteByte(c)
		case c == ';':
			inParam = true
		case !inParam:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// Package plaintext finds keycap keys in text: as they are, inside a longer text, with whitespace
// put into them, or base64-encoded. The admission webhook refuses manifests that hold one. It
// imports nothing but internal/keys, so fuzzing it instruments no client library.
package plaintext

import (
	"encoding/base64"
	"strings"
	"unicode"

	"github.com/keycap-dev/keycap/internal/keys"
)

// Contains reports whether s holds a keycap key with a valid checksum: as it is, also inside a
// longer text ("my key is kc_..."), with whitespace put into it ("kc_abc def_xyz", a key wrapped
// over lines), or base64-encoded (standard or URL alphabet, padded or not, on its own or inside a
// longer encoded text). The CRC-32 makes a false match practically impossible.
func Contains(s string) bool {
	if containsPlainKey(s) {
		return true
	}
	joined := strings.Map(func(r rune) rune {
		if unicode.IsSpace(r) {
			return -1
		}
		return r
	}, s)
	if joined != s && containsPlainKey(joined) {
		return true
	}
	return containsEncodedKey(joined)
}

// minEncodedKey is the length of the shortest key in base64.
var minEncodedKey = base64.RawStdEncoding.EncodedLen(keys.MinPrefixLength + 1 + keys.RandomLength + 1 + keys.ChecksumLength)

// containsEncodedKey reports whether a run of base64 characters in s decodes to text holding a
// key. The encoding may start anywhere in the run (glued to other characters in front), so each
// of the four alignments is decoded.
func containsEncodedKey(s string) bool {
	isB64 := func(c byte) bool {
		return c >= '0' && c <= '9' || c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c == '+' || c == '/' || c == '-' || c == '_'
	}
	for i := 0; i < len(s); {
		if !isB64(s[i]) {
			i++
			continue
		}
		j := i
		for j < len(s) && isB64(s[j]) {
			j++
		}
		if run := s[i:j]; len(run) >= minEncodedKey {
			// One alphabet for both: the URL alphabet's - and _ are the standard one's + and /.
			run = strings.NewReplacer("-", "+", "_", "/").Replace(run)
			for off := 0; off < 4 && len(run)-off >= minEncodedKey; off++ {
				enc := run[off:]
				if len(enc)%4 == 1 {
					enc = enc[:len(enc)-1]
				}
				if dec, err := base64.RawStdEncoding.DecodeString(enc); err == nil && containsPlainKey(string(dec)) {
					return true
				}
			}
		}
		i = j
	}
	return false
}

// containsPlainKey reports whether s contains a keycap key with a valid checksum anywhere, also
// inside a longer text: the shape is found by its "_<30 base62>_<6 base62>" tail and every
// possible prefix in front of it is tried.
func containsPlainKey(s string) bool {
	const tail = 1 + keys.RandomLength + 1 + keys.ChecksumLength
	for i := 0; i+tail <= len(s); i++ {
		if s[i] != '_' || s[i+1+keys.RandomLength] != '_' ||
			!keys.IsBase62(s[i+1:i+1+keys.RandomLength]) || !keys.IsBase62(s[i+2+keys.RandomLength:i+tail]) {
			continue
		}
		for l := keys.MinPrefixLength; l <= keys.MaxPrefixLength && l <= i; l++ {
			if keys.LooksLikeKey(s[i-l : i+tail]) {
				return true
			}
		}
	}
	return false
}

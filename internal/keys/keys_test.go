package keys

import (
	"errors"
	"strings"
	"testing"
)

func TestGenerateIsWellFormedAndUnique(t *testing.T) {
	seen := map[string]bool{}
	for range 1000 {
		key, err := Generate("acme")
		if err != nil {
			t.Fatal(err)
		}
		if err := Check(key); err != nil {
			t.Fatalf("Check(%q) = %v, want nil", key, err)
		}
		if !strings.HasPrefix(key, "acme_") || len(key) != len("acme")+1+RandomLength+1+ChecksumLength {
			t.Fatalf("unexpected shape %q", key)
		}
		if seen[key] {
			t.Fatalf("duplicate key %q", key)
		}
		seen[key] = true
	}
}

func TestCheck(t *testing.T) {
	good, err := Generate("kc")
	if err != nil {
		t.Fatal(err)
	}
	flipped := []byte(good)
	// Change one character of the random part: the checksum must catch it.
	if flipped[5] == 'a' {
		flipped[5] = 'b'
	} else {
		flipped[5] = 'a'
	}
	cases := map[string]struct {
		key  string
		want error
	}{
		"a generated key is accepted":                 {good, nil},
		"a single changed character fails checksum":   {string(flipped), ErrChecksum},
		"the empty string is malformed":               {"", ErrMalformed},
		"a key without separators is malformed":       {strings.ReplaceAll(good, "_", ""), ErrMalformed},
		"a truncated checksum is malformed":           {good[:len(good)-1], ErrMalformed},
		"an uppercase prefix is malformed":            {"KC" + good[2:], ErrMalformed},
		"a one-letter prefix is malformed":            {"k" + good[2:], ErrMalformed},
		"non-base62 characters are malformed":         {good[:4] + "-" + good[5:], ErrMalformed},
		"a JWT is malformed":                          {"eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2ln", ErrMalformed},
		"a very long string is malformed":             {strings.Repeat("a", 10000), ErrMalformed},
		"non-UTF-8 bytes are malformed":               {"kc_\xff\xfe" + good[5:], ErrMalformed},
		"an extra separator in the random part fails": {good[:10] + "_" + good[11:], ErrMalformed},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			if err := Check(tc.key); !errors.Is(err, tc.want) {
				t.Fatalf("Check(%q) = %v, want %v", tc.key, err, tc.want)
			}
		})
	}
}

// TestChecksumKnownVectors pins the checksum encoding: secret scanners and other implementations
// recognise keycap keys by it, so it must never change. The expected values were computed outside
// this package (CRC-32/IEEE, then 6 base62 digits, most significant first, alphabet 0-9A-Za-z);
// "123456789" is the standard CRC-32 check input (0xCBF43926).
func TestChecksumKnownVectors(t *testing.T) {
	cases := map[string]struct{ body, want string }{
		"the CRC-32 check value":            {"123456789", "3jZRME"},
		"the empty string (CRC 0)":          {"", "000000"},
		"a key body with prefix and random": {"acme_0123456789ABCDEFGHIJabcdefghij", "3FF2AH"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			if got := checksum(tc.body); got != tc.want {
				t.Fatalf("checksum(%q) = %q, want %q", tc.body, got, tc.want)
			}
		})
	}
	// A complete key built outside this package is accepted, and one with the checksum of
	// another encoding (hex of the CRC, the same digits least significant first) is refused.
	const known = "acme_0123456789ABCDEFGHIJabcdefghij_3FF2AH"
	if err := Check(known); err != nil {
		t.Fatalf("Check(%q) = %v, want nil", known, err)
	}
	for _, wrong := range []string{"acme_0123456789ABCDEFGHIJabcdefghij_HA2FF3", "acme_0123456789ABCDEFGHIJabcdefghij_3ff2ah"} {
		if err := Check(wrong); !errors.Is(err, ErrChecksum) {
			t.Fatalf("Check(%q) = %v, want %v", wrong, err, ErrChecksum)
		}
	}
}

func TestDigestHintAndKeyID(t *testing.T) {
	// Known SHA-256 of "abc".
	if got, want := Digest("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"; got != want {
		t.Fatalf("Digest = %s, want %s", got, want)
	}
	key, _ := Generate("acme")
	if got := Hint(key); got != "acme_..."+key[len(key)-4:] {
		t.Fatalf("Hint = %q", got)
	}
	if strings.Contains(Hint(key), key[5:20]) {
		t.Fatal("hint reveals the random part")
	}
	if got := KeyID(Digest(key)); !strings.HasPrefix(got, "kid_") || len(got) != 20 {
		t.Fatalf("KeyID = %q", got)
	}
	if Prefix(key) != "acme" || Prefix("junk") != "" {
		t.Fatal("Prefix")
	}
}

func TestDigestFromKeyHash(t *testing.T) {
	d := Digest("my own key")
	cases := map[string]struct{ in, want string }{
		"a valid keyHash gives its digest": {"sha256:" + d, d},
		"uppercase hex is refused":         {"sha256:" + strings.ToUpper(d), ""},
		"a missing algorithm is refused":   {d, ""},
		"a short digest is refused":        {"sha256:" + d[:10], ""},
		"another algorithm is refused":     {"sha512:" + d, ""},
		"non-hex characters are refused":   {"sha256:" + strings.Repeat("z", 64), ""},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			if got := DigestFromKeyHash(tc.in); got != tc.want {
				t.Fatalf("got %q want %q", got, tc.want)
			}
		})
	}
}

func TestGenerateRejectsBadPrefix(t *testing.T) {
	for _, p := range []string{"", "a", "Acme", "1abc", "has_underscore", strings.Repeat("a", 17)} {
		if _, err := Generate(p); err == nil {
			t.Errorf("Generate(%q) succeeded", p)
		}
	}
}

func FuzzCheck(f *testing.F) {
	good, _ := Generate("kc")
	for _, s := range []string{good, "", "kc__", "kc_" + strings.Repeat("a", 30) + "_aaaaaa", "\xff_\xff_\xff"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		err := Check(s)
		if err == nil {
			// Anything accepted must be a key this package could have produced.
			body := s[:strings.LastIndexByte(s, '_')]
			if checksum(body) != s[len(body)+1:] || Prefix(s) == "" || Hint(s) == "" {
				t.Fatalf("accepted %q inconsistently", s)
			}
		} else if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrChecksum) {
			t.Fatalf("unexpected error %v", err)
		}
	})
}

package plaintext

import (
	"encoding/base64"
	"testing"

	"github.com/keycap-dev/keycap/internal/keys"
)

// FuzzContains feeds the scanner text from a manifest's labels, annotations, finalizers and spec
// (outside input, read by the admission webhook): it never panics, and a key put anywhere in the
// text, as it is or base64-encoded with the text around it, is always found.
func FuzzContains(f *testing.F) {
	key, err := keys.Generate("kc")
	if err != nil {
		f.Fatal(err)
	}
	// The seed corpus is testdata/fuzz/FuzzContains.
	f.Fuzz(func(t *testing.T, s, before, after string) {
		_ = Contains(s)
		if in := before + key + after; !Contains(in) {
			t.Fatalf("the key was not found in %q", in)
		}
		if in := base64.StdEncoding.EncodeToString([]byte(before + key + after)); !Contains(in) {
			t.Fatalf("the base64-encoded key was not found in %q", in)
		}
		if in := base64.RawURLEncoding.EncodeToString([]byte(before + key + after)); !Contains(in) {
			t.Fatalf("the URL-safe base64-encoded key was not found in %q", in)
		}
	})
}

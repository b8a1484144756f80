package licensefile

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"testing"
)

// FuzzVerify feeds arbitrary licence files to Verify and KeyID: they never panic, and a file
// Verify accepts carries exactly the genuine payload.
func FuzzVerify(f *testing.F) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		f.Fatal(err)
	}
	genuine, err := Sign(testPayload(), "lic-kid", priv)
	if err != nil {
		f.Fatal(err)
	}
	want, err := Verify(genuine, pub, t0)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(genuine)
	f.Add(bytes.ReplaceAll(genuine, []byte("\n"), []byte("\r\n")))
	f.Add([]byte(BeginLine + "\n" + "eyJhbGciOiJub25lIn0.e30." + "\n" + EndLine + "\n"))
	f.Add(genuine[:len(genuine)/2])
	f.Fuzz(func(t *testing.T, file []byte) {
		_, _ = KeyID(file)
		got, err := Verify(file, pub, t0)
		if err != nil {
			return
		}
		if got.LicenseID != want.LicenseID || got.KeyDigest != want.KeyDigest || got.MaxInstances != want.MaxInstances ||
			got.Product != want.Product || got.Namespace != want.Namespace || len(got.Entitlements) != len(want.Entitlements) {
			t.Fatalf("accepted a payload other than the genuine one: %+v", got)
		}
	})
}

package apptoken

import (
	"crypto/ed25519"
	"crypto/rand"
	"strings"
	"testing"
	"time"

	clocktesting "k8s.io/utils/clock/testing"
)

type fuzzKeys map[string]ed25519.PublicKey

func (k fuzzKeys) PublicKey(kid string) (ed25519.PublicKey, bool) { p, ok := k[kid]; return p, ok }

type fuzzSigner struct {
	kid string
	key ed25519.PrivateKey
}

func (s fuzzSigner) Current() (string, ed25519.PrivateKey) { return s.kid, s.key }

// FuzzVerify feeds arbitrary tokens to the verifier: it never panics, and the only token it
// accepts is the genuine one (no other encoding of it, no change to its header or claims).
func FuzzVerify(f *testing.F) {
	now := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		f.Fatal(err)
	}
	issued, err := Issue(fuzzSigner{"kid-1", priv}, Input{Issuer: "https://keycap.test", KeyID: "kat_0123", Subject: "acme/x",
		Audiences: []string{"reports"}, Org: "acme", Scopes: []string{"a"}, IssuedAt: now, Lifetime: time.Hour})
	if err != nil {
		f.Fatal(err)
	}
	genuine := issued.Token
	parts := strings.Split(genuine, ".")
	f.Add(genuine)
	f.Add(parts[0] + "." + parts[1] + ".")
	f.Add("eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0." + parts[1] + ".")
	f.Add(parts[0] + "." + parts[1] + "x." + parts[2])
	f.Add(genuine + "=")
	f.Fuzz(func(t *testing.T, token string) {
		v := NewVerifier(fuzzKeys{"kid-1": pub}, VerifierOptions{Issuer: "https://keycap.test", Clock: clocktesting.NewFakeClock(now)})
		got, err := v.Verify(token, "")
		if err != nil {
			if ReasonOf(err) == "" {
				t.Fatal("an error without a reason")
			}
			return
		}
		if token != genuine {
			t.Fatalf("accepted %q, which is not the genuine token", token)
		}
		if got.KeyID != "kat_0123" || got.Org != "acme" {
			t.Fatalf("verified claims %+v", got)
		}
	})
}

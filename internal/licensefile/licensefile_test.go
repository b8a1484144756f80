package licensefile

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/onsi/gomega"
)

var t0 = time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC)

func testPayload() Payload {
	exp := t0.Add(365 * 24 * time.Hour)
	return Payload{LicenseID: "kid_0011223344556677", Namespace: "acme", Name: "cap-enterprise", Product: "cap",
		Customer: "Acme Corp", Plan: "enterprise", Entitlements: []string{"sso", "audit"}, MaxInstances: 5,
		KeyDigest: strings.Repeat("ab", 32), IssuedAt: t0, ExpiresAt: &exp}
}

func TestSignVerifyRoundTrip(t *testing.T) {
	g := gomega.NewWithT(t)
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	file, err := Sign(testPayload(), "lic-kid", priv)
	g.Expect(err).NotTo(gomega.HaveOccurred())
	g.Expect(string(file)).To(gomega.HavePrefix(BeginLine + "\n"))
	g.Expect(string(file)).To(gomega.HaveSuffix(EndLine + "\n"))

	p, err := Verify(file, pub, t0.Add(time.Hour))
	g.Expect(err).NotTo(gomega.HaveOccurred())
	g.Expect(p.Product).To(gomega.Equal("cap"))
	g.Expect(p.Entitlements).To(gomega.Equal([]string{"sso", "audit"}))
	g.Expect(p.MaxInstances).To(gomega.Equal(int32(5)))
	kid, err := KeyID(file)
	g.Expect(err).NotTo(gomega.HaveOccurred())
	g.Expect(kid).To(gomega.Equal("lic-kid"))
}

func TestFileIsAStandardJWS(t *testing.T) {
	g := gomega.NewWithT(t)
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	file, err := Sign(testPayload(), "lic-kid", priv)
	g.Expect(err).NotTo(gomega.HaveOccurred())
	jws := strings.TrimSpace(strings.TrimSuffix(strings.TrimPrefix(strings.TrimSpace(string(file)), BeginLine), EndLine))
	// An independent JOSE implementation verifies the signature.
	_, err = jwt.NewParser(jwt.WithValidMethods([]string{"EdDSA"}), jwt.WithoutClaimsValidation()).
		Parse(jws, func(*jwt.Token) (any, error) { return pub, nil })
	g.Expect(err).NotTo(gomega.HaveOccurred())
}

func TestVerifyRefuses(t *testing.T) {
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	otherPub, _, _ := ed25519.GenerateKey(rand.Reader)
	good, err := Sign(testPayload(), "lic-kid", priv)
	if err != nil {
		t.Fatal(err)
	}
	jws := strings.Split(strings.TrimSpace(string(good)), "\n")[1]
	parts := strings.Split(jws, ".")

	cases := map[string]struct {
		file []byte
		pub  ed25519.PublicKey
		now  time.Time
		want error
	}{
		"a file checked with another public key is refused": {file: good, pub: otherPub, now: t0, want: ErrSignature},
		"a file whose payload was edited is refused": {
			file: []byte(parts[0] + "." + editPayload(t, parts[1]) + "." + parts[2]), pub: pub, now: t0, want: ErrSignature},
		"a file with alg none is refused": {
			file: []byte(b64([]byte(`{"alg":"none","kid":"lic-kid"}`)) + "." + parts[1] + "." + parts[2]), pub: pub, now: t0, want: ErrMalformed},
		"an expired licence is refused":     {file: good, pub: pub, now: t0.Add(366 * 24 * time.Hour), want: ErrExpired},
		"garbage is refused":                {file: []byte("hello"), pub: pub, now: t0, want: ErrMalformed},
		"a truncated armour is refused":     {file: bytes.TrimSuffix(bytes.TrimSpace(good), []byte(EndLine)), pub: pub, now: t0, want: ErrMalformed},
		"a bare JWS without armour is fine": {file: []byte(jws), pub: pub, now: t0, want: nil},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			g := gomega.NewWithT(t)
			_, err := Verify(tc.file, tc.pub, tc.now)
			if tc.want == nil {
				g.Expect(err).NotTo(gomega.HaveOccurred())
				return
			}
			g.Expect(err).To(gomega.MatchError(tc.want))
		})
	}
}

func editPayload(t *testing.T, part string) string {
	raw, err := base64.RawURLEncoding.DecodeString(part)
	if err != nil {
		t.Fatal(err)
	}
	edited := strings.Replace(string(raw), `"maxInstances":5`, `"maxInstances":500`, 1)
	if edited == string(raw) {
		t.Fatal("edit changed nothing")
	}
	return b64([]byte(edited))
}

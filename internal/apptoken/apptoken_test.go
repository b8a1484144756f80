package apptoken

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/onsi/gomega"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/keycap-dev/keycap/internal/signing"
)

const testIssuer = "https://keycap.test"

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// testKeys is a KeyLookup over fixed keys that counts lookups, so a test can tell a cache hit
// (no lookup, no signature check) from a verification.
type testKeys struct {
	kid     string
	priv    ed25519.PrivateKey
	lookups atomic.Int64
}

func newTestKeys(t *testing.T) *testKeys {
	t.Helper()
	k, err := signing.NewKey(t0)
	if err != nil {
		t.Fatal(err)
	}
	return &testKeys{kid: k.ID, priv: k.Private}
}

func (k *testKeys) Current() (string, ed25519.PrivateKey) { return k.kid, k.priv }

func (k *testKeys) PublicKey(kid string) (ed25519.PublicKey, bool) {
	k.lookups.Add(1)
	if kid != k.kid {
		return nil, false
	}
	return k.priv.Public().(ed25519.PublicKey), true
}

func validInput() Input {
	return Input{Issuer: testIssuer, KeyID: "kat_0123456789abcdef", Subject: "acme/ci", Audiences: []string{"videos", "billing"},
		Org: "acme", Scopes: []string{"videos:read"}, IssuedAt: t0, Lifetime: time.Hour}
}

func issue(t *testing.T, keys Signer, in Input) string {
	t.Helper()
	issued, err := Issue(keys, in)
	if err != nil {
		t.Fatal(err)
	}
	return issued.Token
}

// signRaw signs arbitrary claims with any method and key, the way an attacker would.
func signRaw(t *testing.T, method jwt.SigningMethod, kid string, claims jwt.Claims, key any) string {
	t.Helper()
	token := jwt.NewWithClaims(method, claims)
	if kid != "" {
		token.Header["kid"] = kid
	}
	s, err := token.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func claimsOf(in Input) Claims {
	return Claims{RegisteredClaims: jwt.RegisteredClaims{Issuer: in.Issuer, Subject: in.Subject, Audience: in.Audiences,
		ExpiresAt: jwt.NewNumericDate(in.IssuedAt.Add(in.Lifetime)), NotBefore: jwt.NewNumericDate(in.IssuedAt),
		IssuedAt: jwt.NewNumericDate(in.IssuedAt), ID: in.KeyID + ".x"}, Org: in.Org, Scopes: in.Scopes}
}

func TestIssuedTokenVerifiesWithItsClaims(t *testing.T) {
	g := gomega.NewWithT(t)
	keys := newTestKeys(t)
	issued, err := Issue(keys, validInput())
	g.Expect(err).NotTo(gomega.HaveOccurred())
	g.Expect(issued.SigningKeyID).To(gomega.Equal(keys.kid))

	v := NewVerifier(keys, VerifierOptions{Issuer: testIssuer, Clock: clocktesting.NewFakePassiveClock(t0.Add(time.Minute))})
	got, err := v.Verify(issued.Token, "videos")
	g.Expect(err).NotTo(gomega.HaveOccurred())
	g.Expect(got.KeyID).To(gomega.Equal("kat_0123456789abcdef"))
	g.Expect(got.ID).To(gomega.HavePrefix("kat_0123456789abcdef."))
	g.Expect(got.Org).To(gomega.Equal("acme"))
	g.Expect(got.Subject).To(gomega.Equal("acme/ci"))
	g.Expect(got.Scopes).To(gomega.Equal([]string{"videos:read"}))
	g.Expect(got.ExpiresAt).To(gomega.BeTemporally("==", t0.Add(time.Hour)))
	g.Expect(got.SigningKeyID).To(gomega.Equal(keys.kid))
	g.Expect(LooksLikeJWT(issued.Token)).To(gomega.BeTrue())

	again, err := Issue(keys, validInput())
	g.Expect(err).NotTo(gomega.HaveOccurred())
	g.Expect(again.Claims.ID).NotTo(gomega.Equal(issued.Claims.ID), "every token has its own jti")
}

func TestVerifyRefusesAttacks(t *testing.T) {
	keys := newTestKeys(t)
	pub := keys.priv.Public().(ed25519.PublicKey)
	_, otherPriv, _ := ed25519.GenerateKey(rand.Reader)
	now := t0.Add(10 * time.Minute)
	valid := issue(t, keys, validInput())

	cases := map[string]struct {
		token    func(t *testing.T) string
		audience string
		want     Reason
	}{
		"a token with alg none is refused": {
			token: func(t *testing.T) string {
				return signRaw(t, jwt.SigningMethodNone, keys.kid, claimsOf(validInput()), jwt.UnsafeAllowNoneSignatureType)
			},
			want: ReasonAlgorithmNotAllowed,
		},
		"an HS256 token whose HMAC secret is the public key is refused": {
			token: func(t *testing.T) string {
				return signRaw(t, jwt.SigningMethodHS256, keys.kid, claimsOf(validInput()), []byte(pub))
			},
			want: ReasonAlgorithmNotAllowed,
		},
		"an HS256 token keyed with the base64 of the public key is refused": {
			token: func(t *testing.T) string {
				return signRaw(t, jwt.SigningMethodHS256, keys.kid, claimsOf(validInput()),
					[]byte(base64.RawURLEncoding.EncodeToString(pub)))
			},
			want: ReasonAlgorithmNotAllowed,
		},
		"an expired token is refused": {
			token: func(t *testing.T) string {
				in := validInput()
				in.IssuedAt = now.Add(-2 * time.Hour)
				return issue(t, keys, in)
			},
			want: ReasonExpired,
		},
		"a token not valid yet is refused": {
			token: func(t *testing.T) string {
				in := validInput()
				in.IssuedAt = now.Add(5 * time.Minute)
				return issue(t, keys, in)
			},
			want: ReasonNotYetValid,
		},
		"a token from another issuer is refused": {
			token: func(t *testing.T) string {
				in := validInput()
				in.Issuer = "https://evil.example"
				return issue(t, keys, in)
			},
			want: ReasonWrongIssuer,
		},
		"a token for another audience is refused where the route requires one": {
			token:    func(*testing.T) string { return valid },
			audience: "payroll",
			want:     ReasonWrongAudience,
		},
		"a token with an unknown kid is refused": {
			token: func(t *testing.T) string {
				return signRaw(t, jwt.SigningMethodEdDSA, "not-a-published-kid", claimsOf(validInput()), otherPriv)
			},
			want: ReasonUnknownKey,
		},
		"a token without kid is refused": {
			token: func(t *testing.T) string {
				return signRaw(t, jwt.SigningMethodEdDSA, "", claimsOf(validInput()), keys.priv)
			},
			want: ReasonMalformed,
		},
		"a token signed by another key under a published kid is refused": {
			token: func(t *testing.T) string {
				return signRaw(t, jwt.SigningMethodEdDSA, keys.kid, claimsOf(validInput()), otherPriv)
			},
			want: ReasonInvalidSignature,
		},
		"a token whose payload was tampered with is refused": {
			token: func(t *testing.T) string {
				parts := strings.Split(valid, ".")
				payload, err := base64.RawURLEncoding.DecodeString(parts[1])
				if err != nil {
					t.Fatal(err)
				}
				forged := strings.Replace(string(payload), `"videos:read"`, `"videos:admin"`, 1)
				if forged == string(payload) {
					t.Fatal("tampering changed nothing")
				}
				return parts[0] + "." + base64.RawURLEncoding.EncodeToString([]byte(forged)) + "." + parts[2]
			},
			want: ReasonInvalidSignature,
		},
		"a token without exp is refused": {
			token: func(t *testing.T) string {
				c := claimsOf(validInput())
				c.ExpiresAt = nil
				return signRaw(t, jwt.SigningMethodEdDSA, keys.kid, c, keys.priv)
			},
			want: ReasonMalformed,
		},
		"garbage is refused": {
			token: func(*testing.T) string { return "eyJhbGciOi.not.a-token" },
			want:  ReasonMalformed,
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			g := gomega.NewWithT(t)
			v := NewVerifier(keys, VerifierOptions{Issuer: testIssuer, Clock: clocktesting.NewFakePassiveClock(now)})
			got, err := v.Verify(tc.token(t), tc.audience)
			g.Expect(err).To(gomega.HaveOccurred())
			g.Expect(got).To(gomega.BeNil())
			g.Expect(ReasonOf(err)).To(gomega.Equal(tc.want), "error: %v", err)
		})
	}

	t.Run("the valid token itself is accepted (the cases above fail for their own reason)", func(t *testing.T) {
		g := gomega.NewWithT(t)
		v := NewVerifier(keys, VerifierOptions{Issuer: testIssuer, Clock: clocktesting.NewFakePassiveClock(now)})
		_, err := v.Verify(valid, "videos")
		g.Expect(err).NotTo(gomega.HaveOccurred())
	})
}

func TestVerifyToleratesSmallSkewOnly(t *testing.T) {
	g := gomega.NewWithT(t)
	keys := newTestKeys(t)
	token := issue(t, keys, validInput())
	clk := clocktesting.NewFakePassiveClock(t0.Add(-10 * time.Second))
	v := NewVerifier(keys, VerifierOptions{Issuer: testIssuer, Leeway: 30 * time.Second, Clock: clk})
	_, err := v.Verify(token, "")
	g.Expect(err).NotTo(gomega.HaveOccurred(), "a token issued 10s in the future is within leeway")

	clk.SetTime(t0.Add(time.Hour + 29*time.Second))
	_, err = v.Verify(token, "")
	g.Expect(err).NotTo(gomega.HaveOccurred(), "exp + 29s is within leeway")
	clk.SetTime(t0.Add(time.Hour + 30*time.Second))
	_, err = v.Verify(token, "")
	g.Expect(ReasonOf(err)).To(gomega.Equal(ReasonExpired), "the cached token expires too")
	g.Expect(v.CacheLen()).To(gomega.Equal(0), "an expired token leaves the cache")
}

func TestRepeatedTokenIsServedFromCache(t *testing.T) {
	g := gomega.NewWithT(t)
	keys := newTestKeys(t)
	token := issue(t, keys, validInput())
	v := NewVerifier(keys, VerifierOptions{Issuer: testIssuer, Clock: clocktesting.NewFakePassiveClock(t0)})

	_, err := v.Verify(token, "videos")
	g.Expect(err).NotTo(gomega.HaveOccurred())
	g.Expect(keys.lookups.Load()).To(gomega.Equal(int64(1)))
	for range 10 {
		_, err = v.Verify(token, "videos")
		g.Expect(err).NotTo(gomega.HaveOccurred())
	}
	g.Expect(keys.lookups.Load()).To(gomega.Equal(int64(1)), "repeated tokens cost no key lookup nor signature check")
	_, err = v.Verify(token, "payroll")
	g.Expect(ReasonOf(err)).To(gomega.Equal(ReasonWrongAudience), "the audience is checked on every hit")

	// A forged token is never cached, and a different token is not answered from the cache.
	// Change the signature's first character: it encodes six whole bits of the first byte, so the
	// signature always differs (changing the last characters could decode to the same bytes).
	sig := strings.LastIndexByte(token, '.') + 1
	forged := []byte(token)
	forged[sig] = map[bool]byte{true: 'B', false: 'A'}[forged[sig] == 'A']
	_, err = v.Verify(string(forged), "")
	g.Expect(err).To(gomega.HaveOccurred())
	g.Expect(v.CacheLen()).To(gomega.Equal(1))
}

func TestCacheIsBounded(t *testing.T) {
	g := gomega.NewWithT(t)
	keys := newTestKeys(t)
	v := NewVerifier(keys, VerifierOptions{Issuer: testIssuer, CacheSize: 20, Clock: clocktesting.NewFakePassiveClock(t0)})
	for range 100 {
		_, err := v.Verify(issue(t, keys, validInput()), "")
		g.Expect(err).NotTo(gomega.HaveOccurred())
	}
	g.Expect(v.CacheLen()).To(gomega.BeNumerically("<=", 20))
}

func TestIssueWithoutKeyFails(t *testing.T) {
	g := gomega.NewWithT(t)
	_, err := Issue(&testKeys{}, validInput())
	g.Expect(err).To(gomega.MatchError(ErrNoSigningKey))
}

func BenchmarkVerify(b *testing.B) {
	k, err := signing.NewKey(t0)
	if err != nil {
		b.Fatal(err)
	}
	keys := &testKeys{kid: k.ID, priv: k.Private}
	clk := clocktesting.NewFakePassiveClock(t0)
	b.Run("first use", func(b *testing.B) {
		tokens := make([]string, 1024)
		for i := range tokens {
			issued, err := Issue(keys, validInput())
			if err != nil {
				b.Fatal(err)
			}
			tokens[i] = issued.Token
		}
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			// A fresh verifier every round of tokens so each Verify is a first use.
			if i%len(tokens) == 0 {
				b.StopTimer()
				v := NewVerifier(keys, VerifierOptions{Issuer: testIssuer, Clock: clk})
				benchVerifier = v
				b.StartTimer()
			}
			if _, err := benchVerifier.Verify(tokens[i%len(tokens)], "videos"); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("repeated", func(b *testing.B) {
		token := issue(&testing.T{}, keys, validInput())
		v := NewVerifier(keys, VerifierOptions{Issuer: testIssuer, Clock: clk})
		if _, err := v.Verify(token, "videos"); err != nil {
			b.Fatal(err)
		}
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := v.Verify(token, "videos"); err != nil {
					b.Fatal(err)
				}
			}
		})
	})
}

var benchVerifier *Verifier

// The verifier follows RFC 7515 §4.1.11 and RFC 8725: a header with "crit" names extensions
// keycap does not understand, so the token is refused; exp, nbf and iat must be JSON numbers (a
// string such as "exp":"1893456000" is not a NumericDate).
func TestVerifyFollowsRFC7515AndRFC8725(t *testing.T) {
	keys := newTestKeys(t)
	v := NewVerifier(keys, VerifierOptions{Issuer: testIssuer, Clock: clocktesting.NewFakePassiveClock(t0.Add(time.Minute))})
	base := func() jwt.MapClaims {
		c := claimsOf(validInput())
		return jwt.MapClaims{"iss": c.Issuer, "sub": c.Subject, "aud": []string(c.Audience), "jti": c.ID, "org": c.Org,
			"scopes": c.Scopes, "exp": c.ExpiresAt.Unix(), "nbf": c.NotBefore.Unix(), "iat": c.IssuedAt.Unix()}
	}
	sign := func(t *testing.T, claims jwt.MapClaims, header map[string]any) string {
		t.Helper()
		token := jwt.NewWithClaims(jwt.SigningMethodEdDSA, claims)
		token.Header["kid"] = keys.kid
		for k, val := range header {
			token.Header[k] = val
		}
		s, err := token.SignedString(keys.priv)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	t.Run("the well-formed token verifies", func(t *testing.T) {
		_, err := v.Verify(sign(t, base(), nil), "")
		gomega.NewWithT(t).Expect(err).NotTo(gomega.HaveOccurred())
	})
	cases := map[string]func(t *testing.T) string{
		"crit naming a claim":   func(t *testing.T) string { return sign(t, base(), map[string]any{"crit": []string{"exp"}}) },
		"crit naming extension": func(t *testing.T) string { return sign(t, base(), map[string]any{"crit": []string{"x"}, "x": 1}) },
		"an empty crit":         func(t *testing.T) string { return sign(t, base(), map[string]any{"crit": []string{}}) },
		"exp as a string": func(t *testing.T) string {
			c := base()
			c["exp"] = strconv.FormatInt(t0.Add(time.Hour).Unix(), 10)
			return sign(t, c, nil)
		},
		"iat as a string": func(t *testing.T) string {
			c := base()
			c["iat"] = strconv.FormatInt(t0.Unix(), 10)
			return sign(t, c, nil)
		},
		"nbf as a string": func(t *testing.T) string {
			c := base()
			c["nbf"] = strconv.FormatInt(t0.Unix(), 10)
			return sign(t, c, nil)
		},
	}
	for name, token := range cases {
		t.Run(name, func(t *testing.T) {
			g := gomega.NewWithT(t)
			_, err := v.Verify(token(t), "")
			g.Expect(err).To(gomega.HaveOccurred())
			g.Expect(ReasonOf(err)).To(gomega.Equal(ReasonMalformed))
		})
	}
}

package session

import (
	"encoding/base64"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/onsi/gomega"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func testKeySet(t *testing.T, now time.Time) KeySet {
	t.Helper()
	ks, _, err := Plan(KeySet{}, now, Policy{}, NewKey)
	if err != nil {
		t.Fatal(err)
	}
	return ks
}

var alice = Identity{Kind: "ApiKey", Namespace: "acme", Name: "backend", KeyID: "k1"}

func sealed(t *testing.T, ks *KeySet, p Purpose, id Identity, now time.Time, ttl time.Duration) (string, Claims) {
	t.Helper()
	c, err := NewClaims(id, now, ttl)
	if err != nil {
		t.Fatal(err)
	}
	v, err := ks.Seal(p, c, now)
	if err != nil {
		t.Fatal(err)
	}
	return v, c
}

func TestSealOpenRoundTrip(t *testing.T) {
	g := gomega.NewWithT(t)
	ks := testKeySet(t, t0)
	agent := Identity{Kind: "AgentKey", Namespace: "acme", Name: "bot", Parent: "backend", KeyID: "k2"}
	v, c := sealed(t, &ks, PurposeSession, agent, t0, time.Hour)
	g.Expect(len(v)).To(gomega.BeNumerically("<", 200), "a cookie stays small")
	for _, secret := range []string{"acme", "backend", "bot", "AgentKey"} {
		g.Expect(v).NotTo(gomega.ContainSubstring(secret), "the cookie is encrypted")
	}
	got, err := ks.Open(PurposeSession, v, t0.Add(59*time.Minute))
	g.Expect(err).NotTo(gomega.HaveOccurred())
	g.Expect(got).To(gomega.Equal(c))
	g.Expect(got.Identity).To(gomega.Equal(agent))
}

func TestOpenRefuses(t *testing.T) {
	ks := testKeySet(t, t0)
	v, _ := sealed(t, &ks, PurposeSession, alice, t0, time.Hour)
	link, _ := sealed(t, &ks, PurposeLink, alice, t0, time.Minute)
	other := testKeySet(t, t0)
	foreign, _ := sealed(t, &other, PurposeSession, alice, t0, time.Hour)
	raw, _ := base64.RawURLEncoding.DecodeString(v)
	flip := func(i int) string {
		b := append([]byte(nil), raw...)
		b[i] ^= 1
		return base64.RawURLEncoding.EncodeToString(b)
	}
	// A value re-sealed with the right key under a forged key ID: the tag binds the header.
	forgedID := append([]byte(nil), raw...)
	forgedID[4] ^= 0xff

	for name, tc := range map[string]struct {
		value string
		p     Purpose
		now   time.Time
		want  error
	}{
		"the empty value":                                 {"", PurposeSession, t0, ErrMalformed},
		"a value too long to be a cookie":                 {strings.Repeat("A", MaxValueLength+1), PurposeSession, t0, ErrMalformed},
		"characters outside base64url":                    {v[:20] + "+" + v[21:], PurposeSession, t0, ErrMalformed},
		"non-UTF-8 bytes":                                 {v[:20] + "\xff\xfe" + v[22:], PurposeSession, t0, ErrMalformed},
		"a truncated value":                               {v[:len(v)-3], PurposeSession, t0, ErrForged},
		"a value cut to its header":                       {v[:30], PurposeSession, t0, ErrMalformed},
		"a value with bytes appended":                     {v + "AAAA", PurposeSession, t0, ErrForged},
		"a flipped bit in the ciphertext":                 {flip(len(raw) - 20), PurposeSession, t0, ErrForged},
		"a flipped bit in the tag":                        {flip(len(raw) - 1), PurposeSession, t0, ErrForged},
		"a flipped bit in the nonce":                      {flip(6), PurposeSession, t0, ErrForged},
		"another version":                                 {flip(0), PurposeSession, t0, ErrMalformed},
		"a key ID not in the set":                         {base64.RawURLEncoding.EncodeToString(forgedID), PurposeSession, t0, ErrUnknownKey},
		"a cookie sealed by another key set":              {foreign, PurposeSession, t0, ErrUnknownKey},
		"a login link presented as a cookie":              {link, PurposeSession, t0, ErrForged},
		"a cookie presented as a login link":              {v, PurposeLink, t0, ErrForged},
		"a cookie at its expiry":                          {v, PurposeSession, t0.Add(time.Hour), ErrExpired},
		"a cookie issued further in the future than skew": {v, PurposeSession, t0.Add(-MaxClockSkew - time.Second), ErrExpired},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := ks.Open(tc.p, tc.value, tc.now)
			if !errors.Is(err, tc.want) {
				t.Fatalf("Open: got %v, want %v", err, tc.want)
			}
		})
	}
}

func TestRotationOverlap(t *testing.T) {
	g := gomega.NewWithT(t)
	policy := Policy{RotateEvery: 10 * time.Hour, PrePublish: time.Hour, Retain: 5 * time.Hour}
	plan := func(ks KeySet, now time.Time) KeySet {
		t.Helper()
		out, _, err := Plan(ks, now, policy, NewKey)
		g.Expect(err).NotTo(gomega.HaveOccurred())
		return out
	}
	ks := plan(KeySet{}, t0)
	g.Expect(ks.Keys).To(gomega.HaveLen(1))
	old, _ := sealed(t, &ks, PurposeSession, alice, t0, 20*time.Hour)

	_, changed, err := Plan(ks, t0.Add(8*time.Hour), policy, NewKey)
	g.Expect(err).NotTo(gomega.HaveOccurred())
	g.Expect(changed).To(gomega.BeFalse(), "nothing to do before the pre-publication moment")

	// A replica that reads the set an hour before the successor seals already opens its cookies.
	ks = plan(ks, t0.Add(9*time.Hour))
	g.Expect(ks.Keys).To(gomega.HaveLen(2))
	g.Expect(NextChange(ks, policy)).To(gomega.Equal(t0.Add(15 * time.Hour)))
	successorOnly := KeySet{Keys: ks.Keys[1:]}
	g.Expect(successorOnly.CanSeal(t0.Add(9*time.Hour))).To(gomega.BeFalse(), "the successor does not seal before its time")
	fresh, _ := sealed(t, &ks, PurposeSession, alice, t0.Add(10*time.Hour), 20*time.Hour)
	_, err = successorOnly.Open(PurposeSession, fresh, t0.Add(10*time.Hour))
	g.Expect(err).NotTo(gomega.HaveOccurred(), "sealed with the successor from its time")
	_, err = ks.Open(PurposeSession, old, t0.Add(10*time.Hour))
	g.Expect(err).NotTo(gomega.HaveOccurred(), "cookies of the replaced key still open")

	ks = plan(ks, t0.Add(15*time.Hour-time.Second))
	g.Expect(ks.Keys).To(gomega.HaveLen(2), "the replaced key is retained while its sessions may live")
	ks = plan(ks, t0.Add(15*time.Hour))
	g.Expect(ks.Keys).To(gomega.HaveLen(1), "and dropped afterwards")
	_, err = ks.Open(PurposeSession, old, t0.Add(15*time.Hour))
	g.Expect(err).To(gomega.MatchError(ErrUnknownKey))
	_, err = ks.Open(PurposeSession, fresh, t0.Add(15*time.Hour))
	g.Expect(err).NotTo(gomega.HaveOccurred())
}

func TestPlanAfterClockStepsBack(t *testing.T) {
	g := gomega.NewWithT(t)
	ks := testKeySet(t, t0)
	back := t0.Add(-time.Hour)
	ks2, changed, err := Plan(ks, back, Policy{}, NewKey)
	g.Expect(err).NotTo(gomega.HaveOccurred())
	g.Expect(changed).To(gomega.BeTrue())
	g.Expect(ks2.CanSeal(back)).To(gomega.BeTrue(), "a key that seals now replaces one from the future")
}

func TestMarshalRoundTrip(t *testing.T) {
	g := gomega.NewWithT(t)
	ks := testKeySet(t, t0)
	ks, _, _ = Plan(ks, t0.Add(DefaultRotateEvery), Policy{}, NewKey)
	data, err := ks.Marshal()
	g.Expect(err).NotTo(gomega.HaveOccurred())
	back, err := Unmarshal(data)
	g.Expect(err).NotTo(gomega.HaveOccurred())
	g.Expect(back.IDs()).To(gomega.Equal(ks.IDs()))
	v, _ := sealed(t, &ks, PurposeSession, alice, t0, time.Hour)
	_, err = back.Open(PurposeSession, v, t0)
	g.Expect(err).NotTo(gomega.HaveOccurred())

	for name, bad := range map[string]string{
		"not JSON":       "{",
		"a short secret": `{"keys":[{"id":1,"secret":"AAAA","sealFrom":"2026-01-01T00:00:00Z"}]}`,
		"a duplicate ID": `{"keys":[{"id":1,"secret":"` + strings.Repeat("A", 43) + `=","sealFrom":"2026-01-01T00:00:00Z"},{"id":1,"secret":"` + strings.Repeat("B", 43) + `=","sealFrom":"2026-01-02T00:00:00Z"}]}`,
	} {
		_, err := Unmarshal([]byte(bad))
		g.Expect(err).To(gomega.HaveOccurred(), name)
	}
}

func TestSealRefusesOverlongFieldsAndNoKey(t *testing.T) {
	g := gomega.NewWithT(t)
	ks := testKeySet(t, t0)
	c, _ := NewClaims(Identity{Kind: "ApiKey", Namespace: "acme", Name: strings.Repeat("n", MaxFieldLength+1)}, t0, time.Hour)
	_, err := ks.Seal(PurposeSession, c, t0)
	g.Expect(err).To(gomega.MatchError(ErrMalformed))
	var empty KeySet
	_, err = empty.Seal(PurposeSession, c, t0)
	g.Expect(err).To(gomega.MatchError(ErrNoKey))
	_, err = empty.Open(PurposeSession, strings.Repeat("A", 100), t0)
	g.Expect(err).To(gomega.HaveOccurred())
}

func TestStands(t *testing.T) {
	issued := t0
	c := Claims{Identity: Identity{Kind: "AgentKey", Namespace: "acme", Name: "bot", Parent: "backend", KeyID: "k1"}, IssuedAt: issued, ExpiresAt: issued.Add(time.Hour)}
	for name, tc := range map[string]struct {
		b    Binding
		want bool
	}{
		"the credential as it was":                           {Binding{Parent: "backend", KeyID: "k1", CreatedAt: issued.Add(-time.Hour)}, true},
		"a rotated key keeps sessions by default":            {Binding{Parent: "backend", KeyID: "k2"}, true},
		"a rotated key ends sessions when the spec asks":     {Binding{Parent: "backend", KeyID: "k2", EndOnRotation: true}, false},
		"the same key with endOnRotation":                    {Binding{Parent: "backend", KeyID: "k1", EndOnRotation: true}, true},
		"log out everywhere after the session":               {Binding{Parent: "backend", NotBefore: issued.Add(time.Minute)}, false},
		"log out everywhere in the session's second":         {Binding{Parent: "backend", NotBefore: issued.Add(500 * time.Millisecond)}, false},
		"a logout before the session was issued":             {Binding{Parent: "backend", NotBefore: issued.Add(-time.Second)}, true},
		"an object of the same name created after the login": {Binding{Parent: "backend", CreatedAt: issued.Add(time.Second)}, false},
		"an agent moved to another parent":                   {Binding{Parent: "other"}, false},
	} {
		t.Run(name, func(t *testing.T) {
			if got := c.Stands(tc.b); got != tc.want {
				t.Fatalf("Stands = %v, want %v", got, tc.want)
			}
		})
	}
}

func BenchmarkOpen(b *testing.B) {
	ks, _, _ := Plan(KeySet{}, t0, Policy{}, NewKey)
	c, _ := NewClaims(alice, t0, time.Hour)
	v, _ := ks.Seal(PurposeSession, c, t0)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ks.Open(PurposeSession, v, t0); err != nil {
			b.Fatal(err)
		}
	}
}

package session

import (
	"encoding/binary"
	"testing"
	"time"
)

// fuzzKeys is a fixed key set, so the committed corpus (testdata/fuzz/FuzzOpen) holds values
// sealed with a key the fuzzer knows: mutations of real cookies reach the tag check and, for the
// seeds, the claims parser.
func fuzzKeys(tb testing.TB) KeySet {
	tb.Helper()
	var secret [32]byte
	for i := range secret {
		secret[i] = byte(i)
	}
	k, err := newKey(binary.BigEndian.Uint32([]byte("fuzz")), secret[:], t0.Add(-time.Hour))
	if err != nil {
		tb.Fatal(err)
	}
	return KeySet{Keys: []Key{k}}
}

// FuzzOpen: Open never panics, and whatever it accepts is well-formed claims that re-seal and
// re-open to the same claims.
func FuzzOpen(f *testing.F) {
	ks := fuzzKeys(f)
	for _, id := range []Identity{alice, {Kind: "AgentKey", Namespace: "acme", Name: "bot", Parent: "backend", KeyID: "k2"}} {
		c, err := NewClaims(id, t0, time.Hour)
		if err != nil {
			f.Fatal(err)
		}
		v, err := ks.Seal(PurposeSession, c, t0)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(v)
	}
	f.Add("")
	f.Add("AQAAAAA")
	f.Fuzz(func(t *testing.T, value string) {
		c, err := ks.Open(PurposeSession, value, t0)
		if err != nil {
			return
		}
		if c.Kind == "" || c.Namespace == "" || c.Name == "" || !c.ExpiresAt.After(t0) {
			t.Fatalf("accepted incomplete claims %+v", c)
		}
		again, err := ks.Seal(PurposeSession, c, t0)
		if err != nil {
			t.Fatalf("accepted claims do not re-seal: %v", err)
		}
		back, err := ks.Open(PurposeSession, again, t0)
		if err != nil || back != c {
			t.Fatalf("re-sealed claims differ: %+v, %v", back, err)
		}
	})
}

// FuzzParseClaims reaches the claims parser directly (through Open only authentic input does).
func FuzzParseClaims(f *testing.F) {
	c, _ := NewClaims(Identity{Kind: "AgentKey", Namespace: "acme", Name: "bot", Parent: "backend", KeyID: "k2"}, t0, time.Hour)
	f.Add(appendClaims(nil, c))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		c, ok := parseClaims(b)
		if !ok {
			return
		}
		if got := appendClaims(nil, c); string(got) != string(b) {
			t.Fatalf("parse/append do not round-trip: %x -> %x", b, got)
		}
	})
}

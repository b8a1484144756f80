package session

import (
	"crypto/cipher"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"slices"
	"time"
)

// Defaults of Policy.
const (
	// DefaultRotateEvery is how long a key seals before its successor takes over.
	DefaultRotateEvery = 30 * 24 * time.Hour
	// DefaultPrePublish is how long a successor is known before it seals: every data-plane replica
	// re-reads the key set within seconds, so it can open what another replica sealed.
	DefaultPrePublish = time.Hour
	// MaxSessionLifetime is the longest a session may live (the cap of the per-credential
	// override and of the flag); a replaced key opens cookies this long after it was replaced.
	MaxSessionLifetime = 90 * 24 * time.Hour
	// DefaultSessionLifetime is a session's lifetime unless the flag or the credential says
	// otherwise.
	DefaultSessionLifetime = 30 * 24 * time.Hour
)

// Policy says when session keys rotate.
type Policy struct {
	RotateEvery time.Duration
	PrePublish  time.Duration
	// Retain is how long a replaced key still opens values: the longest session it sealed.
	Retain time.Duration
}

func (p Policy) withDefaults() Policy {
	if p.RotateEvery <= 0 {
		p.RotateEvery = DefaultRotateEvery
	}
	if p.PrePublish < 0 || p.PrePublish >= p.RotateEvery {
		p.PrePublish = min(DefaultPrePublish, p.RotateEvery/2)
	}
	if p.Retain <= 0 {
		p.Retain = MaxSessionLifetime
	}
	return p
}

// Key is one AES-256 key of the set.
type Key struct {
	// ID names the key in every value it seals; random, unique within the set.
	ID uint32
	// Secret is the AES-256 key.
	Secret []byte
	// SealFrom is when the key starts sealing.
	SealFrom time.Time

	aead cipher.AEAD
}

// KeySet is the session key material: keys ordered by SealFrom. Build one with Unmarshal or
// Plan; its methods are safe for concurrent use once built (it is never modified).
type KeySet struct {
	Keys []Key
}

// sealer returns the key that seals at now: the newest whose SealFrom has passed.
func (ks *KeySet) sealer(now time.Time) (*Key, bool) {
	if ks == nil {
		return nil, false
	}
	for i := len(ks.Keys) - 1; i >= 0; i-- {
		if !ks.Keys[i].SealFrom.After(now) {
			return &ks.Keys[i], ks.Keys[i].aead != nil
		}
	}
	return nil, false
}

// byID returns the key with id; a set holds a handful of keys, so a scan is the fastest lookup.
func (ks *KeySet) byID(id uint32) (*Key, bool) {
	if ks == nil {
		return nil, false
	}
	for i := range ks.Keys {
		if ks.Keys[i].ID == id && ks.Keys[i].aead != nil {
			return &ks.Keys[i], true
		}
	}
	return nil, false
}

// CanSeal reports whether the set holds a key that seals at now.
func (ks *KeySet) CanSeal(now time.Time) bool {
	_, ok := ks.sealer(now)
	return ok
}

// IDs returns the key IDs, oldest first (for logs: IDs are not secret).
func (ks *KeySet) IDs() []uint32 {
	ids := make([]uint32, 0, len(ks.Keys))
	for _, k := range ks.Keys {
		ids = append(ids, k.ID)
	}
	return ids
}

// NewKey generates a key with crypto/rand that seals from sealFrom.
func NewKey(sealFrom time.Time) (Key, error) {
	var b [4 + 32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return Key{}, fmt.Errorf("session: generating a key: %w", err)
	}
	return newKey(binary.BigEndian.Uint32(b[:4]), b[4:], sealFrom.UTC().Truncate(time.Second))
}

func newKey(id uint32, secret []byte, sealFrom time.Time) (Key, error) {
	if len(secret) != 32 {
		return Key{}, fmt.Errorf("session: key %d: want a 32-byte secret, got %d bytes", id, len(secret))
	}
	aead, err := newAEAD(secret)
	if err != nil {
		return Key{}, err
	}
	return Key{ID: id, Secret: slices.Clone(secret), SealFrom: sealFrom, aead: aead}, nil
}

// Plan returns the key set as it must be at now under policy, and whether it differs from ks: a
// first key if none seals now, a successor PrePublish before the current key's time is up, and
// no key that was replaced more than Retain ago. newKey generates keys (tests inject their own).
func Plan(ks KeySet, now time.Time, policy Policy, newKey func(time.Time) (Key, error)) (KeySet, bool, error) {
	policy = policy.withDefaults()
	out := KeySet{Keys: slices.Clone(ks.Keys)}
	changed := false
	add := func(sealFrom time.Time) error {
		for {
			k, err := newKey(sealFrom)
			if err != nil {
				return err
			}
			if _, dup := out.byID(k.ID); !dup {
				out.Keys = append(out.Keys, k)
				changed = true
				return nil
			}
		}
	}

	cur, ok := out.sealer(now)
	if !ok {
		// Keys that were to seal later than now (a clock stepped back) would shadow the new one.
		out.Keys = slices.DeleteFunc(out.Keys, func(k Key) bool { return k.SealFrom.After(now) })
		if err := add(now); err != nil {
			return ks, false, err
		}
		cur = &out.Keys[len(out.Keys)-1]
	}
	if last := out.Keys[len(out.Keys)-1]; last.ID == cur.ID && !now.Before(cur.SealFrom.Add(policy.RotateEvery-policy.PrePublish)) {
		sealFrom := cur.SealFrom.Add(policy.RotateEvery)
		if late := now.Add(policy.PrePublish); late.After(sealFrom) {
			sealFrom = late
		}
		if err := add(sealFrom.UTC().Truncate(time.Second)); err != nil {
			return ks, false, err
		}
	}
	kept := out.Keys[:0:0]
	for i, k := range out.Keys {
		if i+1 < len(out.Keys) && !now.Before(out.Keys[i+1].SealFrom.Add(policy.Retain)) {
			changed = true
			continue
		}
		kept = append(kept, k)
	}
	out.Keys = kept
	return out, changed, nil
}

// NextChange returns when Plan will next change ks (the zero time when never).
func NextChange(ks KeySet, policy Policy) time.Time {
	policy = policy.withDefaults()
	var next time.Time
	consider := func(t time.Time) {
		if next.IsZero() || t.Before(next) {
			next = t
		}
	}
	for i, k := range ks.Keys {
		if i+1 < len(ks.Keys) {
			consider(ks.Keys[i+1].SealFrom.Add(policy.Retain))
		} else {
			consider(k.SealFrom.Add(policy.RotateEvery - policy.PrePublish))
		}
	}
	return next
}

type storedKey struct {
	ID       uint32    `json:"id"`
	Secret   []byte    `json:"secret"`
	SealFrom time.Time `json:"sealFrom"`
}

type storedSet struct {
	Keys []storedKey `json:"keys"`
}

// Marshal encodes ks as the Secret's keys.json.
func (ks KeySet) Marshal() ([]byte, error) {
	st := storedSet{Keys: make([]storedKey, 0, len(ks.Keys))}
	for _, k := range ks.Keys {
		st.Keys = append(st.Keys, storedKey{ID: k.ID, Secret: k.Secret, SealFrom: k.SealFrom.UTC()})
	}
	return json.Marshal(st)
}

// Unmarshal decodes the Secret's keys.json.
func Unmarshal(data []byte) (KeySet, error) {
	var st storedSet
	if err := json.Unmarshal(data, &st); err != nil {
		return KeySet{}, fmt.Errorf("decoding the session key set: %w", err)
	}
	var ks KeySet
	for _, sk := range st.Keys {
		if _, dup := ks.byID(sk.ID); dup {
			return KeySet{}, fmt.Errorf("session key set: key ID %d twice", sk.ID)
		}
		k, err := newKey(sk.ID, sk.Secret, sk.SealFrom)
		if err != nil {
			return KeySet{}, err
		}
		ks.Keys = append(ks.Keys, k)
	}
	slices.SortStableFunc(ks.Keys, func(a, b Key) int { return a.SealFrom.Compare(b.SealFrom) })
	return ks, nil
}

// Package signing manages keycap's Ed25519 signing keys: the rotating AppToken key set and the
// licence key, kept in a Secret in the operator's namespace, and the public documents (JWKS,
// OpenID configuration, licence public key) that let others verify what keycap signs offline.
//
// # Rotation
//
// The AppToken key set is a list of keys ordered by the instant each starts signing (signFrom).
// The key that signs now is the newest whose signFrom has passed. A successor is generated
// PrePublish before its signFrom, so verifiers that cache the JWKS (Istio, Envoy jwt_authn, the
// data plane's poller) know it before the first token it signs. Once a key has been replaced its
// private half is dropped; its public half stays published for MaxTokenLifetime after its
// successor took over, the longest a token it signed can live (the AppToken CRD caps a token's
// lifetime at 8760h, the default). Then the key is removed.
//
// # Licence key
//
// Licence files are signed with a separate Ed25519 key that does not rotate: a licence file is
// verified offline for months against a public key shipped with the product, and rotating that key
// would invalidate every file already handed out. Its kid is in each licence file; it is published
// as PEM next to the JWKS (and never in the JWKS, so no JWT verifier trusts it).
package signing

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"
)

// Defaults of Policy.
const (
	DefaultRotateEvery      = 30 * 24 * time.Hour
	DefaultPrePublish       = time.Hour
	DefaultMaxTokenLifetime = 8760 * time.Hour
)

// Policy says when keys rotate and how long they stay published.
type Policy struct {
	// RotateEvery is how long a key signs before its successor takes over.
	RotateEvery time.Duration
	// PrePublish is how long a successor is published before it starts signing.
	PrePublish time.Duration
	// MaxTokenLifetime is the longest lifetime of a token; a replaced key stays published this long.
	MaxTokenLifetime time.Duration
}

func (p Policy) withDefaults() Policy {
	if p.RotateEvery <= 0 {
		p.RotateEvery = DefaultRotateEvery
	}
	if p.PrePublish < 0 || p.PrePublish >= p.RotateEvery {
		p.PrePublish = min(DefaultPrePublish, p.RotateEvery/2)
	}
	if p.MaxTokenLifetime <= 0 {
		p.MaxTokenLifetime = DefaultMaxTokenLifetime
	}
	return p
}

// Key is one Ed25519 key of the set.
type Key struct {
	// ID is the key's kid: its RFC 7638 JWK thumbprint.
	ID string
	// Public is the public key.
	Public ed25519.PublicKey
	// Private is the private key; nil once the key can no longer sign.
	Private ed25519.PrivateKey
	// SignFrom is when the key starts signing.
	SignFrom time.Time
}

// State is the whole key material kept in the Secret.
type State struct {
	// Keys are the AppToken signing keys, ordered by SignFrom.
	Keys []Key
	// License is the licence signing key.
	License *Key
}

// NewKey generates an Ed25519 key with crypto/rand that starts signing at signFrom.
func NewKey(signFrom time.Time) (Key, error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return Key{}, fmt.Errorf("generating an Ed25519 key: %w", err)
	}
	return Key{ID: Thumbprint(pub), Public: pub, Private: priv, SignFrom: signFrom.UTC().Truncate(time.Second)}, nil
}

// Thumbprint returns the RFC 7638 JWK thumbprint of an Ed25519 public key (RFC 8037 §2), the
// kid keycap gives it.
func Thumbprint(pub ed25519.PublicKey) string {
	// Members in lexicographic order, no whitespace, as RFC 7638 §3 requires.
	canonical := `{"crv":"Ed25519","kty":"OKP","x":"` + base64.RawURLEncoding.EncodeToString(pub) + `"}`
	sum := sha256.Sum256([]byte(canonical))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// Current returns the key that signs at now: the newest key whose SignFrom has passed and that
// still holds its private half.
func (s *State) Current(now time.Time) (Key, bool) {
	for i := len(s.Keys) - 1; i >= 0; i-- {
		k := s.Keys[i]
		if !k.SignFrom.After(now) {
			return k, k.Private != nil
		}
	}
	return Key{}, false
}

// Plan returns the state the key set must have at now under policy, and whether it differs from s:
// a first key if there is none that can sign now, a successor PrePublish before the current key's
// time is up, replaced keys without their private half, and no key past its publication window.
// newKey generates keys; tests inject a deterministic one.
func Plan(s State, now time.Time, policy Policy, newKey func(signFrom time.Time) (Key, error)) (State, bool, error) {
	policy = policy.withDefaults()
	out := State{Keys: slices.Clone(s.Keys), License: s.License}
	changed := false

	if out.License == nil || out.License.Private == nil {
		k, err := newKey(now)
		if err != nil {
			return s, false, err
		}
		out.License = &k
		changed = true
	}

	cur, ok := out.Current(now)
	if !ok {
		k, err := newKey(now)
		if err != nil {
			return s, false, err
		}
		// Keys that were to sign later than now (a clock step backwards) would shadow it; drop them.
		out.Keys = slices.DeleteFunc(out.Keys, func(k Key) bool { return k.SignFrom.After(now) })
		out.Keys = append(out.Keys, k)
		cur, changed = k, true
	}

	last := out.Keys[len(out.Keys)-1]
	if last.ID == cur.ID && !now.Before(cur.SignFrom.Add(policy.RotateEvery-policy.PrePublish)) {
		signFrom := cur.SignFrom.Add(policy.RotateEvery)
		if late := now.Add(policy.PrePublish); late.After(signFrom) {
			signFrom = late
		}
		k, err := newKey(signFrom)
		if err != nil {
			return s, false, err
		}
		out.Keys = append(out.Keys, k)
		changed = true
	}

	kept := out.Keys[:0:0]
	for i, k := range out.Keys {
		if i+1 < len(out.Keys) && !out.Keys[i+1].SignFrom.After(now) {
			// Replaced: keep the public half while tokens it signed may live.
			if !now.Before(out.Keys[i+1].SignFrom.Add(policy.MaxTokenLifetime)) {
				changed = true
				continue
			}
			if k.Private != nil {
				k.Private = nil
				changed = true
			}
		}
		kept = append(kept, k)
	}
	out.Keys = kept
	return out, changed, nil
}

// NextChange returns when Plan will next change s: a successor to generate, a key taking over or
// a key leaving publication. It returns the zero time when nothing is scheduled.
func NextChange(s State, policy Policy) time.Time {
	policy = policy.withDefaults()
	var next time.Time
	consider := func(t time.Time) {
		if next.IsZero() || t.Before(next) {
			next = t
		}
	}
	for i, k := range s.Keys {
		if i+1 < len(s.Keys) {
			consider(s.Keys[i+1].SignFrom)
			consider(s.Keys[i+1].SignFrom.Add(policy.MaxTokenLifetime))
		} else {
			consider(k.SignFrom.Add(policy.RotateEvery - policy.PrePublish))
		}
	}
	return next
}

// storedKey is a Key as kept in the Secret.
type storedKey struct {
	ID         string    `json:"kid"`
	PublicKey  []byte    `json:"publicKey"`
	PrivateKey []byte    `json:"privateKeySeed,omitempty"`
	SignFrom   time.Time `json:"signFrom"`
}

type storedState struct {
	Keys    []storedKey `json:"keys"`
	License *storedKey  `json:"license,omitempty"`
}

func toStored(k Key) storedKey {
	sk := storedKey{ID: k.ID, PublicKey: k.Public, SignFrom: k.SignFrom.UTC()}
	if k.Private != nil {
		sk.PrivateKey = k.Private.Seed()
	}
	return sk
}

func fromStored(sk storedKey) (Key, error) {
	if len(sk.PublicKey) != ed25519.PublicKeySize {
		return Key{}, fmt.Errorf("key %q: bad public key length", sk.ID)
	}
	k := Key{ID: sk.ID, Public: ed25519.PublicKey(sk.PublicKey), SignFrom: sk.SignFrom}
	if sk.PrivateKey != nil {
		if len(sk.PrivateKey) != ed25519.SeedSize {
			return Key{}, fmt.Errorf("key %q: bad private key length", sk.ID)
		}
		k.Private = ed25519.NewKeyFromSeed(sk.PrivateKey)
		if !k.Public.Equal(k.Private.Public()) {
			return Key{}, fmt.Errorf("key %q: private and public halves do not match", sk.ID)
		}
	}
	if k.ID != Thumbprint(k.Public) {
		return Key{}, fmt.Errorf("key %q: kid is not the key's thumbprint", sk.ID)
	}
	return k, nil
}

// Marshal encodes s as the Secret's keys.json.
func (s State) Marshal() ([]byte, error) {
	st := storedState{Keys: make([]storedKey, 0, len(s.Keys))}
	for _, k := range s.Keys {
		st.Keys = append(st.Keys, toStored(k))
	}
	if s.License != nil {
		lk := toStored(*s.License)
		st.License = &lk
	}
	return json.Marshal(st)
}

// Unmarshal decodes the Secret's keys.json.
func Unmarshal(data []byte) (State, error) {
	var st storedState
	if err := json.Unmarshal(data, &st); err != nil {
		return State{}, fmt.Errorf("decoding the signing key set: %w", err)
	}
	var s State
	for _, sk := range st.Keys {
		k, err := fromStored(sk)
		if err != nil {
			return State{}, err
		}
		s.Keys = append(s.Keys, k)
	}
	slices.SortStableFunc(s.Keys, func(a, b Key) int { return a.SignFrom.Compare(b.SignFrom) })
	if st.License != nil {
		k, err := fromStored(*st.License)
		if err != nil {
			return State{}, err
		}
		s.License = &k
	}
	return s, nil
}

// ErrNotLoaded means the key set has not been read yet.
var ErrNotLoaded = errors.New("signing key set not loaded yet")

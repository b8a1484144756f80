// Package session is keycap's browser session: the codec of the session cookie and of the
// single-use login-link token, and the key set both are sealed with. It is pure (standard library
// only, the clock passed in), so its decoders can be fuzzed without compiling Kubernetes clients.
//
// # What a cookie holds
//
// The identity of the credential it was issued for (kind, namespace, name, an agent key's parent
// ApiKey), the credential's status.keyID at issue (so a spec that asks rotation to end sessions
// can tell an older session), when it was issued and when it expires, and a random session ID.
// It never holds a key or a key's digest: a session is only as good as the credential it names,
// which the data plane judges live on every request (disabled, deleted, expired, an agent's parent
// inactive, sessions.notBefore), so the cookie alone grants nothing once the credential is gone.
//
// # Sealing
//
// Values are sealed with AES-256-GCM under one key of a KeySet, which the operator keeps in a
// Secret and rotates with overlap (a new key is published before it seals, a replaced key opens
// cookies until the longest session it sealed has expired). The cookie is encrypted, not only
// authenticated, because the names of a tenant's credential objects and their key IDs are not the
// browser's business. The wire form, base64url without padding:
//
//	version (1) | key ID (4, big endian) | nonce (12) | ciphertext + tag (16)
//
// The associated data binds the version, the key ID and the purpose (session cookie or login
// link), so a login-link token is never accepted as a cookie, nor the other way round.
package session

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"time"
)

// CookieName is the name of keycap's session cookie.
const CookieName = "keycap_session"

// Limits of the codec.
const (
	// MaxValueLength is the longest sealed value Open accepts (in base64url characters); longer
	// input is refused before any decoding. A real cookie is far shorter.
	MaxValueLength = 1024
	// MaxFieldLength is the longest string field of a session (Kubernetes names are at most 253).
	MaxFieldLength = 253
	// MaxClockSkew is how far in the future a value's issue time may lie (another replica's clock).
	MaxClockSkew = time.Minute
	// IDLength is the length in bytes of a session's or link's random ID.
	IDLength = 16
)

const (
	version     byte = 1
	headerLen        = 1 + 4
	nonceLen         = 12
	tagLen           = 16
	maxRawLen        = MaxValueLength * 3 / 4
	fixedClaims      = 8 + 8 + IDLength
)

// Purpose tells a session cookie from a login-link token; it is bound into the seal.
type Purpose byte

// Purposes of sealed values.
const (
	PurposeSession Purpose = 's'
	PurposeLink    Purpose = 'l'
)

// Errors of Open. A caller answers every one the same way (no session / an invalid link); they
// differ for metrics and tests.
var (
	// ErrMalformed: not a value this codec writes (wrong length, alphabet, version or layout).
	ErrMalformed = errors.New("session: malformed value")
	// ErrUnknownKey: sealed with a key that is not (or no longer) in the key set.
	ErrUnknownKey = errors.New("session: unknown key")
	// ErrForged: the authentication tag does not verify (tampered, truncated or forged).
	ErrForged = errors.New("session: value does not verify")
	// ErrExpired: the value has expired, or claims to be issued in the future.
	ErrExpired = errors.New("session: expired")
	// ErrNoKey: the key set holds no key that seals now.
	ErrNoKey = errors.New("session: no sealing key")
)

// Identity names the credential a session or link is for.
type Identity struct {
	// Kind is the credential kind (ApiKey, AgentKey).
	Kind string
	// Namespace and Name name the credential object.
	Namespace, Name string
	// Parent is an agent key's parent ApiKey at issue; empty for other kinds.
	Parent string
	// KeyID is the credential's status.keyID at issue.
	KeyID string
}

// Claims are what a sealed value carries.
type Claims struct {
	Identity
	// ID is random: a session's ID, or the link's single-use ID.
	ID [IDLength]byte
	// IssuedAt and ExpiresAt have second precision.
	IssuedAt, ExpiresAt time.Time
}

// NewClaims returns claims for id issued at now and valid for ttl, with a fresh random ID.
func NewClaims(id Identity, now time.Time, ttl time.Duration) (Claims, error) {
	c := Claims{Identity: id, IssuedAt: now.Truncate(time.Second), ExpiresAt: now.Add(ttl).Truncate(time.Second)}
	if _, err := rand.Read(c.ID[:]); err != nil {
		return Claims{}, fmt.Errorf("session: random ID: %w", err)
	}
	return c, nil
}

// Seal returns c sealed for purpose with the key of ks that seals at now.
func (ks *KeySet) Seal(p Purpose, c Claims, now time.Time) (string, error) {
	k, ok := ks.sealer(now)
	if !ok {
		return "", ErrNoKey
	}
	for _, f := range [...]string{c.Kind, c.Namespace, c.Name, c.Parent, c.KeyID} {
		if len(f) > MaxFieldLength {
			return "", fmt.Errorf("%w: field longer than %d bytes", ErrMalformed, MaxFieldLength)
		}
	}
	var buf [maxRawLen]byte
	raw := buf[:headerLen+nonceLen]
	raw[0] = version
	binary.BigEndian.PutUint32(raw[1:headerLen], k.ID)
	if _, err := rand.Read(raw[headerLen:]); err != nil {
		return "", fmt.Errorf("session: random nonce: %w", err)
	}
	plain := appendClaims(make([]byte, 0, 128), c)
	if len(raw)+len(plain)+tagLen > maxRawLen {
		return "", fmt.Errorf("%w: value too long", ErrMalformed)
	}
	var ad [headerLen + 1]byte
	raw = k.aead.Seal(raw, raw[headerLen:], plain, additionalData(&ad, raw[:headerLen], p))
	return base64.RawURLEncoding.EncodeToString(raw), nil
}

// Open verifies and decrypts a value sealed for purpose and checks its times against now. It
// never panics on any input; everything it refuses is one of the errors above.
func (ks *KeySet) Open(p Purpose, value string, now time.Time) (Claims, error) {
	if len(value) > MaxValueLength || len(value) < base64.RawURLEncoding.EncodedLen(headerLen+nonceLen+tagLen+fixedClaims) {
		return Claims{}, ErrMalformed
	}
	// Both buffers live on the stack: opening a cookie allocates only the claims' strings.
	var src [MaxValueLength]byte
	var buf [maxRawLen]byte
	n, err := base64.RawURLEncoding.Decode(buf[:], src[:copy(src[:], value)])
	if err != nil {
		return Claims{}, ErrMalformed
	}
	raw := buf[:n]
	// The decoder skips newlines, so the length checked above does not bound what it decoded.
	if n < headerLen+nonceLen+tagLen+fixedClaims || raw[0] != version {
		return Claims{}, ErrMalformed
	}
	k, ok := ks.byID(binary.BigEndian.Uint32(raw[1:headerLen]))
	if !ok {
		return Claims{}, ErrUnknownKey
	}
	var ad [headerLen + 1]byte
	nonce, sealed := raw[headerLen:headerLen+nonceLen], raw[headerLen+nonceLen:]
	plain, err := k.aead.Open(sealed[:0], nonce, sealed, additionalData(&ad, raw[:headerLen], p))
	if err != nil {
		return Claims{}, ErrForged
	}
	c, ok := parseClaims(plain)
	if !ok {
		// Authentic but unreadable: only a writer of another version could have sealed it.
		return Claims{}, ErrMalformed
	}
	if !now.Before(c.ExpiresAt) || c.IssuedAt.After(now.Add(MaxClockSkew)) {
		return Claims{}, ErrExpired
	}
	return c, nil
}

func additionalData(buf *[headerLen + 1]byte, header []byte, p Purpose) []byte {
	copy(buf[:], header)
	buf[headerLen] = byte(p)
	return buf[:]
}

func appendClaims(b []byte, c Claims) []byte {
	b = binary.BigEndian.AppendUint64(b, uint64(c.IssuedAt.Unix()))
	b = binary.BigEndian.AppendUint64(b, uint64(c.ExpiresAt.Unix()))
	b = append(b, c.ID[:]...)
	for _, f := range [...]string{c.Kind, c.Namespace, c.Name, c.Parent, c.KeyID} {
		b = append(b, byte(len(f)))
		b = append(b, f...)
	}
	return b
}

// parseClaims reads exactly the layout appendClaims writes; any other length or a field that is
// not printable ASCII is refused.
func parseClaims(b []byte) (Claims, bool) {
	var c Claims
	if len(b) < fixedClaims {
		return c, false
	}
	c.IssuedAt = time.Unix(int64(binary.BigEndian.Uint64(b[0:8])), 0).UTC()
	c.ExpiresAt = time.Unix(int64(binary.BigEndian.Uint64(b[8:16])), 0).UTC()
	copy(c.ID[:], b[16:fixedClaims])
	b = b[fixedClaims:]
	fields := [...]*string{&c.Kind, &c.Namespace, &c.Name, &c.Parent, &c.KeyID}
	for _, f := range fields {
		if len(b) == 0 || int(b[0]) > len(b)-1 || int(b[0]) > MaxFieldLength {
			return c, false
		}
		n := int(b[0])
		for _, ch := range b[1 : 1+n] {
			if ch <= ' ' || ch > '~' {
				return c, false
			}
		}
		*f = string(b[1 : 1+n])
		b = b[1+n:]
	}
	if len(b) != 0 || c.Kind == "" || c.Namespace == "" || c.Name == "" || !c.ExpiresAt.After(c.IssuedAt) {
		return c, false
	}
	return c, true
}

// newAEAD returns AES-256-GCM under secret.
func newAEAD(secret []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(secret)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// Binding is what a session's credential says about its sessions now, as the data plane's index
// knows it.
type Binding struct {
	// Parent is an agent key's parent ApiKey now.
	Parent string
	// KeyID is the credential's status.keyID now.
	KeyID string
	// CreatedAt is the credential object's creation: a session issued before it was for an
	// earlier object of the same name.
	CreatedAt time.Time
	// NotBefore is spec.sessions.notBefore ("log out everywhere"): sessions issued before it (or
	// in the same second) end.
	NotBefore time.Time
	// EndOnRotation is spec.sessions.endOnRotation: a session ends when the key it was issued
	// under is no longer the credential's current key.
	EndOnRotation bool
}

// Stands reports whether a session with claims c still stands for its credential as b describes
// it. Whether the credential itself is active (disabled, expired, an agent's parent) is the data
// plane's usual decision and not repeated here.
func (c *Claims) Stands(b Binding) bool {
	switch {
	case c.Parent != b.Parent:
		return false
	case c.IssuedAt.Before(b.CreatedAt.Truncate(time.Second)):
		return false
	case !b.NotBefore.IsZero() && !c.IssuedAt.After(b.NotBefore.Truncate(time.Second)):
		// Issue times have second precision: a session of the same second as the logout ends too.
		return false
	case b.EndOnRotation && c.KeyID != b.KeyID:
		return false
	}
	return true
}

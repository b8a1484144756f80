// Package keys generates and checks keycap's opaque key format.
//
// A key looks like GitHub's tokens: <prefix>_<random>_<checksum>, where random is 30 base62
// characters from crypto/rand (log2(62^30) ≈ 178 bits of entropy) and checksum is the CRC-32
// (IEEE) of "<prefix>_<random>", written as 6 base62 characters. The fixed shape and the checksum
// let secret scanners recognise a leaked key and let the data plane refuse a mistyped or forged
// key before any lookup. The checksum is not a secret and gives no security by itself: a key is
// valid only if its SHA-256 digest is known to keycap.
package keys

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"math/big"
	"strings"
)

const (
	// RandomLength is the number of base62 characters of randomness in a key.
	RandomLength = 30
	// ChecksumLength is the number of base62 characters of the CRC-32 checksum.
	ChecksumLength = 6
	// MinPrefixLength is the shortest allowed prefix.
	MinPrefixLength = 2
	// MaxPrefixLength is the longest allowed prefix.
	MaxPrefixLength = 16
	// MaxLength is the longest well-formed key.
	MaxLength = MaxPrefixLength + 1 + RandomLength + 1 + ChecksumLength
)

const base62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

var (
	// ErrMalformed means the string does not have the shape of a keycap key.
	ErrMalformed = errors.New("malformed key")
	// ErrChecksum means the key has the right shape but its checksum does not match.
	ErrChecksum = errors.New("key checksum mismatch")
)

// Generate returns a new random key with the given prefix.
func Generate(prefix string) (string, error) {
	if err := validatePrefix(prefix); err != nil {
		return "", err
	}
	random, err := randomBase62(RandomLength)
	if err != nil {
		return "", fmt.Errorf("generating key: %w", err)
	}
	body := prefix + "_" + random
	return body + "_" + checksum(body), nil
}

// Check reports whether key is well formed and its checksum matches. It returns ErrMalformed or
// ErrChecksum otherwise. It runs in time linear in the key and allocates nothing.
func Check(key string) error {
	if len(key) > MaxLength {
		return ErrMalformed
	}
	last := strings.LastIndexByte(key, '_')
	if last < 0 || len(key)-last-1 != ChecksumLength {
		return ErrMalformed
	}
	body := key[:last]
	first := strings.IndexByte(body, '_')
	if first < 0 || len(body)-first-1 != RandomLength {
		return ErrMalformed
	}
	if validatePrefix(body[:first]) != nil || !IsBase62(body[first+1:]) || !IsBase62(key[last+1:]) {
		return ErrMalformed
	}
	if sum := checksumBytes(body); string(sum[:]) != key[last+1:] {
		return ErrChecksum
	}
	return nil
}

// LooksLikeKey reports whether s is a keycap key with a valid checksum: a plaintext credential
// that must never be written into a manifest.
func LooksLikeKey(s string) bool { return Check(s) == nil }

// Prefix returns the prefix of a well-formed key, or "" if key is malformed.
func Prefix(key string) string {
	if Check(key) != nil {
		return ""
	}
	return key[:strings.IndexByte(key, '_')]
}

// Digest returns the lowercase hex SHA-256 of key: the only form in which keycap's status and
// data plane know a key.
func Digest(key string) string {
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:])
}

// DigestFromKeyHash returns the hex digest of a "sha256:<hex>" keyHash, or "" if it is not one.
func DigestFromKeyHash(keyHash string) string {
	hexDigest, ok := strings.CutPrefix(keyHash, "sha256:")
	if !ok || len(hexDigest) != sha256.Size*2 {
		return ""
	}
	if _, err := hex.DecodeString(hexDigest); err != nil || strings.ToLower(hexDigest) != hexDigest {
		return ""
	}
	return hexDigest
}

// KeyID returns the public identifier of the key with the given digest. It is derived from the
// digest, which is public already, so it reveals nothing about the key.
func KeyID(digest string) string {
	if len(digest) < 16 {
		return ""
	}
	return "kid_" + digest[:16]
}

// Hint returns what a human may see of a key: its prefix and its last 4 characters.
func Hint(key string) string {
	if len(key) < 8 {
		return ""
	}
	prefix := key[:0]
	if i := strings.IndexByte(key, '_'); i > 0 && i <= MaxPrefixLength {
		prefix = key[:i+1]
	}
	return prefix + "..." + key[len(key)-4:]
}

func validatePrefix(prefix string) error {
	if len(prefix) < MinPrefixLength || len(prefix) > MaxPrefixLength {
		return fmt.Errorf("%w: prefix must be %d to %d characters", ErrMalformed, MinPrefixLength, MaxPrefixLength)
	}
	for i := 0; i < len(prefix); i++ {
		c := prefix[i]
		if !(c >= 'a' && c <= 'z' || i > 0 && c >= '0' && c <= '9') {
			return fmt.Errorf("%w: prefix must be lowercase letters and digits, starting with a letter", ErrMalformed)
		}
	}
	return nil
}

// IsBase62 reports whether s holds only the characters of a key body (0-9, A-Z, a-z).
func IsBase62(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z') {
			return false
		}
	}
	return true
}

func randomBase62(n int) (string, error) {
	out := make([]byte, n)
	limit := big.NewInt(int64(len(base62)))
	for i := range out {
		// rand.Int is uniform (rejection sampling), so every character carries log2(62) bits.
		v, err := rand.Int(rand.Reader, limit)
		if err != nil {
			return "", err
		}
		out[i] = base62[v.Int64()]
	}
	return string(out), nil
}

// checksum encodes the CRC-32 of body as exactly ChecksumLength base62 characters
// (62^6 > 2^32, so every CRC-32 fits).
func checksum(body string) string {
	out := checksumBytes(body)
	return string(out[:])
}

// checksumBytes is checksum without allocating (Check runs on the data plane's hot path): the
// table-driven CRC-32 (IEEE) of the string itself, which crc32.ChecksumIEEE would need as a
// heap-allocated []byte.
func checksumBytes(body string) [ChecksumLength]byte {
	crc := ^uint32(0)
	for i := 0; i < len(body); i++ {
		crc = crc32.IEEETable[byte(crc)^body[i]] ^ crc>>8
	}
	v := ^crc
	var out [ChecksumLength]byte
	for i := ChecksumLength - 1; i >= 0; i-- {
		out[i] = base62[v%62]
		v /= 62
	}
	return out
}

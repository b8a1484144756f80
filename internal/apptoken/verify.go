package apptoken

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"k8s.io/utils/clock"
)

// Reason is the stable code of a refused token.
type Reason string

// Reasons of Verify's errors.
const (
	// ReasonMalformed: not a JWT, a missing kid, exp, iat or jti.
	ReasonMalformed Reason = "MALFORMED"
	// ReasonAlgorithmNotAllowed: alg is not EdDSA (none, HS256 keyed with the public key, ...).
	ReasonAlgorithmNotAllowed Reason = "ALGORITHM_NOT_ALLOWED"
	// ReasonInvalidSignature: the signature does not verify (a tampered header or payload).
	ReasonInvalidSignature Reason = "INVALID_SIGNATURE"
	// ReasonUnknownKey: the kid is not a published key.
	ReasonUnknownKey Reason = "UNKNOWN_KEY"
	// ReasonExpired: exp has passed.
	ReasonExpired Reason = "EXPIRED"
	// ReasonNotYetValid: nbf or iat lies in the future.
	ReasonNotYetValid Reason = "NOT_YET_VALID"
	// ReasonWrongIssuer: iss is not keycap's issuer.
	ReasonWrongIssuer Reason = "WRONG_ISSUER"
	// ReasonWrongAudience: the route requires an audience the token is not for.
	ReasonWrongAudience Reason = "WRONG_AUDIENCE"
)

// Error is a refusal with its reason. Its message never contains the token.
type Error struct {
	Reason Reason
	err    error
}

func (e *Error) Error() string { return fmt.Sprintf("%s: %v", e.Reason, e.err) }
func (e *Error) Unwrap() error { return e.err }

// ReasonOf returns the reason of an error returned by Verify ("" for nil).
func ReasonOf(err error) Reason {
	var e *Error
	if errors.As(err, &e) {
		return e.Reason
	}
	if err != nil {
		return ReasonMalformed
	}
	return ""
}

// KeyLookup finds a published public key by kid; signing.Manager and signing.PublicKeys
// implement it.
type KeyLookup interface {
	PublicKey(kid string) (ed25519.PublicKey, bool)
}

// Defaults of VerifierOptions.
const (
	DefaultLeeway    = 30 * time.Second
	DefaultCacheSize = 100_000
	// MaxTokenLength refuses absurd inputs before any parsing.
	MaxTokenLength = 8 << 10
)

// VerifierOptions configure a Verifier.
type VerifierOptions struct {
	// Issuer is the required iss.
	Issuer string
	// Leeway is the clock skew allowed on exp, nbf and iat. Defaults to DefaultLeeway.
	Leeway time.Duration
	// CacheSize bounds the cache of verified tokens. Defaults to DefaultCacheSize.
	CacheSize int
	// Clock is the time source. Defaults to the real clock.
	Clock clock.PassiveClock
}

// Verified is what the data plane needs of a verified token.
type Verified struct {
	// ID is the jti; KeyID its AppToken's status.keyID.
	ID, KeyID string
	// Subject is sub, Org the namespace the token acts for.
	Subject, Org string
	// Audiences are aud.
	Audiences []string
	// Scopes are the scopes claim.
	Scopes []string
	// IssuedAt and ExpiresAt are iat and exp.
	IssuedAt, ExpiresAt time.Time
	// SigningKeyID is the kid of the key that signed the token.
	SigningKeyID string
}

// HasAudience reports whether aud contains audience.
func (v *Verified) HasAudience(audience string) bool { return slices.Contains(v.Audiences, audience) }

// Verifier verifies AppToken JWTs with pinned algorithm, issuer and expiry rules, and caches
// verified tokens by their SHA-256 until they expire, so a token seen again costs a hash and a map
// lookup instead of a signature verification. It is safe for concurrent use.
type Verifier struct {
	keys   KeyLookup
	opts   VerifierOptions
	parser *jwt.Parser

	mu    sync.RWMutex
	cache map[[sha256.Size]byte]*Verified
}

// NewVerifier returns a Verifier looking keys up in keys.
func NewVerifier(keys KeyLookup, opts VerifierOptions) *Verifier {
	if opts.Leeway <= 0 {
		opts.Leeway = DefaultLeeway
	}
	if opts.CacheSize <= 0 {
		opts.CacheSize = DefaultCacheSize
	}
	if opts.Clock == nil {
		opts.Clock = clock.RealClock{}
	}
	v := &Verifier{keys: keys, opts: opts, cache: make(map[[sha256.Size]byte]*Verified)}
	v.parser = jwt.NewParser(
		jwt.WithValidMethods([]string{jwt.SigningMethodEdDSA.Alg()}),
		jwt.WithIssuer(opts.Issuer),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithLeeway(opts.Leeway),
		jwt.WithTimeFunc(opts.Clock.Now),
		jwt.WithStrictDecoding(),
	)
	return v
}

// LooksLikeJWT reports whether s has the shape of a compact JWS (three base64url parts), so the
// data plane can tell a bearer JWT from an opaque key without parsing it.
func LooksLikeJWT(s string) bool {
	return strings.Count(s, ".") == 2 && strings.HasPrefix(s, "eyJ")
}

// Verify checks token and, when audience is not empty, that it is meant for audience. It returns
// the token's claims or an *Error with a Reason. It does not know whether the AppToken is still
// active: the caller checks Verified.KeyID against its index.
func (v *Verifier) Verify(token, audience string) (*Verified, error) {
	if len(token) > MaxTokenLength {
		return nil, &Error{Reason: ReasonMalformed, err: errors.New("token too long")}
	}
	sum := sha256.Sum256([]byte(token))
	now := v.opts.Clock.Now()

	v.mu.RLock()
	hit := v.cache[sum]
	v.mu.RUnlock()
	if hit == nil {
		verified, err := v.verify(token)
		if err != nil {
			return nil, err
		}
		v.store(sum, verified, now)
		hit = verified
	} else if !now.Before(hit.ExpiresAt.Add(v.opts.Leeway)) {
		// The same bound the parser applies: exp + leeway.
		v.mu.Lock()
		delete(v.cache, sum)
		v.mu.Unlock()
		return nil, &Error{Reason: ReasonExpired, err: jwt.ErrTokenExpired}
	}
	if audience != "" && !hit.HasAudience(audience) {
		return nil, &Error{Reason: ReasonWrongAudience, err: jwt.ErrTokenInvalidAudience}
	}
	return hit, nil
}

func (v *Verifier) verify(token string) (*Verified, error) {
	claims := &Claims{}
	var kid string
	parsed, err := v.parser.ParseWithClaims(token, claims, func(t *jwt.Token) (any, error) {
		// RFC 7515 §4.1.11: "crit" lists extensions the recipient must understand; keycap
		// understands none (and an empty list is invalid), so any "crit" refuses the token.
		if _, crit := t.Header["crit"]; crit {
			return nil, &Error{Reason: ReasonMalformed, err: errors.New("crit header: no extension is understood")}
		}
		if err := numericDates(token); err != nil {
			return nil, err
		}
		kid, _ = t.Header["kid"].(string)
		if kid == "" {
			return nil, &Error{Reason: ReasonMalformed, err: errors.New("no kid in the header")}
		}
		key, ok := v.keys.PublicKey(kid)
		if !ok {
			return nil, &Error{Reason: ReasonUnknownKey, err: errors.New("unknown kid")}
		}
		return key, nil
	})
	if err != nil {
		if errors.Is(err, jwt.ErrTokenSignatureInvalid) && parsed != nil && parsed.Method != jwt.SigningMethodEdDSA {
			// golang-jwt reports a disallowed method as an invalid signature; say what it is.
			return nil, &Error{Reason: ReasonAlgorithmNotAllowed, err: err}
		}
		return nil, classify(err)
	}
	if !parsed.Valid || claims.ID == "" || claims.IssuedAt == nil {
		return nil, &Error{Reason: ReasonMalformed, err: errors.New("missing jti or iat")}
	}
	return &Verified{
		ID:           claims.ID,
		KeyID:        claims.KeyID(),
		Subject:      claims.Subject,
		Org:          claims.Org,
		Audiences:    []string(claims.Audience),
		Scopes:       claims.Scopes,
		IssuedAt:     claims.IssuedAt.Time,
		ExpiresAt:    claims.ExpiresAt.Time,
		SigningKeyID: kid,
	}, nil
}

// classify turns golang-jwt's errors into reasons, most specific first.
func classify(err error) error {
	var own *Error
	if errors.As(err, &own) {
		return own
	}
	reason := ReasonMalformed
	switch {
	case errors.Is(err, jwt.ErrTokenMalformed), errors.Is(err, jwt.ErrTokenUnverifiable),
		errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		reason = ReasonMalformed
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		reason = ReasonInvalidSignature
	case errors.Is(err, jwt.ErrTokenExpired):
		reason = ReasonExpired
	case errors.Is(err, jwt.ErrTokenNotValidYet), errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
		reason = ReasonNotYetValid
	case errors.Is(err, jwt.ErrTokenInvalidIssuer):
		reason = ReasonWrongIssuer
	case errors.Is(err, jwt.ErrTokenInvalidAudience):
		reason = ReasonWrongAudience
	}
	return &Error{Reason: reason, err: err}
}

// store caches a verified token. When the cache is full it first drops expired entries, then,
// if still full, an arbitrary tenth of it (Go's map iteration order), which keeps the cost of a
// miss bounded under a flood of distinct valid tokens.
func (v *Verifier) store(sum [sha256.Size]byte, verified *Verified, now time.Time) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if len(v.cache) >= v.opts.CacheSize {
		for k, e := range v.cache {
			if !now.Before(e.ExpiresAt.Add(v.opts.Leeway)) {
				delete(v.cache, k)
			}
		}
		if drop := len(v.cache) - v.opts.CacheSize + max(v.opts.CacheSize/10, 1); drop > 0 {
			for k := range v.cache {
				if drop == 0 {
					break
				}
				delete(v.cache, k)
				drop--
			}
		}
	}
	v.cache[sum] = verified
}

// CacheLen returns the number of cached tokens.
func (v *Verifier) CacheLen() int {
	v.mu.RLock()
	defer v.mu.RUnlock()
	return len(v.cache)
}

// numericDates refuses a token whose exp, nbf or iat is not a JSON number (RFC 7519 §2
// NumericDate, RFC 8725 §3.11): golang-jwt also reads a string holding digits as a date. It is
// called only for tokens not yet in the cache, so the second decode of the payload costs nothing
// on repeated tokens.
func numericDates(token string) error {
	_, rest, _ := strings.Cut(token, ".")
	payload, _, _ := strings.Cut(rest, ".")
	raw, err := base64.RawURLEncoding.DecodeString(payload)
	if err != nil {
		return &Error{Reason: ReasonMalformed, err: err}
	}
	var dates struct {
		Exp, Nbf, Iat json.RawMessage
	}
	if err := json.Unmarshal(raw, &dates); err != nil {
		return &Error{Reason: ReasonMalformed, err: err}
	}
	for name, v := range map[string]json.RawMessage{"exp": dates.Exp, "nbf": dates.Nbf, "iat": dates.Iat} {
		if len(v) > 0 && (v[0] == '-' || v[0] >= '0' && v[0] <= '9') {
			continue
		}
		if len(v) > 0 {
			return &Error{Reason: ReasonMalformed, err: fmt.Errorf("%s is not a NumericDate", name)}
		}
	}
	return nil
}

// Package apptoken issues and verifies AppToken JWTs.
//
// An AppToken JWT is signed with EdDSA (Ed25519) by the current key of the signing key set and
// carries the registered claims aud, iat, iss, jti, nbf, sub, exp plus org (the AppToken's
// namespace) and scopes. Its header carries the signing key's kid.
//
// # Token family
//
// Every issued token has its own jti, "<keyID>.<random>", where keyID is the AppToken's stable
// status.keyID (derived from the object's UID, so a deleted and re-created AppToken of the same
// name gets a new one). The data plane refuses a verified token whose keyID does not belong to an
// active AppToken, which is how tokens of a disabled or deleted AppToken stop working at once
// although their signatures stay valid; tokens issued before a renewal keep working until their
// own exp, so consumers re-reading the Secret never hold a refused token.
package apptoken

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Signer gives the key that signs now; signing.Manager implements it.
type Signer interface {
	// Current returns the kid and private key that sign now, or "" and nil when there is none.
	Current() (kid string, key ed25519.PrivateKey)
}

// Claims are the claims of an AppToken JWT.
type Claims struct {
	jwt.RegisteredClaims
	// Org is the AppToken's namespace: the tenant the token acts for.
	Org string `json:"org"`
	// Scopes are the permissions the token grants.
	Scopes []string `json:"scopes,omitempty"`
}

// KeyID returns the AppToken's keyID: the jti up to its first ".".
func (c *Claims) KeyID() string { return KeyIDOfJTI(c.ID) }

// KeyIDOfJTI returns the keyID part of a jti.
func KeyIDOfJTI(jti string) string {
	keyID, _, _ := strings.Cut(jti, ".")
	return keyID
}

// KeyIDForUID returns the stable keyID of the AppToken object with the given UID.
func KeyIDForUID(uid string) string {
	sum := sha256.Sum256([]byte("keycap.dev/apptoken/" + uid))
	return "kat_" + hex.EncodeToString(sum[:8])
}

// Input is what Issue needs.
type Input struct {
	// Issuer is the iss claim.
	Issuer string
	// KeyID is the AppToken's status.keyID; the jti is KeyID + "." + 16 random characters.
	KeyID string
	// Subject is the sub claim.
	Subject string
	// Audiences are the aud claim; at least one.
	Audiences []string
	// Org is the namespace.
	Org string
	// Scopes are the granted scopes.
	Scopes []string
	// IssuedAt is iat and nbf, truncated to the second.
	IssuedAt time.Time
	// Lifetime is exp - iat.
	Lifetime time.Duration
}

// Issued is a signed token and what it says.
type Issued struct {
	// Token is the compact JWS.
	Token string
	// Claims are its claims.
	Claims Claims
	// SigningKeyID is the kid of the key that signed it.
	SigningKeyID string
}

// ErrNoSigningKey means the signer has no current key (the key set is not loaded).
var ErrNoSigningKey = errors.New("no signing key available")

// Issue signs a new AppToken JWT.
func Issue(signer Signer, in Input) (*Issued, error) {
	kid, key := signer.Current()
	if kid == "" || key == nil {
		return nil, ErrNoSigningKey
	}
	if in.Issuer == "" || in.KeyID == "" || len(in.Audiences) == 0 || in.Lifetime <= 0 {
		return nil, errors.New("issuer, keyID, audiences and a positive lifetime are required")
	}
	var random [12]byte
	if _, err := rand.Read(random[:]); err != nil {
		return nil, fmt.Errorf("generating a jti: %w", err)
	}
	iat := in.IssuedAt.UTC().Truncate(time.Second)
	claims := Claims{
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer:    in.Issuer,
			Subject:   in.Subject,
			Audience:  jwt.ClaimStrings(in.Audiences),
			ExpiresAt: jwt.NewNumericDate(iat.Add(in.Lifetime)),
			NotBefore: jwt.NewNumericDate(iat),
			IssuedAt:  jwt.NewNumericDate(iat),
			ID:        in.KeyID + "." + base64.RawURLEncoding.EncodeToString(random[:]),
		},
		Org:    in.Org,
		Scopes: in.Scopes,
	}
	token := jwt.NewWithClaims(jwt.SigningMethodEdDSA, claims)
	token.Header["kid"] = kid
	signed, err := token.SignedString(key)
	if err != nil {
		return nil, fmt.Errorf("signing the token: %w", err)
	}
	return &Issued{Token: signed, Claims: claims, SigningKeyID: kid}, nil
}

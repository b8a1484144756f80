// Package licensefile writes and verifies keycap licence files.
//
// # Format
//
// A licence file is a compact JWS (RFC 7515) signed with Ed25519 (alg "EdDSA", RFC 8037),
// wrapped in armour lines so that it is recognisable in a file or a Secret:
//
//	-----BEGIN KEYCAP LICENSE-----
//	<base64url(header)>.<base64url(payload)>.<base64url(signature)>
//	-----END KEYCAP LICENSE-----
//
// The header is {"alg":"EdDSA","kid":"<licence key kid>","typ":"keycap-license+jws"}; the payload
// is the JSON of Payload; the signature is Ed25519 over "<header>.<payload>" as in any JWS, so any
// JOSE library verifies it as well as Verify does.
//
// # Key
//
// Files are signed with keycap's licence key, a dedicated Ed25519 key that does not rotate (see
// package signing): the public key is served as PEM at /.well-known/keycap-license-key.pem and
// kept in the ConfigMap keycap-public-keys (data key license-public-key.pem) in the operator
// namespace. A product ships that public key and calls Verify, or verifies by hand:
//
//	kubectl get secret <license> -o jsonpath='{.data.license-file}' | base64 -d > license.txt
//	kubectl -n keycap-system get configmap keycap-public-keys -o jsonpath='{.data.license-public-key\.pem}' > pub.pem
//	# then, in Go: licensefile.Verify(file, pub, time.Now()) after signing.ParsePublicKeyPEM(pub.pem)
package licensefile

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Armour lines around the JWS.
const (
	BeginLine = "-----BEGIN KEYCAP LICENSE-----"
	EndLine   = "-----END KEYCAP LICENSE-----"
	// Type is the JWS typ header.
	Type = "keycap-license+jws"
	// MaxFileSize bounds what Verify reads.
	MaxFileSize = 64 << 10
)

// Payload is what a licence file asserts.
type Payload struct {
	// LicenseID is the License's status.keyID.
	LicenseID string `json:"licenseId"`
	// Namespace and Name name the License object; the namespace is the org.
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	// Product, Customer and Plan come from the License's spec.
	Product  string `json:"product"`
	Customer string `json:"customer,omitempty"`
	Plan     string `json:"plan,omitempty"`
	// Entitlements are the features the licence unlocks.
	Entitlements []string `json:"entitlements,omitempty"`
	// MaxInstances caps the activated instances.
	MaxInstances int32 `json:"maxInstances"`
	// KeyDigest is the SHA-256 (lowercase hex) of the licence key, binding the file to its key.
	KeyDigest string `json:"keyDigest"`
	// IssuedAt is when the file was signed.
	IssuedAt time.Time `json:"issuedAt"`
	// ExpiresAt is when the licence expires; nil when it does not.
	ExpiresAt *time.Time `json:"expiresAt,omitempty"`
}

type header struct {
	Alg string `json:"alg"`
	Kid string `json:"kid"`
	Typ string `json:"typ"`
}

// Errors of Verify.
var (
	ErrMalformed = errors.New("malformed licence file")
	ErrSignature = errors.New("licence file signature does not verify")
	ErrExpired   = errors.New("licence expired")
)

// Sign returns the licence file of p signed by key, whose kid is kid.
func Sign(p Payload, kid string, key ed25519.PrivateKey) ([]byte, error) {
	if len(key) != ed25519.PrivateKeySize || kid == "" {
		return nil, errors.New("a licence signing key and its kid are required")
	}
	h, err := json.Marshal(header{Alg: "EdDSA", Kid: kid, Typ: Type})
	if err != nil {
		return nil, err
	}
	body, err := json.Marshal(p)
	if err != nil {
		return nil, err
	}
	signingInput := b64(h) + "." + b64(body)
	sig := ed25519.Sign(key, []byte(signingInput))
	var out bytes.Buffer
	out.WriteString(BeginLine + "\n" + signingInput + "." + b64(sig) + "\n" + EndLine + "\n")
	return out.Bytes(), nil
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// KeyID returns the kid of the key that signed file, without verifying anything, so a verifier
// holding several public keys can pick one.
func KeyID(file []byte) (string, error) {
	parts, err := split(file)
	if err != nil {
		return "", err
	}
	h, err := decodeHeader(parts[0])
	if err != nil {
		return "", err
	}
	return h.Kid, nil
}

// Verify checks file's signature with pub and that the licence has not expired at now, and
// returns its payload. On ErrExpired the payload is returned too, so a product can say which
// licence expired.
func Verify(file []byte, pub ed25519.PublicKey, now time.Time) (*Payload, error) {
	if len(pub) != ed25519.PublicKeySize {
		return nil, errors.New("an Ed25519 public key is required")
	}
	parts, err := split(file)
	if err != nil {
		return nil, err
	}
	h, err := decodeHeader(parts[0])
	if err != nil {
		return nil, err
	}
	if h.Alg != "EdDSA" {
		return nil, fmt.Errorf("%w: algorithm %q is not EdDSA", ErrMalformed, h.Alg)
	}
	sig, err := base64.RawURLEncoding.DecodeString(string(parts[2]))
	if err != nil || len(sig) != ed25519.SignatureSize {
		return nil, fmt.Errorf("%w: bad signature encoding", ErrMalformed)
	}
	signingInput := make([]byte, 0, len(parts[0])+1+len(parts[1]))
	signingInput = append(append(append(signingInput, parts[0]...), '.'), parts[1]...)
	if !ed25519.Verify(pub, signingInput, sig) {
		return nil, ErrSignature
	}
	body, err := base64.RawURLEncoding.DecodeString(string(parts[1]))
	if err != nil {
		return nil, fmt.Errorf("%w: bad payload encoding", ErrMalformed)
	}
	p := &Payload{}
	if err := json.Unmarshal(body, p); err != nil {
		return nil, fmt.Errorf("%w: bad payload", ErrMalformed)
	}
	if p.ExpiresAt != nil && !now.Before(*p.ExpiresAt) {
		return p, ErrExpired
	}
	return p, nil
}

// split returns the three JWS parts of an armoured or bare licence file.
func split(file []byte) ([][]byte, error) {
	if len(file) > MaxFileSize {
		return nil, fmt.Errorf("%w: too large", ErrMalformed)
	}
	s := bytes.TrimSpace(file)
	if rest, ok := bytes.CutPrefix(s, []byte(BeginLine)); ok {
		inner, ok := bytes.CutSuffix(rest, []byte(EndLine))
		if !ok {
			return nil, fmt.Errorf("%w: no end line", ErrMalformed)
		}
		s = bytes.TrimSpace(inner)
	}
	parts := bytes.Split(s, []byte("."))
	if len(parts) != 3 {
		return nil, fmt.Errorf("%w: not a compact JWS", ErrMalformed)
	}
	return parts, nil
}

func decodeHeader(part []byte) (header, error) {
	var h header
	raw, err := base64.RawURLEncoding.DecodeString(string(part))
	if err != nil {
		return h, fmt.Errorf("%w: bad header encoding", ErrMalformed)
	}
	if err := json.Unmarshal(raw, &h); err != nil {
		return h, fmt.Errorf("%w: bad header", ErrMalformed)
	}
	return h, nil
}

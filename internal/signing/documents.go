package signing

import (
	"crypto/ed25519"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"strings"
)

// Well-known paths served by Handler.
const (
	JWKSPath                = "/.well-known/jwks.json"
	OpenIDConfigurationPath = "/.well-known/openid-configuration"
	LicensePublicKeyPath    = "/.well-known/keycap-license-key.pem"
)

// DefaultIssuer is the iss of AppTokens unless configured otherwise.
const DefaultIssuer = "https://keycap.keycap-system.svc"

// Algorithm is the JWS algorithm of every key (RFC 8037).
const Algorithm = "EdDSA"

// JWK is an Ed25519 public key as a JSON Web Key (RFC 8037 §2).
type JWK struct {
	KeyType   string `json:"kty"`
	Curve     string `json:"crv"`
	X         string `json:"x"`
	KeyID     string `json:"kid"`
	Use       string `json:"use"`
	Algorithm string `json:"alg"`
}

// JWKSet is a JSON Web Key Set.
type JWKSet struct {
	Keys []JWK `json:"keys"`
}

// NewJWK returns the JWK of pub.
func NewJWK(pub ed25519.PublicKey) JWK {
	return JWK{KeyType: "OKP", Curve: "Ed25519", X: base64.RawURLEncoding.EncodeToString(pub),
		KeyID: Thumbprint(pub), Use: "sig", Algorithm: Algorithm}
}

// PublicKey returns the Ed25519 key of j, checking its kid.
func (j JWK) PublicKey() (ed25519.PublicKey, error) {
	if j.KeyType != "OKP" || j.Curve != "Ed25519" {
		return nil, fmt.Errorf("key %q is not an Ed25519 OKP key", j.KeyID)
	}
	x, err := base64.RawURLEncoding.DecodeString(j.X)
	if err != nil || len(x) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("key %q: bad x", j.KeyID)
	}
	return ed25519.PublicKey(x), nil
}

// JWKS returns the JWK set of every AppToken key published in s (never the licence key).
func (s State) JWKS() JWKSet {
	set := JWKSet{Keys: make([]JWK, 0, len(s.Keys))}
	for _, k := range s.Keys {
		set.Keys = append(set.Keys, NewJWK(k.Public))
	}
	return set
}

// OpenIDConfiguration is the discovery document (OpenID Connect Discovery 1.0 §3) for verifiers
// of AppTokens.
type OpenIDConfiguration struct {
	Issuer                           string   `json:"issuer"`
	JWKSURI                          string   `json:"jwks_uri"`
	ResponseTypesSupported           []string `json:"response_types_supported"`
	SubjectTypesSupported            []string `json:"subject_types_supported"`
	IDTokenSigningAlgValuesSupported []string `json:"id_token_signing_alg_values_supported"`
	ClaimsSupported                  []string `json:"claims_supported"`
}

// NewOpenIDConfiguration returns the discovery document of issuer; jwksURI defaults to
// issuer + JWKSPath.
func NewOpenIDConfiguration(issuer, jwksURI string) OpenIDConfiguration {
	if jwksURI == "" {
		jwksURI = strings.TrimSuffix(issuer, "/") + JWKSPath
	}
	return OpenIDConfiguration{
		Issuer:                           issuer,
		JWKSURI:                          jwksURI,
		ResponseTypesSupported:           []string{"id_token"},
		SubjectTypesSupported:            []string{"public"},
		IDTokenSigningAlgValuesSupported: []string{Algorithm},
		ClaimsSupported:                  []string{"aud", "exp", "iat", "iss", "jti", "nbf", "sub", "org", "scopes"},
	}
}

// EncodePublicKeyPEM encodes pub as a PEM "PUBLIC KEY" block (PKIX), as `openssl pkey -pubin`
// reads it.
func EncodePublicKeyPEM(pub ed25519.PublicKey) []byte {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		// MarshalPKIXPublicKey cannot fail for an ed25519.PublicKey.
		panic(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

// ParsePublicKeyPEM decodes a PEM "PUBLIC KEY" block holding an Ed25519 key.
func ParsePublicKeyPEM(data []byte) (ed25519.PublicKey, error) {
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "PUBLIC KEY" {
		return nil, errors.New("no PEM PUBLIC KEY block")
	}
	key, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil {
		return nil, err
	}
	pub, ok := key.(ed25519.PublicKey)
	if !ok {
		return nil, errors.New("not an Ed25519 public key")
	}
	return pub, nil
}

// Documents is what Handler serves.
type Documents interface {
	// JWKS returns the JWK set JSON.
	JWKS() []byte
	// OpenIDConfiguration returns the discovery document JSON.
	OpenIDConfiguration() []byte
	// LicensePublicKeyPEM returns the licence public key as PEM.
	LicensePublicKeyPEM() []byte
}

// Handler serves JWKSPath, OpenIDConfigurationPath and LicensePublicKeyPath from docs, with 503
// while the keys are not loaded yet. Mount it at those paths (or at "/.well-known/").
func Handler(docs Documents) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		var body []byte
		contentType := "application/json"
		switch r.URL.Path {
		case JWKSPath:
			body, contentType = docs.JWKS(), "application/jwk-set+json"
		case OpenIDConfigurationPath:
			body = docs.OpenIDConfiguration()
		case LicensePublicKeyPath:
			body, contentType = docs.LicensePublicKeyPEM(), "application/x-pem-file"
		default:
			http.NotFound(w, r)
			return
		}
		if body == nil {
			w.Header().Set("Retry-After", "5")
			http.Error(w, "signing keys not loaded yet", http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", contentType)
		// Verifiers re-fetch within the pre-publication window of a new key.
		w.Header().Set("Cache-Control", "public, max-age=300")
		_, _ = w.Write(body)
	})
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

// Package pki issues the X.509 certificates keycap makes itself: the local control plane's CA and
// its serving and client certificates (internal/localcluster, on disk under .local/pki) and the
// webhook's CA and serving certificate (internal/webhookcert, in a Secret). Both keep their own
// storage and renewal rules; key generation, serial numbers and signing are written once, here.
// Every key is ECDSA P-256.
package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"math/big"
)

// SerialNumber returns a random positive serial number of up to 128 bits (RFC 5280 allows 20
// octets; randomness keeps two certificates of one CA from ever sharing a serial).
func SerialNumber() (*big.Int, error) {
	return rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
}

// NewCA creates a self-signed CA from template (subject, validity and any constraints the caller
// wants; the serial number, key usage and CA flags are set here) with a new key.
func NewCA(template *x509.Certificate) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	template.KeyUsage |= x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature
	template.BasicConstraintsValid = true
	template.IsCA = true
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	cert, err := sign(template, template, key.Public(), key)
	if err != nil {
		return nil, nil, fmt.Errorf("signing the CA %q: %w", template.Subject.CommonName, err)
	}
	return cert, key, nil
}

// Issue creates a certificate from template (its serial number is set here) for a new key,
// signed by ca with caKey.
func Issue(template, ca *x509.Certificate, caKey crypto.Signer) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	cert, err := sign(template, ca, key.Public(), caKey)
	if err != nil {
		return nil, nil, fmt.Errorf("signing %q: %w", template.Subject.CommonName, err)
	}
	return cert, key, nil
}

func sign(template, parent *x509.Certificate, pub crypto.PublicKey, parentKey crypto.Signer) (*x509.Certificate, error) {
	serial, err := SerialNumber()
	if err != nil {
		return nil, err
	}
	template.SerialNumber = serial
	der, err := x509.CreateCertificate(rand.Reader, template, parent, pub, parentKey)
	if err != nil {
		return nil, err
	}
	return x509.ParseCertificate(der)
}

// EncodeCert returns the PEM of a certificate's DER bytes.
func EncodeCert(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

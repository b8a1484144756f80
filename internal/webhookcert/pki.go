package webhookcert

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"slices"
	"time"

	"github.com/keycap-dev/keycap/internal/pki"
)

// backdate moves NotBefore into the past so that an apiserver whose clock is a little behind the
// operator's still accepts a certificate issued a moment ago.
const backdate = 5 * time.Minute

// authority is a CA that can sign serving certificates.
type authority struct {
	cert    *x509.Certificate
	certPEM []byte
	key     *ecdsa.PrivateKey
	keyPEM  []byte
}

// newAuthority creates a self-signed ECDSA P-256 CA valid from now-backdate for lifetime.
func newAuthority(commonName string, now time.Time, lifetime time.Duration) (*authority, error) {
	cert, key, err := pki.NewCA(&x509.Certificate{
		Subject:        pkix.Name{CommonName: commonName, Organization: []string{"keycap"}},
		NotBefore:      now.Add(-backdate),
		NotAfter:       now.Add(lifetime),
		MaxPathLenZero: true,
	})
	if err != nil {
		return nil, err
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, err
	}
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})
	return &authority{cert: cert, certPEM: pki.EncodeCert(cert.Raw), key: key, keyPEM: keyPEM}, nil
}

// issue signs a serving certificate for the given names, valid until min(now+lifetime, the CA's
// expiry). It returns the certificate and key in PEM.
func (a *authority) issue(dnsNames []string, ips []net.IP, now time.Time, lifetime time.Duration) (certPEM, keyPEM []byte, err error) {
	notAfter := now.Add(lifetime)
	if notAfter.After(a.cert.NotAfter) {
		notAfter = a.cert.NotAfter
	}
	cn := "keycap-webhook"
	if len(dnsNames) > 0 {
		cn = dnsNames[0]
	}
	cert, key, err := pki.Issue(&x509.Certificate{
		Subject:     pkix.Name{CommonName: cn, Organization: []string{"keycap"}},
		NotBefore:   now.Add(-backdate),
		NotAfter:    notAfter,
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:    dnsNames,
		IPAddresses: ips,
	}, a.cert, a.key)
	if err != nil {
		return nil, nil, fmt.Errorf("the serving certificate: %w", err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	return pki.EncodeCert(cert.Raw), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), nil
}

// parseAuthority reads the CA from its certificate and key PEM.
func parseAuthority(certPEM, keyPEM []byte) (*authority, error) {
	certs, err := parseCerts(certPEM)
	if err != nil {
		return nil, fmt.Errorf("CA certificate: %w", err)
	}
	if len(certs) != 1 {
		return nil, fmt.Errorf("CA certificate: want one certificate, found %d", len(certs))
	}
	block, _ := pem.Decode(keyPEM)
	if block == nil {
		return nil, errors.New("CA key: no PEM block")
	}
	key, err := x509.ParseECPrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("CA key: %w", err)
	}
	if !key.PublicKey.Equal(certs[0].PublicKey) {
		return nil, errors.New("CA key does not match the CA certificate")
	}
	return &authority{cert: certs[0], certPEM: certPEM, key: key, keyPEM: keyPEM}, nil
}

// parseCerts parses every CERTIFICATE block of a PEM bundle.
func parseCerts(bundle []byte) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	for rest := bundle; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, errors.New("no certificate")
	}
	return out, nil
}

// servingState describes a serving certificate as found in the Secret.
type servingState struct {
	leaf   *x509.Certificate
	keyPEM []byte
	pair   *tls.Certificate
}

// parseServing reads a serving certificate and key; it fails when they do not belong together.
func parseServing(certPEM, keyPEM []byte) (*servingState, error) {
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, err
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		return nil, err
	}
	pair.Leaf = leaf
	return &servingState{leaf: leaf, keyPEM: keyPEM, pair: &pair}, nil
}

// signedBy reports whether leaf verifies against ca for server auth at now.
func signedBy(leaf, ca *x509.Certificate, now time.Time) bool {
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	_, err := leaf.Verify(x509.VerifyOptions{Roots: pool, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
	return err == nil
}

// coversNames reports whether leaf holds exactly the wanted SANs.
func coversNames(leaf *x509.Certificate, dnsNames []string, ips []net.IP) bool {
	if !slices.Equal(leaf.DNSNames, dnsNames) || len(leaf.IPAddresses) != len(ips) {
		return false
	}
	for i := range ips {
		if !leaf.IPAddresses[i].Equal(ips[i]) {
			return false
		}
	}
	return true
}

// bundleContains reports whether the PEM bundle holds cert.
func bundleContains(bundle []byte, cert *x509.Certificate) bool {
	certs, err := parseCerts(bundle)
	if err != nil {
		return false
	}
	for _, c := range certs {
		if bytes.Equal(c.Raw, cert.Raw) {
			return true
		}
	}
	return false
}

package localcluster

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"

	keycappki "github.com/keycap-dev/keycap/internal/pki"
)

const (
	caLifetime   = 10 * 365 * 24 * time.Hour
	leafLifetime = 365 * 24 * time.Hour
	// A leaf certificate this close to expiry (or a CA this close) is issued again at start.
	renewBefore = 30 * 24 * time.Hour

	// The admin client certificate's organization: the group the apiserver gives all rights.
	adminGroup = "system:masters"
	adminUser  = "keycap-admin"

	// controllerManagerUser is the user the default RBAC policy binds to the
	// system:kube-controller-manager ClusterRole.
	controllerManagerUser = "system:kube-controller-manager"
)

// pki is the set of files under Dir/pki that the apiserver, the controller manager and the
// kubeconfigs use.
type pki struct {
	dir string
}

func (p pki) path(name string) string { return filepath.Join(p.dir, name) }

func (p pki) caCert() string         { return p.path("ca.crt") }
func (p pki) caKey() string          { return p.path("ca.key") }
func (p pki) servingCert() string    { return p.path("apiserver.crt") }
func (p pki) servingKey() string     { return p.path("apiserver.key") }
func (p pki) adminCert() string      { return p.path("admin.crt") }
func (p pki) adminKey() string       { return p.path("admin.key") }
func (p pki) kcmCert() string        { return p.path("kube-controller-manager.crt") }
func (p pki) kcmKey() string         { return p.path("kube-controller-manager.key") }
func (p pki) saSigningKey() string   { return p.path("sa.key") }
func (p pki) saVerifyingKey() string { return p.path("sa.pub") }

// ensure creates whatever is missing or near expiry and keeps the rest, so a second run reuses
// the CA (and every kubeconfig that trusts it) and the service-account key (and every token
// signed with it).
func (p pki) ensure(now time.Time) error {
	if err := os.MkdirAll(p.dir, 0o700); err != nil {
		return err
	}
	ca, caKey, err := loadPair(p.caCert(), p.caKey())
	if err != nil || !ca.IsCA || now.Add(renewBefore).After(ca.NotAfter) {
		if ca, caKey, err = newCA(now); err != nil {
			return err
		}
		if err := writePair(p.caCert(), p.caKey(), ca, caKey); err != nil {
			return err
		}
		// Every leaf signed by the old CA goes with it.
		for _, f := range []string{p.servingCert(), p.adminCert(), p.kcmCert()} {
			if err := os.Remove(f); err != nil && !errors.Is(err, os.ErrNotExist) {
				return err
			}
		}
	}

	serving := &x509.Certificate{
		Subject:     pkix.Name{CommonName: "kube-apiserver"},
		DNSNames:    []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP(serviceIP)},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	if err := p.ensureLeaf(p.servingCert(), p.servingKey(), serving, ca, caKey, now); err != nil {
		return err
	}
	admin := &x509.Certificate{
		Subject:     pkix.Name{CommonName: adminUser, Organization: []string{adminGroup}},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if err := p.ensureLeaf(p.adminCert(), p.adminKey(), admin, ca, caKey, now); err != nil {
		return err
	}
	controllerManager := &x509.Certificate{
		Subject:     pkix.Name{CommonName: controllerManagerUser},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if err := p.ensureLeaf(p.kcmCert(), p.kcmKey(), controllerManager, ca, caKey, now); err != nil {
		return err
	}
	return p.ensureServiceAccountKey()
}

func (p pki) ensureLeaf(certFile, keyFile string, template, ca *x509.Certificate, caKey crypto.Signer, now time.Time) error {
	cert, _, err := loadPair(certFile, keyFile)
	if err == nil && cert.CheckSignatureFrom(ca) == nil && now.Add(renewBefore).Before(cert.NotAfter) {
		return nil
	}
	template.NotBefore = now.Add(-time.Hour)
	template.NotAfter = now.Add(leafLifetime)
	template.KeyUsage = x509.KeyUsageDigitalSignature
	cert, key, err := keycappki.Issue(template, ca, caKey)
	if err != nil {
		return fmt.Errorf("%s: %w", filepath.Base(certFile), err)
	}
	return writePair(certFile, keyFile, cert, key)
}

func (p pki) ensureServiceAccountKey() error {
	if _, err := os.Stat(p.saSigningKey()); err == nil {
		if _, err := os.Stat(p.saVerifyingKey()); err == nil {
			return nil
		}
	}
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return err
	}
	priv, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	pub, err := x509.MarshalPKIXPublicKey(key.Public())
	if err != nil {
		return err
	}
	if err := writePEM(p.saSigningKey(), "PRIVATE KEY", priv, 0o600); err != nil {
		return err
	}
	return writePEM(p.saVerifyingKey(), "PUBLIC KEY", pub, 0o644)
}

func newCA(now time.Time) (*x509.Certificate, crypto.Signer, error) {
	return keycappki.NewCA(&x509.Certificate{
		Subject:   pkix.Name{CommonName: "keycap local control plane CA"},
		NotBefore: now.Add(-time.Hour),
		NotAfter:  now.Add(caLifetime),
		KeyUsage:  x509.KeyUsageCRLSign,
	})
}

func loadPair(certFile, keyFile string) (*x509.Certificate, crypto.Signer, error) {
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return nil, nil, err
	}
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, nil, err
	}
	cb, _ := pem.Decode(certPEM)
	kb, _ := pem.Decode(keyPEM)
	if cb == nil || kb == nil {
		return nil, nil, fmt.Errorf("%s or %s is not PEM", certFile, keyFile)
	}
	cert, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		return nil, nil, err
	}
	key, err := x509.ParsePKCS8PrivateKey(kb.Bytes)
	if err != nil {
		return nil, nil, err
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		return nil, nil, fmt.Errorf("%s holds no signing key", keyFile)
	}
	if pub, ok := signer.Public().(interface{ Equal(crypto.PublicKey) bool }); !ok || !pub.Equal(cert.PublicKey) {
		return nil, nil, fmt.Errorf("%s does not match %s", keyFile, certFile)
	}
	return cert, signer, nil
}

func writePair(certFile, keyFile string, cert *x509.Certificate, key crypto.Signer) error {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	if err := writePEM(keyFile, "PRIVATE KEY", der, 0o600); err != nil {
		return err
	}
	return writePEM(certFile, "CERTIFICATE", cert.Raw, 0o644)
}

func writePEM(file, blockType string, der []byte, mode os.FileMode) error {
	var buf bytes.Buffer
	if err := pem.Encode(&buf, &pem.Block{Type: blockType, Bytes: der}); err != nil {
		return err
	}
	return writeFileAtomic(file, buf.Bytes(), mode)
}

// writeFileAtomic writes through a temporary file and a rename, so an interrupted run never
// leaves half a key behind.
func writeFileAtomic(file string, data []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(file), "."+filepath.Base(file)+".*")
	if err != nil {
		return err
	}
	defer func() { _ = os.Remove(tmp.Name()) }()
	if _, err := tmp.Write(data); err != nil {
		_ = tmp.Close()
		return err
	}
	if err := tmp.Chmod(mode); err != nil {
		_ = tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), file)
}

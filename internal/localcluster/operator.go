package localcluster

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"path/filepath"
	"time"

	"k8s.io/client-go/rest"
)

// OperatorUser is the identity keycap's own process has on the local control plane. It is not the
// admin identity of Dir/kubeconfig on purpose: the tamper guard lets only the operator write the
// Secrets keycap manages, so the person using that kubeconfig is refused as she would be in a
// cluster, where the operator runs as its ServiceAccount.
const OperatorUser = "keycap-operator"

// OperatorConfig returns a client configuration for keycap's own process: OperatorUser, with a
// client certificate signed by the local CA (in system:masters, as the admin is: the local
// control plane has no RBAC for keycap installed). The certificate is kept under Dir/pki and
// issued again when missing, near expiry or signed by another CA.
func (c *Cluster) OperatorConfig() (*rest.Config, error) {
	p := pki{dir: filepath.Join(c.dir, "pki")}
	ca, caKey, err := loadPair(p.caCert(), p.caKey())
	if err != nil {
		return nil, fmt.Errorf("reading the local CA: %w", err)
	}
	certFile, keyFile := p.path("operator.crt"), p.path("operator.key")
	operator := &x509.Certificate{
		Subject:     pkix.Name{CommonName: OperatorUser, Organization: []string{adminGroup}},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if err := p.ensureLeaf(certFile, keyFile, operator, ca, caKey, time.Now()); err != nil {
		return nil, fmt.Errorf("issuing the operator's client certificate: %w", err)
	}
	return writeClientKubeconfig(p.path("operator.kubeconfig"), c.Config.Host, p, OperatorUser, certFile, keyFile)
}

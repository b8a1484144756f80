package webhook

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/onsi/gomega"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/keycap-dev/keycap/internal/webhookcert"
)

// These tests step the suite's fake clock. Each step is computed from the certificates' own
// times, and all steps together stay below clockOffset, so the fake clock never passes the real
// one (the apiserver checks certificates against the real clock).

func certSecret(g gomega.Gomega) *corev1.Secret {
	s := &corev1.Secret{}
	g.Expect(k8sClient.Get(context.Background(), types.NamespacedName{Namespace: operatorNS, Name: webhookcert.DefaultSecretName}, s)).To(gomega.Succeed())
	return s
}

func configuration(g gomega.Gomega) *admissionregistrationv1.ValidatingWebhookConfiguration {
	vwc := &admissionregistrationv1.ValidatingWebhookConfiguration{}
	g.Expect(k8sClient.Get(context.Background(), types.NamespacedName{Name: ConfigurationName}, vwc)).To(gomega.Succeed())
	return vwc
}

func pemCerts(g gomega.Gomega, b []byte) []*x509.Certificate {
	var out []*x509.Certificate
	for {
		var block *pem.Block
		block, b = pem.Decode(b)
		if block == nil {
			return out
		}
		c, err := x509.ParseCertificate(block.Bytes)
		g.Expect(err).NotTo(gomega.HaveOccurred())
		out = append(out, c)
	}
}

// caBundles returns the caBundle of every webhook; they must all be the same.
func caBundle(g gomega.Gomega) []byte {
	vwc := configuration(g)
	g.Expect(vwc.Webhooks).NotTo(gomega.BeEmpty())
	for _, w := range vwc.Webhooks[1:] {
		g.Expect(w.ClientConfig.CABundle).To(gomega.Equal(vwc.Webhooks[0].ClientConfig.CABundle))
	}
	return vwc.Webhooks[0].ClientConfig.CABundle
}

// stepClock moves the fake clock by d once the certificate manager waits on it.
func stepClock(g gomega.Gomega, d time.Duration) {
	g.Eventually(fakeClock.HasWaiters).WithTimeout(admissionTimeout).Should(gomega.BeTrue())
	g.Expect(fakeClock.Now().Add(d)).To(gomega.BeTemporally("<", time.Now()), "the fake clock must stay behind the real one")
	fakeClock.Step(d)
}

// prober keeps sending valid ApiKey creates (dry run) through the webhook and records failures.
type prober struct {
	stop chan struct{}
	wg   sync.WaitGroup
	mu   sync.Mutex
	errs []error
	n    int
}

func startProber(ns string) *prober {
	p := &prober{stop: make(chan struct{})}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			select {
			case <-p.stop:
				return
			default:
			}
			err := k8sClient.Create(context.Background(), newApiKey(ns, "probe"), client.DryRunAll)
			p.mu.Lock()
			p.n++
			if err != nil {
				p.errs = append(p.errs, err)
			}
			p.mu.Unlock()
		}
	}()
	return p
}

// waitMore waits until the prober made at least more further admissions.
func (p *prober) waitMore(g gomega.Gomega, more int) {
	p.mu.Lock()
	target := p.n + more
	p.mu.Unlock()
	g.Eventually(func() int {
		p.mu.Lock()
		defer p.mu.Unlock()
		return p.n
	}).WithTimeout(admissionTimeout).Should(gomega.BeNumerically(">=", target))
}

// served dials the webhook server afresh, trusting only the caBundle of the configuration, and
// returns the certificate it presents: the TLS check the apiserver makes on a new connection.
func served(g gomega.Gomega) *x509.Certificate {
	pool := x509.NewCertPool()
	g.Expect(pool.AppendCertsFromPEM(caBundle(g))).To(gomega.BeTrue())
	wio := env.WebhookInstallOptions
	conn, err := tls.Dial("tcp", net.JoinHostPort(wio.LocalServingHost, strconv.Itoa(wio.LocalServingPort)),
		&tls.Config{RootCAs: pool, ServerName: wio.LocalServingHost, MinVersion: tls.VersionTLS12})
	g.Expect(err).NotTo(gomega.HaveOccurred())
	defer func() { _ = conn.Close() }()
	return conn.ConnectionState().PeerCertificates[0]
}

func (p *prober) finish() (n int, errs []error) {
	close(p.stop)
	p.wg.Wait()
	return p.n, p.errs
}

func TestCertificateRotation(t *testing.T) {
	g := gomega.NewWithT(t)
	ctx := context.Background()
	certs := registered.Certificates
	g.Expect(certs).NotTo(gomega.BeNil())

	s0 := certSecret(g)
	cas0 := pemCerts(g, s0.Data[webhookcert.KeyCABundle])
	g.Expect(cas0).To(gomega.HaveLen(1))
	ca0 := cas0[0]
	leaf0 := pemCerts(g, s0.Data[corev1.TLSCertKey])[0]
	g.Expect(caBundle(g)).To(gomega.Equal(s0.Data[webhookcert.KeyCABundle]), "the caBundle is the CA in the Secret")

	t.Run("the serving certificate covers make run and the in-cluster Service", func(t *testing.T) {
		g := gomega.NewWithT(t)
		g.Expect(leaf0.DNSNames).To(gomega.ContainElements("localhost",
			"keycap-webhook-service.keycap-system.svc", "keycap-webhook-service.keycap-system.svc.cluster.local"))
		g.Expect(leaf0.IPAddresses).To(gomega.ContainElement(gomega.Satisfy(func(ip any) bool {
			return ip.(interface{ String() string }).String() == "127.0.0.1"
		})))
		g.Expect(leaf0.PublicKeyAlgorithm).To(gomega.Equal(x509.ECDSA))
		g.Expect(ca0.IsCA).To(gomega.BeTrue())
	})

	t.Run("a sync with nothing due writes nothing", func(t *testing.T) {
		g := gomega.NewWithT(t)
		_, err := certs.Sync(ctx)
		g.Expect(err).NotTo(gomega.HaveOccurred())
		g.Expect(certSecret(g).ResourceVersion).To(gomega.Equal(s0.ResourceVersion))
	})

	probeNS := newNamespace(t)
	p := startProber(probeNS)

	// 1. The serving certificate is renewed before it expires, by the same CA.
	stepClock(g, leaf0.NotAfter.Add(-testServingRenewBefore).Sub(fakeClock.Now()))
	var leaf1 *x509.Certificate
	g.Eventually(func(g gomega.Gomega) {
		leaf1 = pemCerts(g, certSecret(g).Data[corev1.TLSCertKey])[0]
		g.Expect(leaf1.SerialNumber).NotTo(gomega.Equal(leaf0.SerialNumber))
	}).WithTimeout(admissionTimeout).Should(gomega.Succeed())
	g.Expect(leaf1.NotAfter).To(gomega.BeTemporally(">", leaf0.NotAfter))
	g.Expect(leaf1.CheckSignatureFrom(ca0)).To(gomega.Succeed())
	g.Expect(time.Now()).To(gomega.BeTemporally("<", leaf0.NotAfter), "renewed before the old certificate expired")
	g.Expect(caBundle(g)).To(gomega.Equal(s0.Data[webhookcert.KeyCABundle]), "same CA, same caBundle")
	// The webhook serves the new certificate (GetCertificate), without a restart.
	g.Eventually(func(g gomega.Gomega) *big.Int { return served(g).SerialNumber }).
		WithTimeout(admissionTimeout).Should(gomega.Equal(leaf1.SerialNumber))
	p.waitMore(g, 20)

	// 2. The CA is renewed before it expires: the new CA joins the caBundle next to the old one,
	// and the serving certificate stays with the old CA until the apiserver trusts the new one.
	stepClock(g, ca0.NotAfter.Add(-testCARenewBefore).Sub(fakeClock.Now()))
	var ca1 *x509.Certificate
	g.Eventually(func(g gomega.Gomega) {
		bundle := pemCerts(g, caBundle(g))
		g.Expect(bundle).To(gomega.HaveLen(2))
		ca1 = bundle[0]
		g.Expect(ca1.Equal(ca0)).To(gomega.BeFalse(), "a new CA leads the bundle")
		g.Expect(bundle[1].Equal(ca0)).To(gomega.BeTrue(), "the old CA stays trusted")
	}).WithTimeout(admissionTimeout).Should(gomega.Succeed())
	g.Expect(ca1.NotAfter).To(gomega.BeTemporally(">", ca0.NotAfter))
	s2 := certSecret(g)
	g.Expect(pemCerts(g, s2.Data[corev1.TLSCertKey])[0].Equal(leaf1)).To(gomega.BeTrue(),
		"the serving certificate waits until the new CA has settled in the caBundle")
	g.Expect(served(g).SerialNumber).To(gomega.Equal(leaf1.SerialNumber))
	p.waitMore(g, 20)

	// 3. After the settling time the serving certificate moves to the new CA.
	stepClock(g, webhookcert.DefaultSettle)
	var leaf2 *x509.Certificate
	g.Eventually(func(g gomega.Gomega) {
		leaf2 = pemCerts(g, certSecret(g).Data[corev1.TLSCertKey])[0]
		g.Expect(leaf2.CheckSignatureFrom(ca1)).To(gomega.Succeed())
	}).WithTimeout(admissionTimeout).Should(gomega.Succeed())
	g.Eventually(func(g gomega.Gomega) *big.Int { return served(g).SerialNumber }).
		WithTimeout(admissionTimeout).Should(gomega.Equal(leaf2.SerialNumber))
	p.waitMore(g, 20)
	g.Expect(pemCerts(g, caBundle(g))).To(gomega.HaveLen(2), "the old CA stays in the bundle until it expires")

	// Admission worked all along: every probe across both switches was admitted.
	mustCreate(t, newApiKey(probeNS, "after-rotation"))
	n, errs := p.finish()
	g.Expect(errs).To(gomega.BeEmpty())
	g.Expect(n).To(gomega.BeNumerically(">", 0))
	t.Logf("%d admissions across the rotation, none failed", n)
}

// TestOverwrittenCABundle: a caBundle overwritten by someone (a re-applied manifest) makes every
// admission fail (failurePolicy Fail) except metadata-only updates (the matchCondition that keeps
// the operator's finalizer edits independent of the webhook), and the certificate manager repairs
// it at its next check.
func TestOverwrittenCABundle(t *testing.T) {
	g := gomega.NewWithT(t)
	ctx := context.Background()
	ns := newNamespace(t)
	k := newApiKey(ns, "k")
	mustCreate(t, k)

	vwc := configuration(g)
	foreign := foreignCA(t)
	for i := range vwc.Webhooks {
		vwc.Webhooks[i].ClientConfig.CABundle = foreign
	}
	g.Expect(k8sClient.Update(ctx, vwc)).To(gomega.Succeed())

	changed := k.DeepCopy()
	changed.Spec.Description = "changed"
	g.Eventually(func() error { return k8sClient.Update(ctx, changed.DeepCopy(), client.DryRunAll) }).
		WithTimeout(admissionTimeout).Should(gomega.MatchError(gomega.ContainSubstring("failed calling webhook")))

	// The tamper guard leaves the operator's own writes out at the apiserver (the matchCondition,
	// fitted to the running operator's identity), so a webhook that is down never blocks the
	// controllers; everybody else's edits of managed Secrets fail closed.
	for _, w := range vwc.Webhooks {
		if w.Name == "vsecret.keycap.dev" {
			g.Expect(w.MatchConditions).To(gomega.ContainElement(gomega.HaveField("Expression", `!(request.userInfo.username in ["admin"])`)))
		}
	}
	user := userClient(t, "bob", ns)
	mustCreate(t, managedSecret(ns, "managed"))
	s := &corev1.Secret{}
	g.Expect(k8sClient.Get(ctx, client.ObjectKey{Namespace: ns, Name: "managed"}, s)).To(gomega.Succeed())
	s.Data["api-key"] = []byte("by-bob")
	g.Expect(user.Update(ctx, s.DeepCopy())).To(gomega.MatchError(gomega.ContainSubstring("failed calling webhook")))
	s.Data["api-key"] = []byte("by-the-operator")
	g.Expect(k8sClient.Update(ctx, s)).To(gomega.Succeed(), "the operator does not need the webhook")

	withFinalizer := k.DeepCopy()
	withFinalizer.Finalizers = []string{"keycap.dev/test"}
	g.Expect(k8sClient.Update(ctx, withFinalizer)).To(gomega.Succeed(), "a finalizer edit does not need the webhook")
	withFinalizer.Finalizers = nil
	g.Expect(k8sClient.Update(ctx, withFinalizer)).To(gomega.Succeed())

	stepClock(g, webhookcert.DefaultResync)
	g.Eventually(func(g gomega.Gomega) {
		g.Expect(bytes.Equal(caBundle(g), foreign)).To(gomega.BeFalse())
	}).WithTimeout(admissionTimeout).Should(gomega.Succeed())
	g.Eventually(func() error { return k8sClient.Create(ctx, newApiKey(ns, "again"), client.DryRunAll) }).
		WithTimeout(admissionTimeout).Should(gomega.Succeed())
}

// foreignCA returns the PEM of a CA that has nothing to do with keycap.
func foreignCA(t *testing.T) []byte {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "foreign"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

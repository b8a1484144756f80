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
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/onsi/gomega"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	clocktesting "k8s.io/utils/clock/testing"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/keycap-dev/keycap/internal/webhookcert"
)

// Each certificate test runs its own certificate manager with its own fake clock, behind its own
// ValidatingWebhookConfiguration and TLS listener (serving the suite's webhook handlers), so the
// tests neither share a clock budget nor depend on each other's order, and -count=2 runs them
// afresh. The apiserver checks certificates against the real clock, so each fake clock starts
// clockOffset behind it and is only ever stepped to at most the real time.

// certWebhook is one test's certificate manager and the webhook configuration it keeps.
type certWebhook struct {
	clock *clocktesting.FakeClock
	certs *webhookcert.Manager
	// namespace holds the certificate Secret; name is the ValidatingWebhookConfiguration's.
	namespace, name string
	// addr is the listener the configuration's webhooks call.
	addr string
}

// startCertWebhook starts a certificate manager for a copy of the suite's webhook configuration
// pointing at a listener of its own, and waits until the apiserver admits through it.
func startCertWebhook(t *testing.T) *certWebhook {
	t.Helper()
	g := gomega.NewWithT(t)
	ctx, cancel := context.WithCancel(context.Background())
	w := &certWebhook{
		clock:     clocktesting.NewFakeClock(time.Now().Add(-clockOffset)),
		namespace: newNamespace(t),
		name:      "keycap-" + strings.ToLower(strings.NewReplacer("/", "-", "_", "-").Replace(t.Name())),
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	g.Expect(err).NotTo(gomega.HaveOccurred())
	w.addr = ln.Addr().String()

	suite := configuration(g, ConfigurationName)
	vwc := &admissionregistrationv1.ValidatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: w.name}}
	for _, hook := range suite.Webhooks {
		hook = *hook.DeepCopy()
		g.Expect(hook.ClientConfig.URL).NotTo(gomega.BeNil(), "envtest points the webhooks at a URL")
		u, err := url.Parse(*hook.ClientConfig.URL)
		g.Expect(err).NotTo(gomega.HaveOccurred())
		u.Host = w.addr
		hook.ClientConfig.URL, hook.ClientConfig.CABundle = ptr.To(u.String()), nil
		vwc.Webhooks = append(vwc.Webhooks, hook)
	}
	g.Expect(k8sClient.Create(ctx, vwc)).To(gomega.Succeed())
	t.Cleanup(func() { _ = k8sClient.Delete(context.Background(), vwc) })

	w.certs, err = webhookcert.New(k8sClient, k8sClient, webhookcert.Options{
		Namespace:           w.namespace,
		ConfigurationName:   w.name,
		Clock:               w.clock,
		DNSNames:            servingDNSNames(DefaultServiceName, w.namespace),
		IPAddresses:         []net.IP{net.IPv4(127, 0, 0, 1)},
		MutateConfiguration: adaptConfiguration(w.namespace, registered.Operators),
		CALifetime:          testCALifetime,
		CARenewBefore:       testCARenewBefore,
		ServingLifetime:     testServingLifetime,
		ServingRenewBefore:  testServingRenewBefore,
	})
	g.Expect(err).NotTo(gomega.HaveOccurred())
	managerDone := make(chan struct{})
	go func() {
		defer close(managerDone)
		_ = w.certs.Start(ctx)
	}()
	srv := &http.Server{Handler: webhookMux, ReadHeaderTimeout: admissionTimeout}
	serverDone := make(chan struct{})
	go func() {
		defer close(serverDone)
		_ = srv.Serve(tls.NewListener(ln, &tls.Config{GetCertificate: w.certs.GetCertificate, MinVersion: tls.VersionTLS12}))
	}()
	t.Cleanup(func() {
		cancel()
		_ = srv.Close()
		<-managerDone
		<-serverDone
	})

	ns := newNamespace(t)
	g.Eventually(func() error { return k8sClient.Create(ctx, newApiKey(ns, "probe"), client.DryRunAll) }).
		WithTimeout(admissionTimeout).Should(gomega.Succeed(), "admission through the test's own webhook configuration")
	return w
}

func (w *certWebhook) secret(g gomega.Gomega) *corev1.Secret {
	s := &corev1.Secret{}
	g.Expect(k8sClient.Get(context.Background(), types.NamespacedName{Namespace: w.namespace, Name: webhookcert.DefaultSecretName}, s)).To(gomega.Succeed())
	return s
}

func configuration(g gomega.Gomega, name string) *admissionregistrationv1.ValidatingWebhookConfiguration {
	vwc := &admissionregistrationv1.ValidatingWebhookConfiguration{}
	g.Expect(k8sClient.Get(context.Background(), types.NamespacedName{Name: name}, vwc)).To(gomega.Succeed())
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

// caBundle returns the caBundle of every webhook of the test's configuration; they must all be
// the same.
func (w *certWebhook) caBundle(g gomega.Gomega) []byte {
	vwc := configuration(g, w.name)
	g.Expect(vwc.Webhooks).NotTo(gomega.BeEmpty())
	for _, hook := range vwc.Webhooks[1:] {
		g.Expect(hook.ClientConfig.CABundle).To(gomega.Equal(vwc.Webhooks[0].ClientConfig.CABundle))
	}
	return vwc.Webhooks[0].ClientConfig.CABundle
}

// stepClock moves the test's fake clock by d once the certificate manager waits on it.
func (w *certWebhook) stepClock(g gomega.Gomega, d time.Duration) {
	g.Eventually(w.clock.HasWaiters).WithTimeout(admissionTimeout).Should(gomega.BeTrue())
	g.Expect(w.clock.Now().Add(d)).To(gomega.BeTemporally("<", time.Now()), "the fake clock must stay behind the real one")
	w.clock.Step(d)
}

// served dials the test's webhook listener afresh, trusting only the caBundle of its
// configuration, and returns the certificate it presents: the TLS check the apiserver makes on a
// new connection.
func (w *certWebhook) served(g gomega.Gomega) *x509.Certificate {
	pool := x509.NewCertPool()
	g.Expect(pool.AppendCertsFromPEM(w.caBundle(g))).To(gomega.BeTrue())
	conn, err := tls.Dial("tcp", w.addr, &tls.Config{RootCAs: pool, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12})
	g.Expect(err).NotTo(gomega.HaveOccurred())
	defer func() { _ = conn.Close() }()
	return conn.ConnectionState().PeerCertificates[0]
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

func (p *prober) finish() (n int, errs []error) {
	close(p.stop)
	p.wg.Wait()
	return p.n, p.errs
}

func TestCertificateRotation(t *testing.T) {
	g := gomega.NewWithT(t)
	ctx := context.Background()
	g.Expect(registered.Certificates).NotTo(gomega.BeNil(), "the suite's webhook manages its certificates")
	w := startCertWebhook(t)
	certs := w.certs

	s0 := w.secret(g)
	cas0 := pemCerts(g, s0.Data[webhookcert.KeyCABundle])
	g.Expect(cas0).To(gomega.HaveLen(1))
	ca0 := cas0[0]
	leaf0 := pemCerts(g, s0.Data[corev1.TLSCertKey])[0]
	g.Expect(w.caBundle(g)).To(gomega.Equal(s0.Data[webhookcert.KeyCABundle]), "the caBundle is the CA in the Secret")

	t.Run("the serving certificate covers make run and the in-cluster Service", func(t *testing.T) {
		g := gomega.NewWithT(t)
		g.Expect(leaf0.DNSNames).To(gomega.ContainElements("localhost",
			"keycap-webhook-service."+w.namespace+".svc", "keycap-webhook-service."+w.namespace+".svc.cluster.local"))
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
		g.Expect(w.secret(g).ResourceVersion).To(gomega.Equal(s0.ResourceVersion))
	})

	probeNS := newNamespace(t)
	p := startProber(probeNS)

	// 1. The serving certificate is renewed before it expires, by the same CA.
	w.stepClock(g, leaf0.NotAfter.Add(-testServingRenewBefore).Sub(w.clock.Now()))
	var leaf1 *x509.Certificate
	g.Eventually(func(g gomega.Gomega) {
		leaf1 = pemCerts(g, w.secret(g).Data[corev1.TLSCertKey])[0]
		g.Expect(leaf1.SerialNumber).NotTo(gomega.Equal(leaf0.SerialNumber))
	}).WithTimeout(admissionTimeout).Should(gomega.Succeed())
	g.Expect(leaf1.NotAfter).To(gomega.BeTemporally(">", leaf0.NotAfter))
	g.Expect(leaf1.CheckSignatureFrom(ca0)).To(gomega.Succeed())
	g.Expect(time.Now()).To(gomega.BeTemporally("<", leaf0.NotAfter), "renewed before the old certificate expired")
	g.Expect(w.caBundle(g)).To(gomega.Equal(s0.Data[webhookcert.KeyCABundle]), "same CA, same caBundle")
	// The webhook serves the new certificate (GetCertificate), without a restart.
	g.Eventually(func(g gomega.Gomega) *big.Int { return w.served(g).SerialNumber }).
		WithTimeout(admissionTimeout).Should(gomega.Equal(leaf1.SerialNumber))
	p.waitMore(g, 20)

	// 2. The CA is renewed before it expires: the new CA joins the caBundle next to the old one,
	// and the serving certificate stays with the old CA until the apiserver trusts the new one.
	w.stepClock(g, ca0.NotAfter.Add(-testCARenewBefore).Sub(w.clock.Now()))
	var ca1 *x509.Certificate
	g.Eventually(func(g gomega.Gomega) {
		bundle := pemCerts(g, w.caBundle(g))
		g.Expect(bundle).To(gomega.HaveLen(2))
		ca1 = bundle[0]
		g.Expect(ca1.Equal(ca0)).To(gomega.BeFalse(), "a new CA leads the bundle")
		g.Expect(bundle[1].Equal(ca0)).To(gomega.BeTrue(), "the old CA stays trusted")
	}).WithTimeout(admissionTimeout).Should(gomega.Succeed())
	g.Expect(ca1.NotAfter).To(gomega.BeTemporally(">", ca0.NotAfter))
	s2 := w.secret(g)
	g.Expect(pemCerts(g, s2.Data[corev1.TLSCertKey])[0].Equal(leaf1)).To(gomega.BeTrue(),
		"the serving certificate waits until the new CA has settled in the caBundle")
	g.Expect(w.served(g).SerialNumber).To(gomega.Equal(leaf1.SerialNumber))
	p.waitMore(g, 20)

	// 3. After the settling time the serving certificate moves to the new CA.
	w.stepClock(g, webhookcert.DefaultSettle)
	var leaf2 *x509.Certificate
	g.Eventually(func(g gomega.Gomega) {
		leaf2 = pemCerts(g, w.secret(g).Data[corev1.TLSCertKey])[0]
		g.Expect(leaf2.CheckSignatureFrom(ca1)).To(gomega.Succeed())
	}).WithTimeout(admissionTimeout).Should(gomega.Succeed())
	g.Eventually(func(g gomega.Gomega) *big.Int { return w.served(g).SerialNumber }).
		WithTimeout(admissionTimeout).Should(gomega.Equal(leaf2.SerialNumber))
	p.waitMore(g, 20)
	g.Expect(pemCerts(g, w.caBundle(g))).To(gomega.HaveLen(2), "the old CA stays in the bundle until it expires")

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
	w := startCertWebhook(t)
	ns := newNamespace(t)
	k := newApiKey(ns, "k")
	mustCreate(t, k)

	vwc := configuration(g, w.name)
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
	g.Expect(vwc.Webhooks).To(gomega.ContainElement(gomega.And(
		gomega.HaveField("Name", "vsecret.keycap.dev"),
		gomega.HaveField("MatchConditions", gomega.ContainElement(gomega.HaveField("Expression",
			`!(request.userInfo.username in ["admin", "system:serviceaccount:keycap-system:keycap-manager"])`))),
	)), "the tamper guard's matchCondition names the running operator")
	user := userClient(t, "bob", ns)
	mustCreate(t, managedSecret(ns, "managed"))
	s := &corev1.Secret{}
	g.Expect(k8sClient.Get(ctx, client.ObjectKey{Namespace: ns, Name: "managed"}, s)).To(gomega.Succeed())
	// An edit the guard allows (the suite's own webhook configuration, which works, allows it) is
	// refused all the same, because this test's guard cannot be reached.
	byBob := s.DeepCopy()
	byBob.Annotations = map[string]string{"example.com/reloaded-at": "now"}
	g.Expect(user.Update(ctx, byBob)).To(gomega.MatchError(gomega.ContainSubstring("failed calling webhook")))
	s.Data["api-key"] = []byte("by-the-operator")
	g.Expect(k8sClient.Update(ctx, s)).To(gomega.Succeed(), "the operator does not need the webhook")

	withFinalizer := k.DeepCopy()
	withFinalizer.Finalizers = []string{"keycap.dev/test"}
	g.Expect(k8sClient.Update(ctx, withFinalizer)).To(gomega.Succeed(), "a finalizer edit does not need the webhook")
	withFinalizer.Finalizers = nil
	g.Expect(k8sClient.Update(ctx, withFinalizer)).To(gomega.Succeed())

	w.stepClock(g, webhookcert.DefaultResync)
	g.Eventually(func(g gomega.Gomega) {
		g.Expect(bytes.Equal(w.caBundle(g), foreign)).To(gomega.BeFalse())
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

package webhookcert

import (
	"context"
	"crypto/x509"
	"net"
	"testing"
	"time"

	"github.com/onsi/gomega"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
)

// These are unit tests of the renewal decisions on a fake client; webhook/certificates_test.go
// runs the same Manager against a real kube-apiserver that calls the webhook over TLS.

const (
	ns      = "keycap-system"
	vwcName = "keycap-validating-webhook"
)

var start = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func newFixture(t *testing.T, mutate ...func(*Options)) (*Manager, client.Client, *clocktesting.FakeClock) {
	t.Helper()
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	vwc := &admissionregistrationv1.ValidatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: vwcName},
		Webhooks:   []admissionregistrationv1.ValidatingWebhook{{Name: "a.keycap.dev"}, {Name: "b.keycap.dev"}},
	}
	c := fake.NewClientBuilder().WithScheme(scheme).WithObjects(vwc).Build()
	clk := clocktesting.NewFakeClock(start)
	opts := Options{
		Namespace:         ns,
		ConfigurationName: vwcName,
		DNSNames:          []string{"svc.keycap-system.svc", "localhost"},
		IPAddresses:       []net.IP{net.IPv4(127, 0, 0, 1)},
		Clock:             clk,
	}
	for _, f := range mutate {
		f(&opts)
	}
	m, err := New(c, c, opts)
	if err != nil {
		t.Fatal(err)
	}
	return m, c, clk
}

func getSecret(g gomega.Gomega, c client.Client) *corev1.Secret {
	s := &corev1.Secret{}
	g.Expect(c.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: DefaultSecretName}, s)).To(gomega.Succeed())
	return s
}

func getVWC(g gomega.Gomega, c client.Client) *admissionregistrationv1.ValidatingWebhookConfiguration {
	v := &admissionregistrationv1.ValidatingWebhookConfiguration{}
	g.Expect(c.Get(context.Background(), types.NamespacedName{Name: vwcName}, v)).To(gomega.Succeed())
	return v
}

func leafOf(g gomega.Gomega, s *corev1.Secret) *x509.Certificate {
	certs, err := parseCerts(s.Data[corev1.TLSCertKey])
	g.Expect(err).NotTo(gomega.HaveOccurred())
	return certs[0]
}

func TestBootstrap(t *testing.T) {
	g := gomega.NewWithT(t)
	m, c, _ := newFixture(t)
	_, err := m.GetCertificate(nil)
	g.Expect(err).To(gomega.HaveOccurred(), "nothing is served before the first sync")

	next, err := m.Sync(context.Background())
	g.Expect(err).NotTo(gomega.HaveOccurred())
	s := getSecret(g, c)
	leaf := leafOf(g, s)
	cas, err := parseCerts(s.Data[KeyCABundle])
	g.Expect(err).NotTo(gomega.HaveOccurred())
	g.Expect(cas).To(gomega.HaveLen(1))
	g.Expect(leaf.CheckSignatureFrom(cas[0])).To(gomega.Succeed())
	g.Expect(leaf.DNSNames).To(gomega.Equal([]string{"svc.keycap-system.svc", "localhost"}))
	g.Expect(leaf.NotAfter).To(gomega.Equal(start.Add(DefaultServingLifetime)))
	g.Expect(next).To(gomega.Equal(start.Add(DefaultServingLifetime - DefaultServingRenewBefore)))
	for _, w := range getVWC(g, c).Webhooks {
		g.Expect(w.ClientConfig.CABundle).To(gomega.Equal(s.Data[KeyCABundle]), "every webhook trusts the CA")
	}
	served, err := m.GetCertificate(nil)
	g.Expect(err).NotTo(gomega.HaveOccurred())
	g.Expect(served.Leaf.Equal(leaf)).To(gomega.BeTrue())
	g.Expect(m.Checker(nil)).To(gomega.Succeed())
}

// TestNoRenewalLoop: between two renewals, a sync at any instant writes nothing.
func TestNoRenewalLoop(t *testing.T) {
	g := gomega.NewWithT(t)
	m, c, clk := newFixture(t)
	ctx := context.Background()
	due, err := m.Sync(ctx)
	g.Expect(err).NotTo(gomega.HaveOccurred())
	rv := getSecret(g, c).ResourceVersion
	for clk.Now().Add(time.Hour).Before(due) {
		clk.Step(time.Hour)
		next, err := m.Sync(ctx)
		g.Expect(err).NotTo(gomega.HaveOccurred())
		g.Expect(next).To(gomega.Equal(due))
	}
	g.Expect(getSecret(g, c).ResourceVersion).To(gomega.Equal(rv))

	clk.SetTime(due)
	next, err := m.Sync(ctx)
	g.Expect(err).NotTo(gomega.HaveOccurred())
	g.Expect(getSecret(g, c).ResourceVersion).NotTo(gomega.Equal(rv), "renewed when due")
	g.Expect(next).To(gomega.BeTemporally(">", due), "and the next renewal is later, not now")
}

// TestCALifecycle walks a CA through renewal, the serving certificate's move to the new CA, and
// the old CA leaving the bundle when it expires.
func TestCALifecycle(t *testing.T) {
	g := gomega.NewWithT(t)
	m, c, clk := newFixture(t)
	ctx := context.Background()
	_, err := m.Sync(ctx)
	g.Expect(err).NotTo(gomega.HaveOccurred())
	ca0, _ := parseCerts(getSecret(g, c).Data[KeyCABundle])

	// Serving renewals under the first CA never outlive it.
	for clk.Now().Before(ca0[0].NotAfter.Add(-DefaultCARenewBefore)) {
		next, err := m.Sync(ctx)
		g.Expect(err).NotTo(gomega.HaveOccurred())
		g.Expect(leafOf(g, getSecret(g, c)).NotAfter).To(gomega.BeTemporally("<=", ca0[0].NotAfter))
		clk.SetTime(next)
	}
	// CA renewal: two CAs trusted, the serving certificate still from the old one.
	_, err = m.Sync(ctx)
	g.Expect(err).NotTo(gomega.HaveOccurred())
	bundle, _ := parseCerts(getSecret(g, c).Data[KeyCABundle])
	g.Expect(bundle).To(gomega.HaveLen(2))
	g.Expect(bundle[1].Equal(ca0[0])).To(gomega.BeTrue())
	g.Expect(leafOf(g, getSecret(g, c)).CheckSignatureFrom(ca0[0])).To(gomega.Succeed())

	// After the settling time the serving certificate moves to the new CA.
	clk.Step(DefaultSettle)
	_, err = m.Sync(ctx)
	g.Expect(err).NotTo(gomega.HaveOccurred())
	g.Expect(leafOf(g, getSecret(g, c)).CheckSignatureFrom(bundle[0])).To(gomega.Succeed())

	// Once the old CA expires it leaves the bundle (and the caBundle).
	clk.SetTime(ca0[0].NotAfter)
	_, err = m.Sync(ctx)
	g.Expect(err).NotTo(gomega.HaveOccurred())
	after, _ := parseCerts(getSecret(g, c).Data[KeyCABundle])
	g.Expect(after).To(gomega.HaveLen(1))
	g.Expect(after[0].Equal(bundle[0])).To(gomega.BeTrue())
	g.Expect(getVWC(g, c).Webhooks[0].ClientConfig.CABundle).To(gomega.Equal(getSecret(g, c).Data[KeyCABundle]))
}

func TestRepairs(t *testing.T) {
	cases := map[string]func(s *corev1.Secret){
		"a Secret with garbage is replaced":             func(s *corev1.Secret) { s.Data[KeyCABundle] = []byte("garbage") },
		"a CA key that does not match is replaced":      func(s *corev1.Secret) { s.Data[KeyCAKey] = nil },
		"a serving key that does not match is replaced": func(s *corev1.Secret) { s.Data[corev1.TLSPrivateKeyKey] = []byte("x") },
	}
	for name, breakIt := range cases {
		t.Run(name, func(t *testing.T) {
			g := gomega.NewWithT(t)
			m, c, _ := newFixture(t)
			ctx := context.Background()
			_, err := m.Sync(ctx)
			g.Expect(err).NotTo(gomega.HaveOccurred())
			s := getSecret(g, c)
			breakIt(s)
			g.Expect(c.Update(ctx, s)).To(gomega.Succeed())
			_, err = m.Sync(ctx)
			g.Expect(err).NotTo(gomega.HaveOccurred())
			s = getSecret(g, c)
			st := decode(s)
			g.Expect(st.ca).NotTo(gomega.BeNil())
			g.Expect(st.serving).NotTo(gomega.BeNil())
			g.Expect(signedBy(st.serving.leaf, st.ca.cert, start)).To(gomega.BeTrue())
		})
	}
}

func TestNamesChanged(t *testing.T) {
	g := gomega.NewWithT(t)
	m, c, _ := newFixture(t)
	ctx := context.Background()
	_, err := m.Sync(ctx)
	g.Expect(err).NotTo(gomega.HaveOccurred())
	m.opts.DNSNames = append(m.opts.DNSNames, "other.keycap-system.svc")
	_, err = m.Sync(ctx)
	g.Expect(err).NotTo(gomega.HaveOccurred())
	g.Expect(leafOf(g, getSecret(g, c)).DNSNames).To(gomega.ContainElement("other.keycap-system.svc"))
}

func TestNewRefusesRenewalLoops(t *testing.T) {
	base := Options{Namespace: ns, ConfigurationName: vwcName, DNSNames: []string{"x"}}
	cases := map[string]func(o *Options){
		"a serving renew window as long as the lifetime": func(o *Options) { o.ServingLifetime, o.ServingRenewBefore = time.Hour, time.Hour },
		"a CA renew window longer than the lifetime":     func(o *Options) { o.CALifetime, o.CARenewBefore = time.Hour, 2*time.Hour },
		"a serving renew window beyond the CA's":         func(o *Options) { o.ServingRenewBefore, o.CARenewBefore = 60*24*time.Hour, 30*24*time.Hour },
		"no names":                                       func(o *Options) { o.DNSNames = nil },
	}
	for name, mutate := range cases {
		t.Run(name, func(t *testing.T) {
			o := base
			mutate(&o)
			_, err := New(nil, nil, o)
			gomega.NewWithT(t).Expect(err).To(gomega.HaveOccurred())
		})
	}
	_, err := New(nil, nil, base)
	gomega.NewWithT(t).Expect(err).NotTo(gomega.HaveOccurred(), "the defaults are consistent")
}

// TestServingDueWhileTheNewCASettles: when the serving certificate falls due at the moment the CA
// is renewed, the manager waits for the new CA to settle without polling in a tight loop.
func TestServingDueWhileTheNewCASettles(t *testing.T) {
	g := gomega.NewWithT(t)
	m, c, clk := newFixture(t, func(o *Options) {
		// CA renewal due at 60h; the first serving certificate (90h) is due at 60h too.
		o.CALifetime, o.CARenewBefore = 100*time.Hour, 40*time.Hour
		o.ServingLifetime, o.ServingRenewBefore = 90*time.Hour, 30*time.Hour
	})
	ctx := context.Background()
	_, err := m.Sync(ctx)
	g.Expect(err).NotTo(gomega.HaveOccurred())
	oldLeaf := leafOf(g, getSecret(g, c))

	clk.SetTime(start.Add(60 * time.Hour))
	for i := 0; i < 2; i++ { // the second sync sees the injected caBundle
		next, err := m.Sync(ctx)
		g.Expect(err).NotTo(gomega.HaveOccurred())
		g.Expect(next).To(gomega.BeTemporally(">", clk.Now()), "no tight loop while waiting")
		g.Expect(leafOf(g, getSecret(g, c)).Equal(oldLeaf)).To(gomega.BeTrue(), "the old certificate is served until the new CA settles")
	}
	clk.Step(DefaultSettle)
	_, err = m.Sync(ctx)
	g.Expect(err).NotTo(gomega.HaveOccurred())
	bundle, _ := parseCerts(getSecret(g, c).Data[KeyCABundle])
	g.Expect(leafOf(g, getSecret(g, c)).CheckSignatureFrom(bundle[0])).To(gomega.Succeed())
}

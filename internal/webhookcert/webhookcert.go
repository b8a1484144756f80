// Package webhookcert issues and rotates the admission webhook's serving certificate: a
// self-signed CA and a serving certificate (both ECDSA P-256) kept in one Secret in the operator's
// namespace, the CA bundle injected into the ValidatingWebhookConfiguration, and the serving
// certificate handed to the webhook server through tls.Config.GetCertificate, so a renewed
// certificate is served without a restart.
//
// Rotation never breaks admission:
//   - the serving certificate is renewed ServingRenewBefore before it expires, signed by the same CA;
//   - the CA is renewed CARenewBefore before it expires. The new CA joins the bundle next to the old
//     one (which stays until it expires), and the serving certificate moves to the new CA only once
//     the ValidatingWebhookConfiguration trusts it and a settling time has passed, so the apiserver
//     never meets a certificate it does not trust yet.
//
// Renew windows are shorter than lifetimes (New refuses anything else) and CARenewBefore is longer
// than ServingRenewBefore, so a renewal never triggers another one at once.
//
// Every replica of the webhook runs a Manager (it is not leader-elected); they share the Secret
// and settle concurrent writes through optimistic concurrency.
package webhookcert

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/keycap-dev/keycap/internal/pki"
)

// Secret data keys.
const (
	// KeyCABundle holds the trusted CA certificates, PEM, the current CA first.
	KeyCABundle = "ca.crt"
	// KeyCAKey holds the current CA's private key.
	KeyCAKey = "ca.key"
)

// DefaultSecretName is the Secret holding the CA and serving certificate.
const DefaultSecretName = "keycap-webhook-tls"

// Defaults of the lifetimes and renew windows.
const (
	DefaultCALifetime         = 365 * 24 * time.Hour
	DefaultCARenewBefore      = 120 * 24 * time.Hour
	DefaultServingLifetime    = 90 * 24 * time.Hour
	DefaultServingRenewBefore = 30 * 24 * time.Hour
	// DefaultSettle is how long a new CA sits in the bundle before the serving certificate moves
	// to it, on top of the backdating of its NotBefore: time for every apiserver to see the bundle.
	DefaultSettle = time.Minute
	// DefaultResync is the longest time between two checks; it also repairs a caBundle that
	// someone overwrote (e.g. by re-applying the manifests).
	DefaultResync = time.Minute
)

// Options configure a Manager.
type Options struct {
	// Namespace and SecretName locate the Secret; SecretName defaults to DefaultSecretName.
	Namespace  string
	SecretName string
	// ConfigurationName is the ValidatingWebhookConfiguration whose webhooks get the caBundle.
	ConfigurationName string
	// DNSNames and IPAddresses are the serving certificate's SANs.
	DNSNames    []string
	IPAddresses []net.IP
	// MutateConfiguration, when set, adjusts the ValidatingWebhookConfiguration further each time
	// the caBundle is checked (e.g. the operator's namespace in a namespaceSelector).
	MutateConfiguration func(*admissionregistrationv1.ValidatingWebhookConfiguration)
	// Clock decides every renewal; defaults to the real clock.
	Clock clock.WithTicker
	// Lifetimes and renew windows; zero means the default.
	CALifetime, CARenewBefore, ServingLifetime, ServingRenewBefore, Settle, Resync time.Duration
}

// Manager keeps the certificates current. It is a manager.Runnable.
type Manager struct {
	opts Options
	// reader reads straight from the apiserver (no cluster-wide Secret informer for one Secret).
	reader client.Reader
	writer client.Writer

	current atomic.Pointer[tls.Certificate]
}

// New returns a Manager; reader should be uncached (mgr.GetAPIReader()).
func New(reader client.Reader, writer client.Writer, opts Options) (*Manager, error) {
	if opts.SecretName == "" {
		opts.SecretName = DefaultSecretName
	}
	if opts.Clock == nil {
		opts.Clock = clock.RealClock{}
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&opts.CALifetime, DefaultCALifetime)
	def(&opts.CARenewBefore, DefaultCARenewBefore)
	def(&opts.ServingLifetime, DefaultServingLifetime)
	def(&opts.ServingRenewBefore, DefaultServingRenewBefore)
	def(&opts.Settle, DefaultSettle)
	def(&opts.Resync, DefaultResync)
	switch {
	case opts.Namespace == "" || opts.ConfigurationName == "":
		return nil, errors.New("webhookcert: Namespace and ConfigurationName are required")
	case len(opts.DNSNames) == 0 && len(opts.IPAddresses) == 0:
		return nil, errors.New("webhookcert: the serving certificate needs at least one DNS name or IP address")
	case opts.CARenewBefore >= opts.CALifetime || opts.ServingRenewBefore >= opts.ServingLifetime:
		return nil, errors.New("webhookcert: a renew window must be shorter than the lifetime, or every check renews")
	case opts.ServingRenewBefore >= opts.CARenewBefore:
		return nil, errors.New("webhookcert: ServingRenewBefore must be shorter than CARenewBefore, or a serving certificate capped by the CA's expiry renews on every check")
	}
	return &Manager{opts: opts, reader: reader, writer: writer}, nil
}

// NeedLeaderElection implements manager.LeaderElectionRunnable: every replica serves the webhook.
func (m *Manager) NeedLeaderElection() bool { return false }

// GetCertificate hands the current serving certificate to the webhook's TLS server.
func (m *Manager) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	if c := m.current.Load(); c != nil {
		return c, nil
	}
	return nil, errors.New("the webhook serving certificate is not issued yet")
}

// Checker is a readiness check: ready once a serving certificate is loaded.
func (m *Manager) Checker(*http.Request) error {
	_, err := m.GetCertificate(nil)
	return err
}

// Start runs Sync now and again when a renewal is due, at least every Resync, until ctx ends.
func (m *Manager) Start(ctx context.Context) error {
	logger := log.FromContext(ctx).WithName("webhookcert")
	backoff := time.Second
	for {
		next, err := m.Sync(ctx)
		var wait time.Duration
		if err != nil {
			logger.Error(err, "syncing the webhook certificates; retrying", "in", backoff)
			wait, backoff = min(backoff, m.opts.Resync), min(2*backoff, m.opts.Resync)
		} else {
			backoff = time.Second
			wait = min(max(next.Sub(m.opts.Clock.Now()), 0), m.opts.Resync)
		}
		t := m.opts.Clock.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C():
		}
	}
}

// state is what the Secret holds, parsed. Parts that are missing or broken are nil.
type state struct {
	ca      *authority
	trusted [][]byte // PEM of each trusted CA certificate, the current CA first
	serving *servingState
}

// Sync brings the Secret, the caBundle and the served certificate up to date once and returns
// when the next renewal is due.
func (m *Manager) Sync(ctx context.Context) (time.Time, error) {
	logger := log.FromContext(ctx).WithName("webhookcert")
	o := m.opts
	now := o.Clock.Now()

	secret := &corev1.Secret{}
	err := m.reader.Get(ctx, types.NamespacedName{Namespace: o.Namespace, Name: o.SecretName}, secret)
	switch {
	case apierrors.IsNotFound(err):
		secret = nil
	case err != nil:
		return time.Time{}, fmt.Errorf("reading Secret %s/%s: %w", o.Namespace, o.SecretName, err)
	}
	st := decode(secret)
	changed := false

	// The CA.
	if st.ca == nil || !now.Before(st.ca.cert.NotAfter.Add(-o.CARenewBefore)) {
		ca, err := newAuthority("keycap-webhook-ca", now, o.CALifetime)
		if err != nil {
			return time.Time{}, err
		}
		logger.Info("issued a new webhook CA", "notAfter", ca.cert.NotAfter)
		st.trusted = append([][]byte{ca.certPEM}, st.trusted...)
		st.ca, changed = ca, true
	}
	var trusted [][]byte
	for _, p := range st.trusted {
		if certs, err := parseCerts(p); err == nil && now.Before(certs[0].NotAfter) {
			trusted = append(trusted, p)
		} else {
			changed = true
		}
	}
	st.trusted = trusted
	bundle := bytes.Join(st.trusted, nil)

	vwc := &admissionregistrationv1.ValidatingWebhookConfiguration{}
	if err := m.reader.Get(ctx, types.NamespacedName{Name: o.ConfigurationName}, vwc); err != nil {
		if !apierrors.IsNotFound(err) {
			return time.Time{}, fmt.Errorf("reading ValidatingWebhookConfiguration %s: %w", o.ConfigurationName, err)
		}
		vwc = nil
	}

	// The serving certificate.
	next := st.ca.cert.NotAfter.Add(-o.CARenewBefore)
	waiting := false
	if reason := m.servingReason(st, now); reason != "" {
		servingValid := st.serving != nil && now.Before(st.serving.leaf.NotAfter) && signedByAny(st.serving.leaf, st.trusted, now)
		switchAt := st.ca.cert.NotBefore.Add(backdate + o.Settle)
		// Moving to another CA waits until the apiserver trusts it; a renewal under the same CA
		// (or a certificate that no longer works anyway) does not wait.
		sameCA := st.serving != nil && signedBy(st.serving.leaf, st.ca.cert, now)
		if !servingValid || sameCA || (trusts(vwc, st.ca) && !now.Before(switchAt)) {
			certPEM, keyPEM, err := st.ca.issue(o.DNSNames, o.IPAddresses, now, o.ServingLifetime)
			if err != nil {
				return time.Time{}, err
			}
			if st.serving, err = parseServing(certPEM, keyPEM); err != nil {
				return time.Time{}, err
			}
			logger.Info("issued a new webhook serving certificate", "reason", reason, "notAfter", st.serving.leaf.NotAfter)
			changed = true
		} else {
			// Wait for the apiserver to trust the new CA; the current certificate still works.
			waiting = true
			retry := switchAt
			if !retry.After(now) {
				retry = now.Add(o.Settle) // the caBundle is injected below; look again then
			}
			if retry.Before(next) {
				next = retry
			}
		}
	}
	// While waiting, the serving certificate may be due already; its renewal is the wait's end.
	if renew := st.serving.leaf.NotAfter.Add(-o.ServingRenewBefore); !waiting && renew.Before(next) {
		next = renew
	}

	if changed {
		if err := m.writeSecret(ctx, secret, st, bundle); err != nil {
			return time.Time{}, err
		}
	}
	m.current.Store(st.serving.pair)
	if vwc != nil {
		if err := m.inject(ctx, vwc, bundle); err != nil {
			return time.Time{}, err
		}
	}
	return next, nil
}

// servingReason says why the serving certificate must be (re)issued, or "" when it is current.
func (m *Manager) servingReason(st state, now time.Time) string {
	switch s := st.serving; {
	case s == nil:
		return "missing"
	case !now.Before(s.leaf.NotAfter.Add(-m.opts.ServingRenewBefore)):
		return "due for renewal"
	case !coversNames(s.leaf, m.opts.DNSNames, m.opts.IPAddresses):
		return "names changed"
	case !signedBy(s.leaf, st.ca.cert, now):
		return "signed by a previous CA"
	}
	return ""
}

func (m *Manager) writeSecret(ctx context.Context, secret *corev1.Secret, st state, bundle []byte) error {
	data := map[string][]byte{
		KeyCABundle:             bundle,
		KeyCAKey:                st.ca.keyPEM,
		corev1.TLSCertKey:       pki.EncodeCert(st.serving.leaf.Raw),
		corev1.TLSPrivateKeyKey: st.serving.keyPEM,
	}
	if secret == nil {
		secret = &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{
				Namespace: m.opts.Namespace,
				Name:      m.opts.SecretName,
				Labels:    map[string]string{"app.kubernetes.io/name": "keycap", "app.kubernetes.io/component": "webhook"},
			},
			Type: corev1.SecretTypeTLS,
			Data: data,
		}
		if err := m.writer.Create(ctx, secret); err != nil {
			return fmt.Errorf("creating Secret %s/%s: %w", m.opts.Namespace, m.opts.SecretName, err)
		}
		return nil
	}
	secret.Data = data
	// Update carries the resourceVersion read above: a concurrent writer makes this fail, and the
	// next Sync starts again from what that writer stored.
	if err := m.writer.Update(ctx, secret); err != nil {
		return fmt.Errorf("updating Secret %s/%s: %w", m.opts.Namespace, m.opts.SecretName, err)
	}
	return nil
}

// inject sets bundle as the caBundle of every webhook of vwc.
func (m *Manager) inject(ctx context.Context, vwc *admissionregistrationv1.ValidatingWebhookConfiguration, bundle []byte) error {
	want := vwc.DeepCopy()
	for i := range want.Webhooks {
		want.Webhooks[i].ClientConfig.CABundle = bundle
	}
	if m.opts.MutateConfiguration != nil {
		m.opts.MutateConfiguration(want)
	}
	if equality.Semantic.DeepEqual(want.Webhooks, vwc.Webhooks) {
		return nil
	}
	if err := m.writer.Update(ctx, want); err != nil {
		return fmt.Errorf("injecting the caBundle into ValidatingWebhookConfiguration %s: %w", vwc.Name, err)
	}
	log.FromContext(ctx).WithName("webhookcert").Info("injected the caBundle", "configuration", vwc.Name)
	return nil
}

// trusts reports whether every webhook of vwc trusts ca.
func trusts(vwc *admissionregistrationv1.ValidatingWebhookConfiguration, ca *authority) bool {
	if vwc == nil || len(vwc.Webhooks) == 0 {
		return false
	}
	for _, w := range vwc.Webhooks {
		if !bundleContains(w.ClientConfig.CABundle, ca.cert) {
			return false
		}
	}
	return true
}

// signedByAny reports whether leaf verifies against one of the trusted CAs at now.
func signedByAny(leaf *x509.Certificate, trusted [][]byte, now time.Time) bool {
	for _, p := range trusted {
		if certs, err := parseCerts(p); err == nil && signedBy(leaf, certs[0], now) {
			return true
		}
	}
	return false
}

func decode(secret *corev1.Secret) state {
	var st state
	if secret == nil {
		return st
	}
	if certs, err := parseCerts(secret.Data[KeyCABundle]); err == nil {
		for _, c := range certs {
			st.trusted = append(st.trusted, pki.EncodeCert(c.Raw))
		}
		if ca, err := parseAuthority(st.trusted[0], secret.Data[KeyCAKey]); err == nil {
			st.ca = ca
		}
	}
	if st.ca == nil {
		// Without the current CA's key nothing can be signed; start over.
		st.trusted = nil
	}
	if s, err := parseServing(secret.Data[corev1.TLSCertKey], secret.Data[corev1.TLSPrivateKeyKey]); err == nil {
		st.serving = s
	}
	return st
}

package signing

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/manager"
)

// Names of the objects in the operator namespace.
const (
	// SecretName is the Secret holding the private keys (data key SecretDataKey).
	SecretName = "keycap-signing-keys"
	// SecretDataKey holds the key set as JSON.
	SecretDataKey = "keys.json"
	// PublicConfigMapName is the ConfigMap holding what may be public: the JWKS and the licence
	// public key. The data plane reads it (it has no access to Secrets).
	PublicConfigMapName = "keycap-public-keys"
	// ConfigMapJWKSKey holds the JWK set JSON.
	ConfigMapJWKSKey = "jwks.json"
	// ConfigMapLicenseKey holds the licence public key PEM.
	ConfigMapLicenseKey = "license-public-key.pem"
	// ConfigMapLicenseKeyIDKey holds the licence key's kid.
	ConfigMapLicenseKeyIDKey = "license-key-id"
)

// retryAfterError is how long the manager waits after a failed pass before it tries again.
const retryAfterError = 10 * time.Second

// maxIdle bounds how long the manager sleeps between passes, so it repairs a Secret edited or
// deleted behind its back.
const maxIdle = time.Hour

// Options configure a Manager.
type Options struct {
	// Namespace is the operator namespace holding SecretName and PublicConfigMapName.
	Namespace string
	// Issuer is the iss of AppTokens and of the OpenID configuration. Defaults to DefaultIssuer.
	Issuer string
	// JWKSURI is the jwks_uri of the OpenID configuration. Defaults to Issuer + JWKSPath.
	JWKSURI string
	// Policy is the rotation policy.
	Policy Policy
	// Clock is the time source of every rotation decision.
	Clock clock.Clock
}

func (o Options) withDefaults() Options {
	if o.Issuer == "" {
		o.Issuer = DefaultIssuer
	}
	if o.Clock == nil {
		o.Clock = clock.RealClock{}
	}
	o.Policy = o.Policy.withDefaults()
	return o
}

// Manager owns the key set on the controller side: it creates the Secret on first start, rotates
// keys on schedule (as a leader-elected manager.Runnable) and publishes the public ConfigMap. Its
// accessors answer from memory and are safe for concurrent use.
type Manager struct {
	client client.Client
	reader client.Reader
	opts   Options

	ensure sync.Mutex // serialises passes
	mu     sync.RWMutex
	state  *State
	docs   documents
}

type documents struct {
	jwks, oidc, licensePEM []byte
}

var (
	_ manager.Runnable               = (*Manager)(nil)
	_ manager.LeaderElectionRunnable = (*Manager)(nil)
	_ Documents                      = (*Manager)(nil)
)

// NewManager returns a Manager that writes through c and reads through reader (pass the manager's
// APIReader so that no cluster-wide cache of Secrets is needed and reads are never stale).
func NewManager(c client.Client, reader client.Reader, opts Options) *Manager {
	return &Manager{client: c, reader: reader, opts: opts.withDefaults()}
}

// Issuer returns the configured issuer.
func (m *Manager) Issuer() string { return m.opts.Issuer }

// Start runs passes until ctx ends: one at once, then whenever the key set is next due to change.
func (m *Manager) Start(ctx context.Context) error {
	logger := log.FromContext(ctx).WithName("signing-keys")
	for {
		wait := retryAfterError
		if err := m.Ensure(ctx); err != nil {
			logger.Error(err, "ensuring the signing key set; retrying")
		} else {
			wait = m.untilNextChange()
		}
		select {
		case <-ctx.Done():
			return nil
		case <-m.opts.Clock.After(wait):
		}
	}
}

// NeedLeaderElection reports true: only the leader writes keys.
func (m *Manager) NeedLeaderElection() bool { return true }

func (m *Manager) untilNextChange() time.Duration {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.state == nil {
		return retryAfterError
	}
	next := NextChange(*m.state, m.opts.Policy)
	if next.IsZero() {
		return maxIdle
	}
	return min(max(next.Sub(m.opts.Clock.Now()), time.Second), maxIdle)
}

// Ensure reads the key set from the Secret, creating it on first start, applies the rotation
// policy, writes what changed and refreshes the public ConfigMap. The AppToken and License
// reconcilers call it when the key set is not loaded yet.
func (m *Manager) Ensure(ctx context.Context) error {
	m.ensure.Lock()
	defer m.ensure.Unlock()
	now := m.opts.Clock.Now()

	secret := &corev1.Secret{}
	key := types.NamespacedName{Namespace: m.opts.Namespace, Name: SecretName}
	var current State
	exists := true
	if err := m.reader.Get(ctx, key, secret); apierrors.IsNotFound(err) {
		exists = false
	} else if err != nil {
		return fmt.Errorf("reading Secret %s: %w", key, err)
	} else if data := secret.Data[SecretDataKey]; len(data) > 0 {
		if current, err = Unmarshal(data); err != nil {
			return fmt.Errorf("decoding Secret %s: %w", key, err)
		}
	}

	next, changed, err := Plan(current, now, m.opts.Policy, NewKey)
	if err != nil {
		return err
	}
	if changed || !exists {
		data, err := next.Marshal()
		if err != nil {
			return err
		}
		if !exists {
			secret = &corev1.Secret{
				ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace, Name: key.Name,
					Labels: map[string]string{"app.kubernetes.io/managed-by": "keycap", "app.kubernetes.io/component": "signing-keys"}},
				Type: corev1.SecretTypeOpaque,
				Data: map[string][]byte{SecretDataKey: data},
			}
			if err := m.client.Create(ctx, secret); err != nil {
				return fmt.Errorf("creating Secret %s: %w", key, err)
			}
		} else {
			secret = secret.DeepCopy()
			if secret.Data == nil {
				secret.Data = map[string][]byte{}
			}
			secret.Data[SecretDataKey] = data
			// Update carries the resourceVersion read above: a concurrent writer makes it fail
			// with a conflict and the next pass starts again from what is stored.
			if err := m.client.Update(ctx, secret); err != nil {
				return fmt.Errorf("updating Secret %s: %w", key, err)
			}
		}
		log.FromContext(ctx).Info("signing key set updated", "keyIDs", keyIDs(next))
	}

	docs := m.documents(next)
	if err := m.publish(ctx, next, docs); err != nil {
		return err
	}
	m.mu.Lock()
	m.state, m.docs = &next, docs
	m.mu.Unlock()
	return nil
}

func keyIDs(s State) []string {
	ids := make([]string, 0, len(s.Keys))
	for _, k := range s.Keys {
		ids = append(ids, k.ID)
	}
	return ids
}

func (m *Manager) documents(s State) documents {
	d := documents{
		jwks: mustJSON(s.JWKS()),
		oidc: mustJSON(NewOpenIDConfiguration(m.opts.Issuer, m.opts.JWKSURI)),
	}
	if s.License != nil {
		d.licensePEM = EncodePublicKeyPEM(s.License.Public)
	}
	return d
}

func (m *Manager) publish(ctx context.Context, s State, docs documents) error {
	want := map[string]string{
		ConfigMapJWKSKey:    string(docs.jwks),
		ConfigMapLicenseKey: string(docs.licensePEM),
	}
	if s.License != nil {
		want[ConfigMapLicenseKeyIDKey] = s.License.ID
	}
	cm := &corev1.ConfigMap{}
	key := types.NamespacedName{Namespace: m.opts.Namespace, Name: PublicConfigMapName}
	if err := m.reader.Get(ctx, key, cm); apierrors.IsNotFound(err) {
		cm = &corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace, Name: key.Name,
				Labels: map[string]string{"app.kubernetes.io/managed-by": "keycap", "app.kubernetes.io/component": "signing-keys"}},
			Data: want,
		}
		if err := m.client.Create(ctx, cm); err != nil {
			return fmt.Errorf("creating ConfigMap %s: %w", key, err)
		}
		return nil
	} else if err != nil {
		return fmt.Errorf("reading ConfigMap %s: %w", key, err)
	}
	same := len(cm.Data) == len(want)
	for k, v := range want {
		same = same && cm.Data[k] == v
	}
	if same {
		return nil
	}
	cm = cm.DeepCopy()
	cm.Data = want
	if err := m.client.Update(ctx, cm); err != nil {
		return fmt.Errorf("updating ConfigMap %s: %w", key, err)
	}
	return nil
}

// Current returns the kid and private key that sign AppTokens now, or "" and nil while the key
// set is not loaded (call Ensure).
func (m *Manager) Current() (string, ed25519.PrivateKey) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.state == nil {
		return "", nil
	}
	k, ok := m.state.Current(m.opts.Clock.Now())
	if !ok {
		return "", nil
	}
	return k.ID, k.Private
}

// LicenseKey returns the kid and private key that sign licence files, or "" and nil while the key
// set is not loaded.
func (m *Manager) LicenseKey() (string, ed25519.PrivateKey) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.state == nil || m.state.License == nil {
		return "", nil
	}
	return m.state.License.ID, m.state.License.Private
}

// PublicKey returns the published AppToken key with the given kid.
func (m *Manager) PublicKey(kid string) (ed25519.PublicKey, bool) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.state == nil {
		return nil, false
	}
	for _, k := range m.state.Keys {
		if k.ID == kid {
			return k.Public, true
		}
	}
	return nil, false
}

// JWKS returns the JWK set JSON, nil while not loaded.
func (m *Manager) JWKS() []byte { m.mu.RLock(); defer m.mu.RUnlock(); return m.docs.jwks }

// OpenIDConfiguration returns the discovery document JSON, nil while not loaded.
func (m *Manager) OpenIDConfiguration() []byte {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.docs.oidc
}

// LicensePublicKeyPEM returns the licence public key as PEM, nil while not loaded.
func (m *Manager) LicensePublicKeyPEM() []byte {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.docs.licensePEM
}

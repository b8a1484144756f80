// Package sessionkeys keeps the session key set (internal/session) in a Secret of the operator
// namespace: the operator's Manager creates it on first start and rotates it with overlap, as it
// does the AppToken signing keys; every data-plane replica's Reader re-reads it every few seconds.
//
// The data plane may `get` this one Secret (RBAC with resourceNames) and nothing else on Secrets:
// unlike the signing keys, whose public half is all a verifier needs, a session key both seals
// and opens, and the data plane seals the cookies it hands out.
package sessionkeys

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/manager"

	"github.com/keycap-dev/keycap/internal/session"
)

const (
	// SecretName is the Secret in the operator namespace that holds the session keys.
	SecretName = "keycap-session-keys"
	// SecretDataKey holds the key set as JSON.
	SecretDataKey = "keys.json"
)

const (
	retryAfterError = 10 * time.Second
	maxIdle         = time.Hour
	// DefaultRefreshInterval is how often a Reader re-reads the Secret; far shorter than
	// session.DefaultPrePublish, so every replica opens a new key's cookies before any exists.
	DefaultRefreshInterval = 10 * time.Second
	firstReadRetry         = time.Second
)

// Manager creates and rotates the session key Secret. It runs on the leader only.
type Manager struct {
	client    client.Client
	reader    client.Reader
	namespace string
	policy    session.Policy
	clock     clock.Clock

	mu    sync.Mutex
	state *session.KeySet
}

var (
	_ manager.Runnable               = (*Manager)(nil)
	_ manager.LeaderElectionRunnable = (*Manager)(nil)
)

// NewManager returns a Manager writing through c and reading through reader (the manager's
// APIReader, so no cache of Secrets is needed).
func NewManager(c client.Client, reader client.Reader, namespace string, policy session.Policy, clk clock.Clock) *Manager {
	if clk == nil {
		clk = clock.RealClock{}
	}
	return &Manager{client: c, reader: reader, namespace: namespace, policy: policy, clock: clk}
}

// NeedLeaderElection reports true: only the leader writes keys.
func (m *Manager) NeedLeaderElection() bool { return true }

// Start ensures the key set at once and again whenever it is next due to change.
func (m *Manager) Start(ctx context.Context) error {
	logger := log.FromContext(ctx).WithName("session-keys")
	for {
		wait := retryAfterError
		if err := m.Ensure(ctx); err != nil {
			logger.Error(err, "ensuring the session key set; retrying")
		} else {
			wait = m.untilNextChange()
		}
		select {
		case <-ctx.Done():
			return nil
		case <-m.clock.After(wait):
		}
	}
}

func (m *Manager) untilNextChange() time.Duration {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.state == nil {
		return retryAfterError
	}
	next := session.NextChange(*m.state, m.policy)
	if next.IsZero() {
		return maxIdle
	}
	return min(max(next.Sub(m.clock.Now()), time.Second), maxIdle)
}

// Ensure reads the Secret (creating it on first start), applies the rotation policy and writes
// what changed. A Secret whose content does not decode is replaced: every session then ends,
// which is the only safe reading of key material keycap cannot trust.
func (m *Manager) Ensure(ctx context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.clock.Now()
	key := types.NamespacedName{Namespace: m.namespace, Name: SecretName}
	secret := &corev1.Secret{}
	var current session.KeySet
	exists := true
	if err := m.reader.Get(ctx, key, secret); apierrors.IsNotFound(err) {
		exists = false
	} else if err != nil {
		return fmt.Errorf("reading Secret %s: %w", key, err)
	} else if data := secret.Data[SecretDataKey]; len(data) > 0 {
		if current, err = session.Unmarshal(data); err != nil {
			log.FromContext(ctx).Error(err, "the session key Secret does not decode; replacing it (every session ends)", "secret", key)
			current = session.KeySet{}
		}
	}
	next, changed, err := session.Plan(current, now, m.policy, session.NewKey)
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
					Labels: map[string]string{"app.kubernetes.io/managed-by": "keycap", "app.kubernetes.io/component": "session-keys"}},
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
			// The resourceVersion read above makes a concurrent writer fail with a conflict.
			if err := m.client.Update(ctx, secret); err != nil {
				return fmt.Errorf("updating Secret %s: %w", key, err)
			}
		}
		log.FromContext(ctx).Info("session key set updated", "keyIDs", next.IDs())
	}
	m.state = &next
	return nil
}

// Reader is a data-plane replica's view of the session keys: read with uncached gets of the one
// Secret and re-read every RefreshInterval. Keys is lock-free.
type Reader struct {
	reader    client.Reader
	namespace string
	interval  time.Duration
	clock     clock.Clock
	keys      atomic.Pointer[session.KeySet]
}

var (
	_ manager.Runnable               = (*Reader)(nil)
	_ manager.LeaderElectionRunnable = (*Reader)(nil)
)

// NewReader returns a Reader (interval 0 means DefaultRefreshInterval).
func NewReader(reader client.Reader, namespace string, interval time.Duration, clk clock.Clock) *Reader {
	if interval <= 0 {
		interval = DefaultRefreshInterval
	}
	if clk == nil {
		clk = clock.RealClock{}
	}
	return &Reader{reader: reader, namespace: namespace, interval: interval, clock: clk}
}

// NeedLeaderElection reports false: every replica reads the keys.
func (r *Reader) NeedLeaderElection() bool { return false }

// Keys returns the key set last read, nil before the first successful read.
func (r *Reader) Keys() *session.KeySet { return r.keys.Load() }

// Start refreshes at once and then every interval until ctx ends; a failed read keeps the keys
// already known.
func (r *Reader) Start(ctx context.Context) error {
	logger := log.FromContext(ctx).WithName("session-keys")
	for {
		err := r.Refresh(ctx)
		switch {
		case err == nil || ctx.Err() != nil:
		case apierrors.IsNotFound(err) && r.Keys() == nil:
			logger.Info("waiting for the operator to create the session keys", "secret", SecretName)
		default:
			logger.Error(err, "refreshing the session keys")
		}
		wait := r.interval
		if r.Keys() == nil {
			wait = min(wait, firstReadRetry)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-r.clock.After(wait):
		}
	}
}

// Refresh reads the Secret now.
func (r *Reader) Refresh(ctx context.Context) error {
	secret := &corev1.Secret{}
	key := types.NamespacedName{Namespace: r.namespace, Name: SecretName}
	if err := r.reader.Get(ctx, key, secret); err != nil {
		return fmt.Errorf("reading Secret %s: %w", key, err)
	}
	ks, err := session.Unmarshal(secret.Data[SecretDataKey])
	if err != nil {
		return fmt.Errorf("reading the session key Secret %s: %w", key, err)
	}
	r.keys.Store(&ks)
	return nil
}

package signing

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/manager"
)

// DefaultRefreshInterval is how often PublicKeys re-reads the public ConfigMap. It is far shorter
// than DefaultPrePublish, so a new key is known before it signs.
const DefaultRefreshInterval = 10 * time.Second

// PublicKeysOptions configure PublicKeys.
type PublicKeysOptions struct {
	// Namespace is the operator namespace holding PublicConfigMapName.
	Namespace string
	// Issuer and JWKSURI fill the OpenID configuration; see Options.
	Issuer, JWKSURI string
	// RefreshInterval defaults to DefaultRefreshInterval.
	RefreshInterval time.Duration
	// Clock drives the refresh ticker.
	Clock clock.WithTicker
}

// PublicKeys is the data plane's view of the key set: the public keys only, read from the public
// ConfigMap (the data plane has no access to Secrets) and refreshed periodically. It implements
// Documents and the key lookup of apptoken.Verifier; lookups are lock-free.
type PublicKeys struct {
	reader client.Reader
	opts   PublicKeysOptions
	snap   atomic.Pointer[publicSnapshot]
}

type publicSnapshot struct {
	keys       map[string]ed25519.PublicKey
	jwks       []byte
	oidc       []byte
	licensePEM []byte
	license    ed25519.PublicKey
	licenseKID string
}

var (
	_ manager.Runnable               = (*PublicKeys)(nil)
	_ manager.LeaderElectionRunnable = (*PublicKeys)(nil)
	_ Documents                      = (*PublicKeys)(nil)
)

// NewPublicKeys returns PublicKeys reading through reader (e.g. the manager's APIReader, which needs
// only `get` on the one ConfigMap).
func NewPublicKeys(reader client.Reader, opts PublicKeysOptions) *PublicKeys {
	if opts.Issuer == "" {
		opts.Issuer = DefaultIssuer
	}
	if opts.RefreshInterval <= 0 {
		opts.RefreshInterval = DefaultRefreshInterval
	}
	if opts.Clock == nil {
		opts.Clock = clock.RealClock{}
	}
	return &PublicKeys{reader: reader, opts: opts}
}

// Start refreshes at once and then every RefreshInterval until ctx ends. A failed refresh keeps
// the keys already known.
func (p *PublicKeys) Start(ctx context.Context) error {
	logger := log.FromContext(ctx).WithName("public-keys")
	for {
		err := p.Refresh(ctx)
		switch {
		case err == nil || ctx.Err() != nil:
		case apierrors.IsNotFound(err) && !p.HasSynced():
			// On a fresh cluster the operator publishes the keys moments after both start.
			logger.Info("waiting for the operator to publish the public signing keys", "configMap", PublicConfigMapName)
		default:
			logger.Error(err, "refreshing the public signing keys")
		}
		// Until the first read succeeds the data plane is not ready, so retry soon rather than
		// after a full RefreshInterval.
		wait := p.opts.RefreshInterval
		if !p.HasSynced() {
			wait = min(wait, firstReadRetry)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-p.opts.Clock.After(wait):
		}
	}
}

// firstReadRetry is how soon a data plane without keys reads the ConfigMap again.
const firstReadRetry = time.Second

// NeedLeaderElection reports false: every data plane replica reads the keys.
func (p *PublicKeys) NeedLeaderElection() bool { return false }

// HasSynced reports whether the keys have been read once.
func (p *PublicKeys) HasSynced() bool { return p.snap.Load() != nil }

// Refresh reads the public ConfigMap now.
func (p *PublicKeys) Refresh(ctx context.Context) error {
	cm := &corev1.ConfigMap{}
	key := types.NamespacedName{Namespace: p.opts.Namespace, Name: PublicConfigMapName}
	if err := p.reader.Get(ctx, key, cm); err != nil {
		return fmt.Errorf("reading ConfigMap %s: %w", key, err)
	}
	snap, err := p.parse(cm.Data)
	if err != nil {
		return fmt.Errorf("ConfigMap %s: %w", key, err)
	}
	p.snap.Store(snap)
	return nil
}

func (p *PublicKeys) parse(data map[string]string) (*publicSnapshot, error) {
	var set JWKSet
	if err := json.Unmarshal([]byte(data[ConfigMapJWKSKey]), &set); err != nil {
		return nil, fmt.Errorf("decoding %s: %w", ConfigMapJWKSKey, err)
	}
	snap := &publicSnapshot{keys: make(map[string]ed25519.PublicKey, len(set.Keys))}
	for _, j := range set.Keys {
		pub, err := j.PublicKey()
		if err != nil {
			return nil, err
		}
		if j.KeyID != Thumbprint(pub) {
			return nil, fmt.Errorf("key %q: kid is not the key's thumbprint", j.KeyID)
		}
		snap.keys[j.KeyID] = pub
	}
	snap.jwks = mustJSON(set)
	snap.oidc = mustJSON(NewOpenIDConfiguration(p.opts.Issuer, p.opts.JWKSURI))
	if pemData := data[ConfigMapLicenseKey]; pemData != "" {
		pub, err := ParsePublicKeyPEM([]byte(pemData))
		if err != nil {
			return nil, fmt.Errorf("decoding %s: %w", ConfigMapLicenseKey, err)
		}
		snap.license, snap.licensePEM, snap.licenseKID = pub, []byte(pemData), data[ConfigMapLicenseKeyIDKey]
	}
	return snap, nil
}

// PublicKey returns the published AppToken key with the given kid.
func (p *PublicKeys) PublicKey(kid string) (ed25519.PublicKey, bool) {
	snap := p.snap.Load()
	if snap == nil {
		return nil, false
	}
	k, ok := snap.keys[kid]
	return k, ok
}

// LicensePublicKey returns the licence public key and its kid, nil before the first refresh.
func (p *PublicKeys) LicensePublicKey() (string, ed25519.PublicKey) {
	snap := p.snap.Load()
	if snap == nil {
		return "", nil
	}
	return snap.licenseKID, snap.license
}

// JWKS returns the JWK set JSON, nil before the first refresh.
func (p *PublicKeys) JWKS() []byte {
	if snap := p.snap.Load(); snap != nil {
		return snap.jwks
	}
	return nil
}

// OpenIDConfiguration returns the discovery document JSON, nil before the first refresh.
func (p *PublicKeys) OpenIDConfiguration() []byte {
	if snap := p.snap.Load(); snap != nil {
		return snap.oidc
	}
	return nil
}

// LicensePublicKeyPEM returns the licence public key PEM, nil before the first refresh.
func (p *PublicKeys) LicensePublicKeyPEM() []byte {
	if snap := p.snap.Load(); snap != nil {
		return snap.licensePEM
	}
	return nil
}

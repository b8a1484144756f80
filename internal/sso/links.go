package sso

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/clock"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/manager"

	"github.com/keycap-dev/keycap/internal/session"
)

// Single-use login links.
//
// POST /auth/login-links answers a link whose token is sealed with the session keys
// (session.PurposeLink): it names the credential, carries a random 128-bit link ID and expires
// within MaxLinkTTL. Any replica can open it, so nothing is stored when a link is made. What must
// be shared is the fact that a link was used, and the data plane's only shared state is the
// apiserver. A redemption therefore creates a Lease named after the link ID in the operator
// namespace: creation is atomic in etcd, so of any number of replicas redeeming the same link at
// once exactly one creates the Lease and every other gets AlreadyExists — and is refused.
//
// Why a Lease: the data plane then needs `create` on Leases in one namespace and nothing else
// (no get, update or delete), and no component trusts what a Lease holds except leader election,
// whose Lease a create cannot take over (it exists while the operator runs). A ConfigMap would do
// the same job, but the data plane reads a ConfigMap it must trust (keycap-public-keys), so
// granting it `create` on ConfigMaps would let a compromised replica plant one before the operator
// does. Process memory cannot enforce single use with several replicas, and a Lease per redeemed
// link is small and short-lived: the operator's LinkCollector deletes them once the link they
// record has expired for good (LinkRetention after creation), when redeeming it again is refused
// by its expiry anyway.

const (
	// MaxLinkTTL is the longest a login link is valid.
	MaxLinkTTL = 2 * time.Minute
	// LinkRetention is how long a redemption's Lease is kept: the link's validity plus the clock
	// skew the codec allows, so a Lease is deleted only when no replica can accept its link.
	LinkRetention = MaxLinkTTL + session.MaxClockSkew + time.Minute
	// LinkLeasePrefix starts the name of every redemption Lease.
	LinkLeasePrefix = "keycap-login-"
	// LabelLoginLink marks redemption Leases.
	LabelLoginLink = "keycap.dev/login-link"
)

// ErrLinkUsed means the link was redeemed before (by this replica or another).
var ErrLinkUsed = errors.New("login link already used")

// Claimer records the single use of a link ID; Claim succeeds for exactly one caller per ID.
type Claimer interface {
	Claim(ctx context.Context, id [session.IDLength]byte, expiresAt time.Time) error
}

// LeaseClaimer claims link IDs by creating a Lease in Namespace.
type LeaseClaimer struct {
	Client    client.Client
	Namespace string
	// Holder names this replica in the Lease (for people reading it); optional.
	Holder string
	Clock  clock.PassiveClock
}

// LinkLeaseName is the Lease that records the use of link id.
func LinkLeaseName(id [session.IDLength]byte) string {
	return LinkLeasePrefix + hex.EncodeToString(id[:])
}

// Claim creates the link's Lease: nil for the one caller that created it, ErrLinkUsed for every
// other; any other failure is returned as is (and the link is not redeemed).
func (c *LeaseClaimer) Claim(ctx context.Context, id [session.IDLength]byte, expiresAt time.Time) error {
	now := metav1.NewMicroTime(c.Clock.Now())
	lease := &coordinationv1.Lease{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: c.Namespace,
			Name:      LinkLeaseName(id),
			Labels:    map[string]string{"app.kubernetes.io/managed-by": "keycap", LabelLoginLink: "redeemed"},
		},
		Spec: coordinationv1.LeaseSpec{
			AcquireTime:          &now,
			LeaseDurationSeconds: ptr.To(int32(max(expiresAt.Sub(now.Time), time.Second) / time.Second)),
		},
	}
	if c.Holder != "" {
		lease.Spec.HolderIdentity = ptr.To(c.Holder)
	}
	err := c.Client.Create(ctx, lease)
	if apierrors.IsAlreadyExists(err) {
		return ErrLinkUsed
	}
	if err != nil {
		return fmt.Errorf("recording the login link's use: %w", err)
	}
	return nil
}

// LinkCollector deletes redemption Leases older than LinkRetention. It runs in the operator
// (leader-elected), which may list and delete Leases; the data plane may only create them.
type LinkCollector struct {
	Client    client.Client
	Reader    client.Reader
	Namespace string
	Clock     clock.Clock
	// Every is how often it sweeps (default one minute).
	Every time.Duration
}

var (
	_ manager.Runnable               = (*LinkCollector)(nil)
	_ manager.LeaderElectionRunnable = (*LinkCollector)(nil)
)

// NeedLeaderElection reports true.
func (l *LinkCollector) NeedLeaderElection() bool { return true }

// Start sweeps until ctx ends.
func (l *LinkCollector) Start(ctx context.Context) error {
	every := l.Every
	if every <= 0 {
		every = time.Minute
	}
	for {
		if err := l.Sweep(ctx); err != nil && ctx.Err() == nil {
			log.FromContext(ctx).WithName("login-links").Error(err, "deleting used login links' Leases")
		}
		select {
		case <-ctx.Done():
			return nil
		case <-l.Clock.After(every):
		}
	}
}

// Sweep deletes the redemption Leases created more than LinkRetention ago.
func (l *LinkCollector) Sweep(ctx context.Context) error {
	var leases coordinationv1.LeaseList
	if err := l.Reader.List(ctx, &leases, client.InNamespace(l.Namespace), client.HasLabels{LabelLoginLink}); err != nil {
		return err
	}
	cutoff := l.Clock.Now().Add(-LinkRetention)
	var errs []error
	for i := range leases.Items {
		lease := &leases.Items[i]
		if lease.CreationTimestamp.After(cutoff) {
			continue
		}
		if err := l.Client.Delete(ctx, lease, client.Preconditions{UID: &lease.UID}); client.IgnoreNotFound(err) != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// MemoryClaimer claims link IDs in this process's memory. It does not enforce single use across
// replicas: it is for tests and for a data plane without a namespace to write Leases in.
type MemoryClaimer struct {
	Clock clock.PassiveClock

	mu   sync.Mutex
	used map[[session.IDLength]byte]time.Time
}

// Claim implements Claimer.
func (m *MemoryClaimer) Claim(_ context.Context, id [session.IDLength]byte, expiresAt time.Time) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.used == nil {
		m.used = map[[session.IDLength]byte]time.Time{}
	}
	if _, ok := m.used[id]; ok {
		return ErrLinkUsed
	}
	now := m.Clock.Now()
	for k, exp := range m.used {
		if now.After(exp.Add(LinkRetention)) {
			delete(m.used, k)
		}
	}
	m.used[id] = expiresAt
	return nil
}

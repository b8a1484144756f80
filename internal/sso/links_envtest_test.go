package sso

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/onsi/gomega"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/keycap-dev/keycap/internal/session"
	"github.com/keycap-dev/keycap/internal/testenv"
)

// apiClient talks to a real kube-apiserver + etcd (the one the suite starts in TestMain).
var apiClient client.Client

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	_, c, stop, err := testenv.Start()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer stop()
	apiClient = c
	if err := c.Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "keycap-system"}}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return m.Run()
}

// Replicas redeeming the same link at once: exactly one wins, on the real apiserver.
func TestLeaseClaimerExactlyOneOfManyRedeemers(t *testing.T) {
	g := gomega.NewWithT(t)
	clk := clocktesting.NewFakeClock(time.Now())
	const replicas = 8
	for round := range 5 {
		c, err := session.NewClaims(session.Identity{Kind: "ApiKey", Namespace: "acme", Name: "backend"}, clk.Now(), MaxLinkTTL)
		g.Expect(err).NotTo(gomega.HaveOccurred())
		var wins, used int
		var mu sync.Mutex
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := range replicas {
			// One claimer per replica, as each data-plane replica has its own.
			claimer := &LeaseClaimer{Client: apiClient, Namespace: "keycap-system", Holder: fmt.Sprintf("replica-%d", i), Clock: clk}
			wg.Go(func() {
				<-start
				err := claimer.Claim(context.Background(), c.ID, c.ExpiresAt)
				mu.Lock()
				defer mu.Unlock()
				switch {
				case err == nil:
					wins++
				case errors.Is(err, ErrLinkUsed):
					used++
				default:
					t.Errorf("round %d: %v", round, err)
				}
			})
		}
		close(start)
		wg.Wait()
		g.Expect(wins).To(gomega.Equal(1), "round %d", round)
		g.Expect(used).To(gomega.Equal(replicas-1), "round %d", round)
	}
}

func TestLinkCollectorDeletesOnlyOldRedemptions(t *testing.T) {
	g := gomega.NewWithT(t)
	ctx := context.Background()
	clk := clocktesting.NewFakeClock(time.Now())
	claimer := &LeaseClaimer{Client: apiClient, Namespace: "keycap-system", Clock: clk}
	c, _ := session.NewClaims(session.Identity{Kind: "ApiKey", Namespace: "acme", Name: "backend"}, clk.Now(), MaxLinkTTL)
	g.Expect(claimer.Claim(ctx, c.ID, c.ExpiresAt)).To(gomega.Succeed())
	other := &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Namespace: "keycap-system", Name: "unrelated"}}
	g.Expect(apiClient.Create(ctx, other)).To(gomega.Succeed())

	collector := &LinkCollector{Client: apiClient, Reader: apiClient, Namespace: "keycap-system", Clock: clk}
	g.Expect(collector.Sweep(ctx)).To(gomega.Succeed())
	lease := &coordinationv1.Lease{}
	name := client.ObjectKey{Namespace: "keycap-system", Name: LinkLeaseName(c.ID)}
	g.Expect(apiClient.Get(ctx, name, lease)).To(gomega.Succeed(), "a fresh redemption is kept")

	clk.Step(LinkRetention + time.Second)
	g.Expect(collector.Sweep(ctx)).To(gomega.Succeed())
	g.Expect(apiClient.Get(ctx, name, lease)).To(gomega.MatchError(gomega.ContainSubstring("not found")))
	g.Expect(apiClient.Get(ctx, client.ObjectKeyFromObject(other), other)).To(gomega.Succeed(), "other Leases are left alone")
	g.Expect(claimer.Claim(ctx, c.ID, c.ExpiresAt)).To(gomega.Succeed(), "the ID is free again; the link's own expiry refuses it by then")
}

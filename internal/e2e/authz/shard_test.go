package authz_test

import (
	"context"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/onsi/gomega"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	corev1 "k8s.io/api/core/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	keycapv1alpha1 "github.com/keycap-dev/keycap/api/v1alpha1"
	"github.com/keycap-dev/keycap/internal/authz"
	"github.com/keycap-dev/keycap/internal/testenv"
)

// startShard runs a data plane like `keycap --components=authz --authz-namespaces=...
// --authz-namespace-selector=...` on the suite's apiserver and clock, and returns it once ready.
func startShard(t *testing.T, namespaces []string, selector string) (*authz.DataPlane, authv3.AuthorizationClient) {
	t.Helper()
	g := gomega.NewWithT(t)
	shard, err := authz.ShardNamespaces(context.Background(), world.client, namespaces, selector)
	g.Expect(err).NotTo(gomega.HaveOccurred())
	mgr, err := ctrl.NewManager(world.config, ctrl.Options{
		Scheme:                 testenv.Scheme(),
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		Cache:                  authz.StandaloneCacheOptions(shard...),
	})
	g.Expect(err).NotTo(gomega.HaveOccurred())
	dp, err := authz.SetupWithManager(mgr, authz.Options{
		GRPCAddr:                  "127.0.0.1:0",
		HTTPAddr:                  "127.0.0.1:0",
		Clock:                     world.clock,
		OperatorNamespace:         operatorNamespace,
		PublicKeysRefreshInterval: 100 * time.Millisecond,
		DisableLastUsed:           true,
		Namespaces:                shard,
	})
	g.Expect(err).NotTo(gomega.HaveOccurred())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	waitCtx, waitCancel := context.WithTimeout(ctx, time.Minute)
	defer waitCancel()
	g.Expect(dp.WaitServing(waitCtx)).To(gomega.BeTrue(), "the shard did not start serving")
	conn, err := grpc.NewClient(dp.GRPCAddr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	g.Expect(err).NotTo(gomega.HaveOccurred())
	t.Cleanup(func() { _ = conn.Close() })
	return dp, authv3.NewAuthorizationClient(conn)
}

// TestShardsByTenant runs two data planes sharded by tenant, one by a list of namespaces and one
// by a namespace label selector: each is ready holding only its tenants' credentials, allows its
// own keys and refuses the other shard's with NOT_FOUND, and follows changes in its namespaces only.
func TestShardsByTenant(t *testing.T) {
	g := gomega.NewWithT(t)
	nsA, nsB := newNamespace(t), newNamespace(t)
	var b corev1.Namespace
	g.Expect(world.client.Get(context.Background(), client.ObjectKey{Name: nsB}, &b)).To(gomega.Succeed())
	b.Labels = map[string]string{"keycap.dev/shard": nsB}
	g.Expect(world.client.Update(context.Background(), &b)).To(gomega.Succeed())

	keyA1, _ := createApiKey(t, nsA, "a1", nil)
	keyA2, _ := createApiKey(t, nsA, "a2", nil)
	keyB, _ := createApiKey(t, nsB, "b", nil)
	// Wait until the suite's unsharded data plane has them all, so the shards start after the
	// status writes (their initial list holds the digests).
	for _, k := range []string{keyA1, keyA2, keyB} {
		g.Eventually(func() string {
			return check(t, grpcClient(t), checkRequest(map[string]string{"x-api-key": k}, nil)).reason
		}, propagationTimeout, 20*time.Millisecond).Should(gomega.Equal("OK"))
	}

	dpA, a := startShard(t, []string{nsA}, "")
	dpB, bc := startShard(t, nil, "keycap.dev/shard="+nsB)
	// Ready with only its share: the suite's other tests' keys live in other namespaces.
	g.Expect(dpA.Index().Len(keycapv1alpha1.KindApiKey)).To(gomega.Equal(2))
	g.Expect(dpB.Index().Len(keycapv1alpha1.KindApiKey)).To(gomega.Equal(1))

	reason := func(c authv3.AuthorizationClient, key string) string {
		return check(t, c, checkRequest(map[string]string{"x-api-key": key}, nil)).reason
	}
	g.Expect(reason(a, keyA1)).To(gomega.Equal("OK"))
	g.Expect(reason(a, keyA2)).To(gomega.Equal("OK"))
	g.Expect(reason(a, keyB)).To(gomega.Equal("NOT_FOUND"))
	g.Expect(reason(bc, keyB)).To(gomega.Equal("OK"))
	g.Expect(reason(bc, keyA1)).To(gomega.Equal("NOT_FOUND"))

	// A key created after startup reaches its own shard only.
	keyB2, _ := createApiKey(t, nsB, "b2", nil)
	g.Eventually(func() string { return reason(bc, keyB2) }, propagationTimeout, 20*time.Millisecond).Should(gomega.Equal("OK"))
	g.Expect(reason(a, keyB2)).To(gomega.Equal("NOT_FOUND"))
	g.Expect(dpA.Index().Len(keycapv1alpha1.KindApiKey)).To(gomega.Equal(2))
}

func TestShardNamespacesRefusesAnEmptyShard(t *testing.T) {
	g := gomega.NewWithT(t)
	_, err := authz.ShardNamespaces(context.Background(), world.client, nil, "keycap.dev/shard=no-such-tenant")
	g.Expect(err).To(gomega.MatchError(gomega.ContainSubstring("no namespace matches")))
	got, err := authz.ShardNamespaces(context.Background(), world.client, []string{"b", "a", "b"}, "")
	g.Expect(err).NotTo(gomega.HaveOccurred())
	g.Expect(got).To(gomega.Equal([]string{"a", "b"}))
}

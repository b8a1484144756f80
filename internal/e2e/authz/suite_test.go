package authz_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	clocktesting "k8s.io/utils/clock/testing"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	keycapv1alpha1 "github.com/keycap-dev/keycap/api/v1alpha1"
	"github.com/keycap-dev/keycap/controllers"
	"github.com/keycap-dev/keycap/internal/authz"
	"github.com/keycap-dev/keycap/internal/keys"
	"github.com/keycap-dev/keycap/internal/testenv"
)

const (
	// revocationTimeout bounds waiting for a disable or delete to be refused. It is generous on
	// purpose: the suite asserts that revocation happens, not how fast (no timing thresholds in
	// tests); `make bench` measures the propagation time (p50/p99).
	revocationTimeout = 10 * time.Second
	// propagationTimeout bounds waiting for a created object to reach the index.
	propagationTimeout = 10 * time.Second
	// lastUsedFlush is the data plane's lastUsedAt flush interval in these tests (on the fake clock).
	lastUsedFlush = 10 * time.Second

	// operatorNamespace holds the signing keys and the public ConfigMap.
	operatorNamespace = "keycap-system"
	// signedNamespace is where the AppToken and License tests create their objects: the real
	// controllers run in this suite, but their cache sees only this namespace and the operator's,
	// so they leave the ApiKeys and AgentKeys of the other tests (whose status the tests write
	// themselves) alone.
	signedNamespace = "signed"
)

// suite is the shared world of the data-plane tests: a real kube-apiserver + etcd, a manager
// running the data plane on 127.0.0.1, and an uncached client. For ApiKeys and AgentKeys no
// controller runs: tests write the status the controller would write. AppTokens and Licenses in
// signedNamespace are reconciled by the real controllers (a second manager, on the same fake
// clock), so their tokens and licence keys are genuinely issued and signed.
type suite struct {
	client client.Client
	clock  *clocktesting.FakeClock
	dp     *authz.DataPlane
	// probeAddr serves the manager's /healthz and /readyz.
	probeAddr string
	// config reaches the apiserver as an admin (for tests that start a data plane of their own).
	config *rest.Config
}

var world *suite

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	env, err := testenv.New()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	cfg, err := env.Start()
	if err != nil {
		fmt.Fprintln(os.Stderr, "starting the control plane:", err)
		return 1
	}
	defer func() { _ = env.Stop() }()
	code, err := runWithDataPlane(m, env)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	_ = cfg
	return code
}

func runWithDataPlane(m *testing.M, env *envtest.Environment) (int, error) {
	scheme := testenv.Scheme()
	c, err := client.New(env.Config, client.Options{Scheme: scheme})
	if err != nil {
		return 0, err
	}
	// The manager binds its health probe address itself and takes no listener (controller-runtime
	// keeps that option unexported), nor tells which port ":0" got: pick one, and close it only
	// here, right before NewManager binds it. Nothing else of this process listens in between (the
	// data plane's ":0" listeners come later), so no pick of ours can take it.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	probeAddr := l.Addr().String()
	_ = l.Close()
	mgr, err := ctrl.NewManager(env.Config, ctrl.Options{
		Scheme:                 scheme,
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: probeAddr,
		// As `keycap --components=authz` runs: the cache keeps only what the index reads.
		Cache: authz.StandaloneCacheOptions(),
	})
	if err != nil {
		return 0, err
	}
	clk := clocktesting.NewFakeClock(time.Now())
	dp, err := authz.SetupWithManager(mgr, authz.Options{
		GRPCAddr:                  "127.0.0.1:0",
		HTTPAddr:                  "127.0.0.1:0",
		Clock:                     clk,
		LastUsedFlushInterval:     lastUsedFlush,
		OperatorNamespace:         operatorNamespace,
		PublicKeysRefreshInterval: 100 * time.Millisecond,
	})
	if err != nil {
		return 0, err
	}
	for _, ns := range []string{operatorNamespace, signedNamespace} {
		if err := c.Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
			return 0, err
		}
	}
	ctrlMgr, err := ctrl.NewManager(env.Config, ctrl.Options{
		Scheme:  scheme,
		Metrics: metricsserver.Options{BindAddress: "0"},
		Cache: cache.Options{DefaultNamespaces: map[string]cache.Config{
			operatorNamespace: {}, signedNamespace: {},
		}},
	})
	if err != nil {
		return 0, err
	}
	if err := controllers.SetupWithManager(ctrlMgr, controllers.Options{Clock: clk, OperatorNamespace: operatorNamespace}); err != nil {
		return 0, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 2)
	go func() { done <- ctrlMgr.Start(ctx) }()
	go func() { done <- mgr.Start(ctx) }()
	defer func() {
		cancel()
		<-done
		<-done
	}()
	waitCtx, waitCancel := context.WithTimeout(ctx, time.Minute)
	defer waitCancel()
	if !dp.WaitServing(waitCtx) {
		return 0, fmt.Errorf("the data plane did not start serving")
	}
	world = &suite{client: c, clock: clk, dp: dp, probeAddr: probeAddr, config: env.Config}
	return m.Run(), nil
}

var nsCounter atomic.Int64

// newNamespace creates a namespace of its own for a test.
func newNamespace(t *testing.T) string {
	t.Helper()
	name := fmt.Sprintf("authz-%d-%d", time.Now().UnixNano()%100000, nsCounter.Add(1))
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}
	gomega.NewWithT(t).Expect(world.client.Create(context.Background(), ns)).To(gomega.Succeed())
	return name
}

// createApiKey creates an ApiKey and writes its status as the controller would: the digest of a
// fresh key, its key ID and expiry. It returns the key.
func createApiKey(t *testing.T, ns, name string, mutate func(*keycapv1alpha1.ApiKey)) (string, *keycapv1alpha1.ApiKey) {
	t.Helper()
	g := gomega.NewWithT(t)
	key, err := keys.Generate("kc")
	g.Expect(err).NotTo(gomega.HaveOccurred())
	k := &keycapv1alpha1.ApiKey{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	k.Spec.Scopes = []string{"videos:read", "videos:write"}
	if mutate != nil {
		mutate(k)
	}
	status := k.Status
	g.Expect(world.client.Create(context.Background(), k)).To(gomega.Succeed())
	k.Status = status
	if len(k.Status.Digests) == 0 {
		k.Status.Digests = []string{keys.Digest(key)}
	}
	k.Status.KeyID = keys.KeyID(k.Status.Digests[0])
	g.Expect(world.client.Status().Update(context.Background(), k)).To(gomega.Succeed())
	return key, k
}

// createAgentKey creates an AgentKey under parent and writes its status.
func createAgentKey(t *testing.T, ns, name, parent string, scopes []string) (string, *keycapv1alpha1.AgentKey) {
	t.Helper()
	g := gomega.NewWithT(t)
	key, err := keys.Generate(keycapv1alpha1.AgentKeyPrefix)
	g.Expect(err).NotTo(gomega.HaveOccurred())
	k := &keycapv1alpha1.AgentKey{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	k.Spec.APIKeyRef.Name = parent
	k.Spec.Agent = "agent-" + name
	k.Spec.Scopes = scopes
	g.Expect(world.client.Create(context.Background(), k)).To(gomega.Succeed())
	k.Status.Digests = []string{keys.Digest(key)}
	k.Status.KeyID = keys.KeyID(k.Status.Digests[0])
	g.Expect(world.client.Status().Update(context.Background(), k)).To(gomega.Succeed())
	return key, k
}

func setDisabled(t *testing.T, obj client.Object, disabled bool) {
	t.Helper()
	patch := fmt.Appendf(nil, `{"spec":{"disabled":%t}}`, disabled)
	gomega.NewWithT(t).Expect(world.client.Patch(context.Background(), obj, client.RawPatch("application/merge-patch+json", patch))).To(gomega.Succeed())
}

package webhook

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	clocktesting "k8s.io/utils/clock/testing"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	ctrlwebhook "sigs.k8s.io/controller-runtime/pkg/webhook"

	"github.com/keycap-dev/keycap/internal/testenv"
	"github.com/keycap-dev/keycap/internal/webhookcert"
)

// The integration suite: a real kube-apiserver (envtest) with config/webhook/manifests.yaml
// installed, calling this package's webhook over TLS. The certificates are keycap's own
// (webhookcert), not envtest's: envtest's caBundle is overwritten by the certificate manager, so
// admission works only if certificate management works.

const (
	// admissionTimeout bounds waiting for the webhook to serve, for the cache to see an object, or
	// for a certificate to be replaced.
	admissionTimeout = 30 * time.Second
	operatorNS       = "keycap-system"
)

// Certificate lifetimes of the suite and of each certificate test. The apiserver checks
// certificates against the real clock, so a fake clock starts clockOffset behind it and is only
// ever stepped to at most the real time: every certificate issued at a fake instant is valid in
// real time too.
const (
	clockOffset            = 10 * time.Hour
	testCALifetime         = 24 * time.Hour
	testCARenewBefore      = 15 * time.Hour // CA renewal due at start+9h
	testServingLifetime    = 12 * time.Hour
	testServingRenewBefore = 4 * time.Hour // serving renewal due at start+8h
)

var (
	env        *envtest.Environment
	cfg        *rest.Config
	k8sClient  client.Client
	fakeClock  *clocktesting.FakeClock
	registered *Webhook
	// webhookMux serves the suite manager's webhook handlers; the certificate tests serve it
	// behind listeners of their own.
	webhookMux http.Handler
	// testPolicy narrows the AppToken duration so the configured bound can be tested.
	testPolicy = Policy{
		AppTokenDuration: DurationBounds{Min: time.Minute, Max: 24 * time.Hour},
		AppTokenMinUse:   30 * time.Second,
	}
)

func TestMain(m *testing.M) {
	os.Exit(runSuite(m))
}

func runSuite(m *testing.M) int {
	logf.SetLogger(zap.New(zap.WriteTo(os.Stderr), zap.UseDevMode(true)))
	var (
		stopEnv func()
		err     error
	)
	if env, k8sClient, stopEnv, err = testenv.Start(func(env *envtest.Environment) {
		env.WebhookInstallOptions = envtest.WebhookInstallOptions{
			Paths: []string{filepath.Join(testenv.RepoRoot(), "config", "webhook", "manifests.yaml")},
		}
	}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer stopEnv()
	cfg = env.Config
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := k8sClient.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: operatorNS}}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}

	fakeClock = clocktesting.NewFakeClock(time.Now().Add(-clockOffset))
	wio := &env.WebhookInstallOptions
	stopManager, err := testenv.StartManager(cfg, func(mgr ctrl.Manager) (err error) {
		defer func() {
			// After Setup: the server makes its mux when the first webhook is registered.
			if srv, ok := mgr.GetWebhookServer().(*ctrlwebhook.DefaultServer); ok {
				webhookMux = srv.WebhookMux()
			}
		}()
		registered, err = Setup(mgr, Options{
			OperatorNamespace:  operatorNS,
			ManageCertificates: true,
			Clock:              fakeClock,
			Policy:             testPolicy,
			Certificates: webhookcert.Options{
				CALifetime:         testCALifetime,
				CARenewBefore:      testCARenewBefore,
				ServingLifetime:    testServingLifetime,
				ServingRenewBefore: testServingRenewBefore,
			},
		})
		return err
	}, func(o *ctrl.Options) {
		o.WebhookServer = ctrlwebhook.NewServer(ctrlwebhook.Options{Host: wio.LocalServingHost, Port: wio.LocalServingPort})
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer stopManager()
	if err := waitForAdmission(ctx); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return m.Run()
}

// waitForAdmission waits until the apiserver reaches the webhook with keycap's certificate: a
// server-side dry run of an ApiKey passes only through the webhook (failurePolicy Fail).
func waitForAdmission(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, admissionTimeout)
	defer cancel()
	var err error
	for ctx.Err() == nil {
		probe := newApiKey("default", "admission-probe")
		if err = k8sClient.Create(ctx, probe, client.DryRunAll); err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
	}
	return fmt.Errorf("the webhook never admitted a valid ApiKey: %w", err)
}

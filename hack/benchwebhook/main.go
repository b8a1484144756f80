// Command benchwebhook measures what keycap's validating webhook adds to the admission of a valid
// ApiKey create, on the real kube-apiserver (envtest): N creates with the webhook registered, N
// with it removed, in the same run, and prints a table of client-observed p50/p99 and the
// apiserver's own measure of the webhook call (apiserver_admission_webhook_admission_duration_seconds).
//
//	go run ./hack/benchwebhook [-n 500]
//
// Target (issue 5): the webhook adds under 5 ms at p99.
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/go-logr/logr"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	ctrlwebhook "sigs.k8s.io/controller-runtime/pkg/webhook"

	keycapv1alpha1 "github.com/keycap-dev/keycap/api/v1alpha1"
	"github.com/keycap-dev/keycap/internal/keys"
	"github.com/keycap-dev/keycap/internal/testenv"
	"github.com/keycap-dev/keycap/webhook"
)

const (
	operatorNS = "keycap-system"
	warmup     = 50
	waitLimit  = time.Minute
)

func main() {
	n := flag.Int("n", 500, "creates per mode")
	flag.Parse()
	if err := run(*n); err != nil {
		fmt.Fprintln(os.Stderr, "benchwebhook:", err)
		os.Exit(1)
	}
}

func run(n int) error {
	logf.SetLogger(logr.Discard())
	env, err := testenv.New()
	if err != nil {
		return err
	}
	env.WebhookInstallOptions = envtest.WebhookInstallOptions{
		Paths: []string{filepath.Join(testenv.RepoRoot(), "config", "webhook", "manifests.yaml")},
	}
	cfg, err := env.Start()
	if err != nil {
		return err
	}
	defer func() { _ = env.Stop() }()
	c, err := client.New(cfg, client.Options{Scheme: testenv.Scheme()})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for _, ns := range []string{operatorNS, "bench"} {
		if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
			return err
		}
	}

	wio := &env.WebhookInstallOptions
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                 testenv.Scheme(),
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		WebhookServer:          ctrlwebhook.NewServer(ctrlwebhook.Options{Host: wio.LocalServingHost, Port: wio.LocalServingPort}),
	})
	if err != nil {
		return err
	}
	if err := webhook.SetupWithManager(mgr, webhook.Options{OperatorNamespace: operatorNS, ManageCertificates: true}); err != nil {
		return err
	}
	go func() { _ = mgr.Start(ctx) }()

	// A manifest only the webhook refuses tells whether the webhook is in the path.
	leaked, err := keys.Generate("kc")
	if err != nil {
		return err
	}
	webhookRefuses := func() bool {
		k := &keycapv1alpha1.ApiKey{ObjectMeta: metav1.ObjectMeta{Namespace: "bench", Name: "probe"},
			Spec: keycapv1alpha1.ApiKeySpec{CredentialSpec: keycapv1alpha1.CredentialSpec{Description: leaked}}}
		err := c.Create(ctx, k, client.DryRunAll)
		return err != nil && strings.Contains(err.Error(), webhook.MsgPlaintextCredential)
	}
	if err := waitUntil(webhookRefuses, "the webhook to serve"); err != nil {
		return err
	}

	seq := 0
	warm := func() error {
		for i := 0; i < warmup; i++ {
			if _, err := create(ctx, c, &seq); err != nil {
				return err
			}
		}
		return nil
	}
	measure := func() ([]time.Duration, error) {
		out := make([]time.Duration, 0, n)
		for i := 0; i < n; i++ {
			d, err := create(ctx, c, &seq)
			if err != nil {
				return nil, err
			}
			out = append(out, d)
		}
		return out, nil
	}

	if err := warm(); err != nil {
		return err
	}
	before, err := webhookMetric(ctx, cfg)
	if err != nil {
		return err
	}
	on, err := measure()
	if err != nil {
		return fmt.Errorf("webhook on: %w", err)
	}
	after, err := webhookMetric(ctx, cfg)
	if err != nil {
		return err
	}

	vwc := &admissionregistrationv1.ValidatingWebhookConfiguration{}
	if err := c.Get(ctx, client.ObjectKey{Name: webhook.ConfigurationName}, vwc); err != nil {
		return err
	}
	if err := c.Delete(ctx, vwc); err != nil {
		return err
	}
	if err := waitUntil(func() bool { return !webhookRefuses() }, "the apiserver to drop the webhook"); err != nil {
		return err
	}
	if err := warm(); err != nil {
		return err
	}
	off, err := measure()
	if err != nil {
		return fmt.Errorf("webhook off: %w", err)
	}

	fmt.Printf("\nadmission latency of a valid ApiKey create, real kube-apiserver + etcd (envtest), %d sequential creates per mode after %d warm-up\n\n", n, warmup)
	fmt.Printf("%-28s %10s %10s %10s\n", "mode", "p50", "p99", "mean")
	row := func(name string, d []time.Duration) {
		fmt.Printf("%-28s %10s %10s %10s\n", name, pct(d, 50), pct(d, 99), mean(d))
	}
	row("webhook off", off)
	row("webhook on", on)
	fmt.Printf("%-28s %10s %10s %10s\n", "webhook adds", pct(on, 50)-pct(off, 50), pct(on, 99)-pct(off, 99), mean(on)-mean(off))
	calls := after.count - before.count
	if calls > 0 {
		fmt.Printf("\napiserver side (apiserver_admission_webhook_admission_duration_seconds, vapikey.keycap.dev): %d calls, mean %s, %.1f%% under 5ms, %.1f%% under 25ms\n",
			int(calls), time.Duration((after.sum-before.sum)/calls*float64(time.Second)).Round(time.Microsecond),
			100*(after.le["0.005"]-before.le["0.005"])/calls, 100*(after.le["0.025"]-before.le["0.025"])/calls)
	}
	fmt.Printf("target: the webhook adds under 5ms at p99\n")
	return nil
}

func create(ctx context.Context, c client.Client, seq *int) (time.Duration, error) {
	*seq++
	k := &keycapv1alpha1.ApiKey{ObjectMeta: metav1.ObjectMeta{Namespace: "bench", Name: "k-" + strconv.Itoa(*seq)},
		Spec: keycapv1alpha1.ApiKeySpec{CredentialSpec: keycapv1alpha1.CredentialSpec{
			Description: "benchmark key", Scopes: []string{"videos:read", "videos:write"}}}}
	t0 := time.Now()
	err := c.Create(ctx, k)
	return time.Since(t0), err
}

func waitUntil(cond func() bool, what string) error {
	err := wait.PollUntilContextTimeout(context.Background(), 50*time.Millisecond, waitLimit, true,
		func(context.Context) (bool, error) { return cond(), nil })
	if err != nil {
		return fmt.Errorf("waiting for %s: %w", what, err)
	}
	return nil
}

func pct(d []time.Duration, p int) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	i := (len(s)*p+99)/100 - 1
	return s[max(i, 0)].Round(10 * time.Microsecond)
}

func mean(d []time.Duration) time.Duration {
	var sum time.Duration
	for _, v := range d {
		sum += v
	}
	return (sum / time.Duration(len(d))).Round(10 * time.Microsecond)
}

// histogram is the apiserver's admission webhook duration histogram for keycap's ApiKey webhook.
type histogram struct {
	count, sum float64
	le         map[string]float64
}

func webhookMetric(ctx context.Context, cfg *rest.Config) (histogram, error) {
	h := histogram{le: map[string]float64{}}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return h, err
	}
	raw, err := cs.RESTClient().Get().AbsPath("/metrics").DoRaw(ctx)
	if err != nil {
		return h, err
	}
	sc := bufio.NewScanner(strings.NewReader(string(raw)))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "apiserver_admission_webhook_admission_duration_seconds") ||
			!strings.Contains(line, `name="vapikey.keycap.dev"`) || !strings.Contains(line, `operation="CREATE"`) {
			continue
		}
		fields := strings.Fields(line)
		v, err := strconv.ParseFloat(fields[len(fields)-1], 64)
		if err != nil {
			continue
		}
		switch {
		case strings.HasPrefix(line, "apiserver_admission_webhook_admission_duration_seconds_count"):
			h.count += v
		case strings.HasPrefix(line, "apiserver_admission_webhook_admission_duration_seconds_sum"):
			h.sum += v
		case strings.HasPrefix(line, "apiserver_admission_webhook_admission_duration_seconds_bucket"):
			if _, le, ok := strings.Cut(line, `le="`); ok {
				le, _, _ = strings.Cut(le, `"`)
				h.le[le] += v
			}
		}
	}
	return h, sc.Err()
}

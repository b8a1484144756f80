// Command chaos is keycap's fault-injection run (`make chaos`). On one machine, everything on
// 127.0.0.1, it starts a real control plane (etcd, kube-apiserver, the controller manager's
// garbage collector: internal/localcluster) and the built keycap binary as the cluster manifests
// run it — two operator replicas with leader election (--components=controllers,webhook) behind a
// TCP proxy standing in for the webhook Service, and two standalone data planes
// (--components=authz) — restarting any keycap process that exits, as a kubelet would. Then it
// runs the scenarios of issue 14 and the module's fuzz targets, and prints one table.
//
//	go run ./hack/chaos [-scenarios 1,2,...,9] [-outage 30s] [-soak 5m] [-rate 50] [-fuzztime 30s]
//
// A decision is a data-plane answer to a check whose right answer is known; it is wrong when it
// differs from that answer (for the churn soak: allowed more than -bound after a disable or delete
// was acknowledged, or refused while the credential had been Ready and enabled for longer than
// -bound). Errors are checks with no decision: a transport failure or a 5xx other than the 503 of
// a data plane that has not synced yet (NOT_READY, which fails closed and is counted apart).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/keycap-dev/keycap/internal/localcluster"
	"github.com/keycap-dev/keycap/internal/testenv"
)

const operatorNamespace = "keycap-system"

type config struct {
	keycapBin string
	scenarios map[int]bool
	outage    time.Duration
	soak      time.Duration
	rate      int
	bound     time.Duration
	fuzzTime  time.Duration
	// signingKeyRotation is the operators' --signing-key-rotation.
	signingKeyRotation time.Duration
	keepDir            bool
	timeout            time.Duration
}

// row is one line of the table.
type row struct {
	scenario, load string
	duration       time.Duration
	decisions      int64
	wrong, errors  int64
	figure         string
}

type env struct {
	cfg  config
	dir  string
	cp   *controlPlane
	cl   client.WithWatch
	rest *rest.Config
	ops  []*keycap
	dps  []*keycap
	// probes are the fixtures: one credential of every kind to allow and one to refuse.
	probes []probe
}

func main() {
	var c config
	var scenarios string
	flag.StringVar(&c.keycapBin, "keycap", "bin/keycap", "The keycap binary (make build).")
	flag.StringVar(&scenarios, "scenarios", "1,2,3,4,5,6,7,8,9", "Scenarios to run (numbers of issue 14; 9 is fuzzing).")
	flag.DurationVar(&c.outage, "outage", 30*time.Second, "How long the apiserver stays frozen, and then killed.")
	flag.DurationVar(&c.soak, "soak", 5*time.Minute, "Duration of the churn soak.")
	flag.IntVar(&c.rate, "rate", 50, "Checks per second during the fault scenarios.")
	flag.DurationVar(&c.bound, "bound", time.Second, "The revocation bound: longest time a change may take to reach the data plane.")
	flag.DurationVar(&c.signingKeyRotation, "signing-key-rotation", 30*time.Second, "The operators' --signing-key-rotation, so scenario 4's kills fall among signing-key rotations.")
	flag.DurationVar(&c.fuzzTime, "fuzztime", 30*time.Second, "How long each fuzz target runs.")
	flag.DurationVar(&c.timeout, "timeout", 25*time.Minute, "The whole run stops after this long, whatever it is doing.")
	flag.BoolVar(&c.keepDir, "keep", false, "Keep the run's directory (logs of every process) instead of removing it.")
	flag.Parse()
	logf.SetLogger(logr.Discard())
	c.scenarios = map[int]bool{}
	for _, s := range strings.Split(scenarios, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 || n > 9 {
			fmt.Fprintf(os.Stderr, "chaos: bad scenario %q\n", s)
			os.Exit(2)
		}
		c.scenarios[n] = true
	}
	if err := run(c); err != nil {
		fmt.Fprintln(os.Stderr, "chaos:", err)
		os.Exit(1)
	}
}

func say(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "chaos: %s "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
}

func run(c config) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	start := time.Now()
	var rows []row
	var failed []string
	if needsCluster(c.scenarios) {
		e, cleanup, err := setup(ctx, c)
		if err != nil {
			return err
		}
		defer cleanup()
		for _, s := range []struct {
			n  int
			fn func(context.Context, *env) ([]row, error)
		}{
			{1, failClosedStart}, {2, apiserverOutage}, {3, etcdRestart}, {4, operatorKilled},
			{5, leaderFailover}, {6, twoDataPlanes}, {7, webhookRotation}, {8, churnSoak},
		} {
			if !c.scenarios[s.n] || ctx.Err() != nil {
				continue
			}
			say("scenario %d", s.n)
			r, err := s.fn(ctx, e)
			if err != nil {
				say("scenario %d failed: %v", s.n, err)
				failed = append(failed, fmt.Sprintf("scenario %d: %v", s.n, err))
			}
			rows = append(rows, r...)
			printRows(os.Stderr, r) // what a run cut short still reports
		}
	}
	if c.scenarios[9] && ctx.Err() == nil {
		r, err := fuzzAll(ctx, c.fuzzTime)
		if err != nil {
			failed = append(failed, "fuzzing: "+err.Error())
		}
		rows = append(rows, r...)
	}
	printTable(rows, c, time.Since(start))
	if len(failed) > 0 {
		return errors.New(strings.Join(failed, "; "))
	}
	for _, r := range rows {
		if r.wrong > 0 {
			return fmt.Errorf("%s: %d wrong decisions", r.scenario, r.wrong)
		}
	}
	return nil
}

func needsCluster(s map[int]bool) bool {
	for n := 1; n <= 8; n++ {
		if s[n] {
			return true
		}
	}
	return false
}

func printTable(rows []row, c config, took time.Duration) {
	fmt.Printf("\n## keycap chaos run\n\n`make chaos` (outage %s, soak %s, %d checks/s in the fault scenarios, revocation bound %s, signing keys rotated every %s, fuzz %s per target), %d CPUs, %s, whole run %s.\n\n",
		c.outage, c.soak, c.rate, c.bound, c.signingKeyRotation, c.fuzzTime, runtime.NumCPU(), time.Now().UTC().Format("2006-01-02"), took.Round(time.Second))
	fmt.Println("| scenario | load | duration | decisions | wrong | errors | figure |")
	fmt.Println("|---|---|---:|---:|---:|---:|---|")
	printRows(os.Stdout, rows)
}

func printRows(w io.Writer, rows []row) {
	for _, r := range rows {
		fmt.Fprintf(w, "| %s | %s | %s | %d | %d | %d | %s |\n", r.scenario, r.load, r.duration.Round(time.Second), r.decisions, r.wrong, r.errors, r.figure)
	}
}

// setup starts the control plane and the four keycap processes and creates the fixtures.
func setup(ctx context.Context, c config) (*env, func(), error) {
	bin, err := filepath.Abs(c.keycapBin)
	if err != nil {
		return nil, nil, err
	}
	if _, err := os.Stat(bin); err != nil {
		return nil, nil, fmt.Errorf("%s: run make build first: %w", bin, err)
	}
	assets, err := testenv.AssetsDir()
	if err != nil {
		return nil, nil, err
	}
	dir, err := os.MkdirTemp("", "keycap-chaos-")
	if err != nil {
		return nil, nil, err
	}
	var cleanups []func()
	cleanup := func() {
		for _, f := range slices.Backward(cleanups) {
			f()
		}
		if c.keepDir {
			say("logs kept in %s", dir)
		} else {
			_ = os.RemoveAll(dir)
		}
	}
	fail := func(err error) (*env, func(), error) { cleanup(); return nil, nil, err }

	ports := make([]int, 3)
	var held []net.Listener
	for i := range ports {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return fail(err)
		}
		held = append(held, l)
		ports[i] = l.Addr().(*net.TCPAddr).Port
	}
	for _, l := range held { // distinct ports, free again for the control plane and the proxy
		_ = l.Close()
	}
	webhookAddr := net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[2]))
	say("starting etcd, kube-apiserver and kube-controller-manager in %s", dir)
	clusterDir := filepath.Join(dir, "local")
	cluster, err := startCluster(ctx, clusterDir, assets, ports, webhookAddr)
	if err != nil {
		return fail(err)
	}
	cp := &controlPlane{cluster: cluster, dir: clusterDir, cfg: cluster.Config, restarted: map[string]*exec.Cmd{}}
	cleanups = append(cleanups, cp.stop)

	fast := rest.CopyConfig(cluster.Config)
	fast.QPS, fast.Burst = -1, 0
	cl, err := client.NewWithWatch(fast, client.Options{Scheme: testenv.Scheme()})
	if err != nil {
		return fail(err)
	}
	e := &env{cfg: c, dir: dir, cp: cp, cl: cl, rest: fast}
	logs := filepath.Join(dir, "logs")
	if err := os.MkdirAll(logs, 0o700); err != nil {
		return fail(err)
	}
	for i := range 2 {
		op, err := newKeycap(fmt.Sprintf("operator-%d", i+1), bin, cluster.KubeconfigPath, logs, "controllers,webhook", "--leader-elect", "--signing-key-rotation="+c.signingKeyRotation.String())
		if err != nil {
			return fail(err)
		}
		e.ops = append(e.ops, op)
		dp, err := newKeycap(fmt.Sprintf("dataplane-%d", i+1), bin, cluster.KubeconfigPath, logs, "authz")
		if err != nil {
			return fail(err)
		}
		e.dps = append(e.dps, dp)
	}
	proxy, err := startProxy(webhookAddr, []string{e.ops[0].webhook, e.ops[1].webhook})
	if err != nil {
		return fail(err)
	}
	cleanups = append(cleanups, proxy.close)
	for _, k := range append(slices.Clone(e.ops), e.dps...) {
		if err := k.start(); err != nil {
			return fail(err)
		}
		cleanups = append(cleanups, k.stop)
	}
	for _, k := range append(slices.Clone(e.ops), e.dps...) {
		if err := k.waitReady(ctx, 3*time.Minute); err != nil {
			return fail(err)
		}
	}
	say("keycap ready: 2 operators, 2 data planes; creating the fixtures")
	if err := cl.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "chaos"}}); err != nil {
		return fail(err)
	}
	if e.probes, err = fixtures(ctx, cl, "chaos", e.dps); err != nil {
		return fail(fmt.Errorf("fixtures: %w", err))
	}
	return e, cleanup, nil
}

func startCluster(ctx context.Context, dir, assets string, ports []int, webhookAddr string) (*localcluster.Cluster, error) {
	return localcluster.Start(ctx, localcluster.Options{
		Dir:               dir,
		AssetsDir:         assets,
		OperatorNamespace: operatorNamespace,
		WebhookURL:        "https://" + webhookAddr,
		APIServerPort:     ports[0],
		EtcdPort:          ports[1],
	})
}

// Command bench is keycap's data-plane load benchmark (`make bench`). In one run on one machine it
// measures, against a real kube-apiserver + etcd (envtest) and the real keycap binary running only
// the data plane (--components=authz) as its own process:
//
//   - gRPC ext_authz Check with N ApiKeys loaded (N = 100, 10 000, 100 000) against a no-op
//     ext_authz server on the same gRPC stack in its own process, and the ratio keycap/no-op;
//   - HTTP forward-auth /check against a bare net/http handler answering 200, likewise;
//   - revocation propagation: from the disable (or delete) request to the apiserver until the
//     first refused Check, p50/p99 over -trials trials;
//   - at the largest N: Check with an AppToken (first use: a signature verification each; repeated:
//     from the verifier's cache), Check with a licence (licensekey + instanceid), and licence
//     activation throughput (POST /api/commercial/activate), and Check authenticated by an SSO
//     session cookie, and Check (gRPC and HTTP) of a request on a host a RoutePolicy holds, each
//     against the same baselines;
//   - the data plane's resident memory per loaded key (RSS at the largest N minus RSS at the
//     smallest, over the difference in keys).
//
// Every server binds 127.0.0.1. Load is closed-loop with fixed concurrency and duration.
//
//	go run ./hack/bench [-max 100000] [-duration 5s] [-concurrency 32] [-trials 60]
package main

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/go-logr/logr"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	keycapv1alpha1 "github.com/keycap-dev/keycap/api/v1alpha1"
	"github.com/keycap-dev/keycap/internal/authz"
	"github.com/keycap-dev/keycap/internal/keys"
	"github.com/keycap-dev/keycap/internal/testenv"
)

type config struct {
	keycapBin   string
	sizes       []int
	duration    time.Duration
	concurrency int
	conns       int
	trials      int
	creators    int
	rounds      int
	keycapArgs  string
	// beforeBin is a second keycap binary measured beside keycapBin (-before).
	beforeBin string
	// operatorKeys is how many ApiKeys the operator's memory is measured with (0: not measured).
	operatorKeys int
	// startups is how many times each binary's data plane is restarted on the loaded apiserver.
	startups int
}

func main() {
	if addr := os.Getenv("KEYCAP_BENCH_NOOP"); addr != "" {
		runNoop(addr)
		return
	}
	var c config
	var maxN int
	flag.StringVar(&c.keycapBin, "keycap", "bin/keycap", "The keycap binary (built with `make build`); built into a temporary directory when missing.")
	flag.IntVar(&maxN, "max", 100_000, "Largest number of ApiKeys loaded (the steps are 100, 10 000 and this).")
	flag.DurationVar(&c.duration, "duration", 3*time.Second, "Duration of each load run (after a 0.5 s warm-up).")
	flag.IntVar(&c.concurrency, "concurrency", 32, "Concurrent requests in flight during load runs.")
	flag.IntVar(&c.conns, "conns", 2, "gRPC connections the load is spread over (Envoy uses one per worker).")
	flag.IntVar(&c.trials, "trials", 60, "Revocation trials (half disable, half delete).")
	flag.StringVar(&c.keycapArgs, "keycap-args", "--last-used-writes-per-second=0",
		"Extra flags for keycap. By default lastUsedAt writes are off: the bench uses every key at once, so "+
			"the data plane would patch status at its full rate and the apiserver, on the same cores, would "+
			"compete with the load. Pass \"\" to measure with them.")
	flag.IntVar(&c.rounds, "rounds", 3, "Alternating rounds of each load run; the median round is reported.")
	flag.IntVar(&c.startups, "startups", 3, "Restarts of the data plane on the loaded apiserver (alternating with the -before binary's); "+
		"the median start-up is reported.")
	flag.IntVar(&c.creators, "creators", 48, "Concurrent creates when loading ApiKeys into the apiserver.")
	flag.StringVar(&c.beforeBin, "before", "", "A second keycap binary (say, built from the commit before a change) run beside -keycap "+
		"against the same apiserver and keys: its ApiKey rounds alternate with the others' at every N, and its RSS per key "+
		"and start-up are reported too, so one run gives a change's before and after.")
	flag.IntVar(&c.operatorKeys, "operator-keys", 10_000, "ApiKeys the operator alone (the controllers) issues to measure its memory per "+
		"credential, before the data plane's rows (0: skip).")
	flag.Parse()
	logf.SetLogger(logr.Discard())
	for _, n := range []int{100, 10_000, maxN} {
		if n <= maxN && (len(c.sizes) == 0 || n > c.sizes[len(c.sizes)-1]) {
			c.sizes = append(c.sizes, n)
		}
	}
	if err := run(c); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run(c config) error {
	ctx, stop := signalContext()
	defer stop()
	start := time.Now()
	dir, err := os.MkdirTemp("", "keycap-bench-")
	if err != nil {
		return err
	}
	defer func() { _ = os.RemoveAll(dir) }()

	bin, err := keycapBinary(c.keycapBin, dir)
	if err != nil {
		return err
	}

	say("starting kube-apiserver + etcd (envtest)")
	env, err := testenv.New()
	if err != nil {
		return err
	}
	cfg, err := env.Start()
	if err != nil {
		return fmt.Errorf("starting the control plane: %w", err)
	}
	defer func() { _ = env.Stop() }()
	kubeconfig := filepath.Join(dir, "kubeconfig")
	if err := writeKubeconfig(cfg, kubeconfig); err != nil {
		return err
	}
	fast := rest.CopyConfig(cfg)
	fast.QPS, fast.Burst = -1, 0
	cl, err := client.New(fast, client.Options{Scheme: testenv.Scheme()})
	if err != nil {
		return err
	}
	if err := cl.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "bench"}}); err != nil {
		return err
	}

	// The public signing keys the controllers would publish: the data plane is not ready without.
	signer, err := publishKeys(ctx, cl)
	if err != nil {
		return err
	}
	// The session keys the controllers would keep, for the session-cookie row.
	if err := publishSessionKeys(ctx, cl); err != nil {
		return err
	}

	var operator []operatorMemory
	if c.operatorKeys > 0 {
		say("the operator's memory with %d ApiKeys", c.operatorKeys)
		if operator, err = measureOperator(ctx, c, cl, kubeconfig, dir, bin, c.operatorKeys); err != nil {
			return fmt.Errorf("measuring the operator: %w", err)
		}
	}

	// keycap's data plane alone, as its own Deployment would run it, and the no-op baselines.
	kc, err := startKeycap(ctx, bin, kubeconfig, dir, "keycap", strings.Fields(c.keycapArgs))
	if err != nil {
		return err
	}
	defer func() { kc.stop() }()
	rssEmpty := kc.rss()
	var before *process
	var rssEmptyBefore int64
	if c.beforeBin != "" {
		if before, err = startKeycap(ctx, c.beforeBin, kubeconfig, dir, "keycap-before", strings.Fields(c.keycapArgs)); err != nil {
			return err
		}
		defer func() { before.stop() }()
		rssEmptyBefore = before.rss()
	}
	noop, err := startNoop(ctx, dir)
	if err != nil {
		return err
	}
	defer noop.stop()

	var rows []row
	var loaded []string
	rss, rssBefore := map[int]int64{}, map[int]int64{}
	etcdBytes := map[int]int64{}
	for _, n := range c.sizes {
		say("loading ApiKeys up to %d", n)
		t0 := time.Now()
		self0, machine0, busy0 := selfCPU(), machineCPU(false), machineCPU(true)
		more, err := createKeys(ctx, cl, len(loaded), n-len(loaded), c.creators)
		loaded = append(loaded, more...)
		if err != nil {
			return err
		}
		took := time.Since(t0)
		// Which side bounds loading: the bench's own CPU (the client: JSON encoding, HTTP/2)
		// against the machine's busy CPU over the same time (apiserver, etcd, data plane and
		// anything else on the machine).
		say("  created %d ApiKeys (create + status) in %s (%.0f/s); CPU meanwhile: bench (client) %s, whole machine %s busy of %s",
			len(more), took.Round(time.Millisecond), float64(len(more))/took.Seconds(),
			(selfCPU() - self0).Round(time.Millisecond), (machineCPU(true) - busy0).Round(time.Millisecond),
			(machineCPU(false) - machine0).Round(time.Millisecond))
		if err := waitLoaded(ctx, kc.grpcAddr, more); err != nil {
			return err
		}
		if before != nil {
			if err := waitLoaded(ctx, before.grpcAddr, more); err != nil {
				return err
			}
		}
		say("  the data plane has all %d keys, %s after the first create", n, time.Since(t0).Round(time.Millisecond))

		// Rounds alternate keycap and its baseline (and the -before binary) so that drift in the
		// machine's load (the apiserver settling, other processes) hits them alike; the median
		// round is reported.
		if n == c.sizes[0] {
			if err := configureSameAnswer(kc, noop, loaded[0]); err != nil {
				return err
			}
		}
		var gn, gk, gb, hn, hk, hb, hs []stats
		for range c.rounds {
			gn = append(gn, loadGRPC(ctx, noop, noop.grpcAddr, loaded, c))
			gk = append(gk, loadGRPC(ctx, kc, kc.grpcAddr, loaded, c))
			if before != nil {
				gb = append(gb, loadGRPC(ctx, before, before.grpcAddr, loaded, c))
			}
			hn = append(hn, loadHTTP(ctx, noop, "http://"+noop.httpAddr+"/", loaded, c))
			hs = append(hs, loadHTTP(ctx, noop, "http://"+noop.httpAddr+sameAnswerPath, loaded, c))
			hk = append(hk, loadHTTP(ctx, kc, "http://"+kc.httpAddr+"/check?scopes=bench:read", loaded, c))
			if before != nil {
				hb = append(hb, loadHTTP(ctx, before, "http://"+before.httpAddr+"/check?scopes=bench:read", loaded, c))
			}
		}
		grpcNoop, grpcKeycap, httpNoop, httpKeycap := median(gn), median(gk), median(hn), median(hk)
		rows = append(rows,
			row{n: n, proto: "gRPC Check", keycap: grpcKeycap, noop: grpcNoop},
			row{n: n, proto: "HTTP /check", keycap: httpKeycap, noop: httpNoop},
			row{n: n, proto: sameAnswerRow, keycap: httpKeycap, noop: median(hs)})
		if before != nil {
			rows = append(rows,
				row{n: n, proto: beforeRow("gRPC Check"), keycap: median(gb), noop: grpcNoop},
				row{n: n, proto: beforeRow("HTTP /check"), keycap: median(hb), noop: httpNoop})
			rssBefore[n] = before.rss()
		}
		rss[n] = kc.rss()
		etcdBytes[n] = etcdInUse(env)
		say("  gRPC keycap %.0f rps vs no-op %.0f; HTTP keycap %.0f vs bare %.0f; RSS %d MiB",
			grpcKeycap.rps, grpcNoop.rps, httpKeycap.rps, httpNoop.rps, rss[n]>>20)
	}

	say("AppTokens, licences and activation at N=%d", len(loaded))
	signedRows, err := signedKinds(ctx, c, cl, kc, noop, signer, len(loaded))
	if err != nil {
		return err
	}
	rows = append(rows, signedRows...)
	say("session cookies at N=%d", len(loaded))
	sessionRow, err := sessionKind(ctx, c, kc, noop, loaded)
	if err != nil {
		return err
	}
	rows = append(rows, sessionRow)
	say("RoutePolicy match at N=%d", len(loaded))
	policyRows, err := routePolicyKinds(ctx, c, cl, kc, noop, loaded)
	if err != nil {
		return err
	}
	rows = append(rows, policyRows...)

	say("revocation: %d trials at N=%d", c.trials, len(loaded))
	rev, err := revocation(ctx, cl, kc.grpcAddr, c.trials)
	if err != nil {
		return err
	}

	heap := kc.heap()
	var beforeHeap string
	if before != nil {
		beforeHeap = before.heap()
		before.stop()
	}
	// Startup: a new data plane process against the loaded apiserver, from its start to ready
	// (its informers have listed every credential), as a replica starting in a large cluster.
	// The apiserver's share of the machine varies from one restart to the next, so each binary
	// is restarted c.startups times, alternating with the other, and the median is reported.
	say("startup: restarting the data plane %d times with %d ApiKeys in the apiserver", c.startups, len(loaded))
	kc.stop()
	var ups, upsBefore []startup
	for range max(c.startups, 1) {
		up, restarted, err := restart(ctx, bin, kubeconfig, dir, "keycap", c, loaded, rssEmpty)
		if err != nil {
			return err
		}
		restarted.stop()
		ups = append(ups, up)
		if before != nil {
			say("  the -before binary")
			up, restarted, err := restart(ctx, c.beforeBin, kubeconfig, dir, "keycap-before", c, loaded, rssEmptyBefore)
			if err != nil {
				return err
			}
			restarted.stop()
			upsBefore = append(upsBefore, up)
		}
	}
	up, upBefore := medianStartup(ups), medianStartup(upsBefore)

	if ns := slices.Sorted(mapsKeys(etcdBytes)); len(ns) >= 2 && etcdBytes[ns[0]] > 0 {
		lo, hi := ns[0], ns[len(ns)-1]
		up.etcdPerKey = float64(etcdBytes[hi]-etcdBytes[lo]) / float64(hi-lo)
	}
	printReport(c, rows, rev, rss, heap, up, time.Since(start))
	if before != nil {
		fmt.Printf("\nThe -before binary (%s), in the same run:\n\n", c.beforeBin)
		printMemory(rssBefore, beforeHeap, upBefore)
	}
	printOperator(operator, c.operatorKeys)
	return nil
}

// sameAnswerRow is the HTTP /check rounds against the bare handler writing keycap's answer headers.
const sameAnswerRow = "HTTP /check, against the bare handler answering with keycap's headers"

// beforeRow names a row of the -before binary.
func beforeRow(proto string) string { return proto + ", -before binary" }

// restart starts a data plane (the first one was stopped) against the loaded apiserver and
// measures its start-up: from the process's start to ready, its CPU, and its RSS when ready and
// 3 s later.
func restart(ctx context.Context, bin, kubeconfig, dir, name string, c config, loaded []string, rssEmpty int64) (startup, *process, error) {
	t0, busy0 := time.Now(), machineCPU(true)
	p, err := startKeycap(ctx, bin, kubeconfig, dir, name, strings.Fields(c.keycapArgs))
	if err != nil {
		return startup{}, nil, err
	}
	up := startup{n: len(loaded), took: time.Since(t0), rssEmpty: rssEmpty, rss: p.rss(), cpu: p.cpu(), machineBusy: machineCPU(true) - busy0}
	// The process right after the initial list is mostly the initial list's garbage; what it
	// keeps is what a GC leaves.
	time.Sleep(3 * time.Second)
	up.rssSettled = p.rss()
	say("  ready in %s, RSS %d MiB (%d MiB 3 s later)", up.took.Round(time.Millisecond), up.rss>>20, up.rssSettled>>20)
	if err := waitLoaded(ctx, p.grpcAddr, loaded[len(loaded)-1:]); err != nil {
		p.stop()
		return startup{}, nil, err
	}
	return up, p, nil
}

// startup is the restarted data plane's figures.
type startup struct {
	n    int
	took time.Duration
	// tooks are the start-ups of every restart, in order (medianStartup).
	tooks []time.Duration
	// rssEmpty is the first data plane's RSS when ready with no credential; rss and rssSettled
	// the restarted one's when ready and 3 s later.
	rssEmpty, rss, rssSettled int64
	// cpu is the restarted data plane's own CPU time until ready; machineBusy the whole machine's
	// busy CPU time meanwhile (the apiserver encoding what the data plane decodes, mostly).
	cpu, machineBusy time.Duration
	// etcdPerKey is etcd's database in use per ApiKey (difference between the smallest and the
	// largest N), before compaction: each key's create and status write are both still there.
	etcdPerKey float64
}

// medianStartup returns the restart with the median start-up, with every restart's in tooks.
func medianStartup(ups []startup) startup {
	if len(ups) == 0 {
		return startup{}
	}
	s := slices.Clone(ups)
	slices.SortFunc(s, func(a, b startup) int { return cmp.Compare(a.took, b.took) })
	m := s[len(s)/2]
	for _, u := range ups {
		m.tooks = append(m.tooks, u.took)
	}
	return m
}

// etcdInUse is etcd's etcd_mvcc_db_total_size_in_use_in_bytes (0 when unreadable).
func etcdInUse(env *envtest.Environment) int64 {
	if env.ControlPlane.Etcd == nil || env.ControlPlane.Etcd.URL == nil {
		return 0
	}
	resp, err := http.Get(env.ControlPlane.Etcd.URL.String() + "/metrics")
	if err != nil {
		return 0
	}
	defer func() { _ = resp.Body.Close() }()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "etcd_mvcc_db_total_size_in_use_in_bytes "); ok {
			f, _ := strconv.ParseFloat(v, 64)
			return int64(f)
		}
	}
	return 0
}

// ---- results ----

type stats struct {
	rps      float64
	p50, p99 time.Duration
	errors   int64
	denied   int64
	// cpuPerReq is the server process's CPU time (user + system) per request.
	cpuPerReq time.Duration
}

type row struct {
	n            int
	proto        string
	keycap, noop stats
}

func printReport(c config, rows []row, rev map[string][]time.Duration, rss map[int]int64, heap string, up startup, took time.Duration) {
	fmt.Printf("\n## keycap data plane benchmark\n\n")
	fmt.Printf("`make bench` (go run ./hack/bench -duration %s -rounds %d -concurrency %d -conns %d -keycap-args=%q), %d CPUs, %s/%s, %s. "+
		"Closed-loop load from this process; keycap (`keycap --components=authz`), the no-op ext_authz server and the bare "+
		"net/http handler each run as their own process on 127.0.0.1; the apiserver and etcd share the machine.\n\n",
		c.duration, c.rounds, c.concurrency, c.conns, c.keycapArgs, runtime.NumCPU(), runtime.GOOS, runtime.GOARCH, time.Now().UTC().Format("2006-01-02"))
	fmt.Println("| N keys | protocol | keycap rps | p50 | p99 | server CPU/req | baseline rps | p50 | p99 | server CPU/req | keycap/baseline rps |")
	fmt.Println("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
	first := map[string]float64{}
	sizes := map[string]int{}
	for _, r := range rows {
		sizes[r.proto]++
		if _, ok := first[r.proto]; !ok {
			first[r.proto] = r.keycap.rps
		}
		note := ""
		if r.keycap.errors+r.keycap.denied > 0 {
			note = fmt.Sprintf(" (%d errors, %d denied)", r.keycap.errors, r.keycap.denied)
		}
		fmt.Printf("| %d | %s | %.0f%s | %s | %s | %s | %.0f | %s | %s | %s | %.2f |\n", r.n, r.proto, r.keycap.rps, note,
			us(r.keycap.p50), us(r.keycap.p99), us(r.keycap.cpuPerReq), r.noop.rps, us(r.noop.p50), us(r.noop.p99), us(r.noop.cpuPerReq),
			r.keycap.rps/r.noop.rps)
	}
	fmt.Println()
	for _, r := range rows {
		if sizes[r.proto] > 1 && r.n == rows[len(rows)-1].n && first[r.proto] > 0 {
			fmt.Printf("- %s throughput at N=%d is %.0f%% of N=%d.\n", r.proto, r.n, 100*r.keycap.rps/first[r.proto], rows[0].n)
		}
	}
	fmt.Println()
	fmt.Println("| revocation | trials | p50 | p99 | max | apiserver answered: p50 | max | slowest trial: apiserver / after |")
	fmt.Println("|---|---:|---:|---:|---:|---:|---:|---:|")
	for _, kind := range []string{"disable", "delete", "all"} {
		d, acks := rev[kind], rev["ack "+kind]
		if len(d) == 0 || len(acks) != len(d) {
			continue
		}
		slowest := 0
		for i := range d {
			if d[i] > d[slowest] {
				slowest = i
			}
		}
		fmt.Printf("| %s | %d | %s | %s | %s | %s | %s | %s / %s |\n", kind, len(d), ms(pct(d, 50)), ms(pct(d, 99)), ms(slices.Max(d)),
			ms(pct(acks, 50)), ms(slices.Max(acks)), ms(acks[slowest]), ms(d[slowest]-acks[slowest]))
	}
	fmt.Println()
	printMemory(rss, heap, up)
	if up.etcdPerKey > 0 {
		fmt.Printf("- etcd database in use: %.0f bytes per ApiKey (create + status write, before the apiserver's compaction).\n", up.etcdPerKey)
	}
	fmt.Printf("- Whole run: %s.\n", took.Round(time.Second))
}

// printMemory reports a data plane's RSS per key under load and its start-up.
func printMemory(rss map[int]int64, heap string, up startup) {
	ns := slices.Sorted(mapsKeys(rss))
	if len(ns) >= 2 {
		lo, hi := ns[0], ns[len(ns)-1]
		perKey := float64(rss[hi]-rss[lo]) / float64(hi-lo)
		fmt.Printf("- Data plane RSS: %s MiB at N=%d, %s MiB at N=%d: %.0f bytes per key (RSS difference / key difference). %s\n",
			mib(rss[lo]), lo, mib(rss[hi]), hi, perKey, heap)
	}
	if up.n > 0 {
		tooks := make([]string, len(up.tooks))
		for i, t := range up.tooks {
			tooks[i] = t.Round(10 * time.Millisecond).String()
		}
		fmt.Printf("- Startup with %d ApiKeys in the apiserver: %s from process start to ready (/readyz: every credential listed into the index; "+
			"the median of %d restarts: %s). "+
			"RSS when ready %s MiB, 3 s later %s MiB; the first data plane with no credential: %s MiB, so %.0f bytes per key settled (a fresh process: no load, no churn).\n",
			up.n, up.took.Round(time.Millisecond), len(up.tooks), strings.Join(tooks, ", "), mib(up.rss), mib(up.rssSettled), mib(up.rssEmpty), float64(up.rssSettled-up.rssEmpty)/float64(up.n))
		fmt.Printf("  In that restart, until ready the data plane used %s of CPU; the whole machine was busy %s of the %s × %d CPUs (the rest: the apiserver serving the initial lists, etcd).\n",
			up.cpu.Round(10*time.Millisecond), up.machineBusy.Round(10*time.Millisecond), up.took.Round(10*time.Millisecond), runtime.NumCPU())
	}
}

// median returns the round with the median throughput (errors and denials summed over rounds).
func median(rounds []stats) stats {
	s := slices.Clone(rounds)
	slices.SortFunc(s, func(a, b stats) int { return int(a.rps - b.rps) })
	m := s[len(s)/2]
	m.errors, m.denied = 0, 0
	for _, r := range rounds {
		m.errors += r.errors
		m.denied += r.denied
	}
	return m
}

func us(d time.Duration) string {
	if d < 100*time.Microsecond {
		return fmt.Sprintf("%.1f µs", float64(d)/float64(time.Microsecond))
	}
	return fmt.Sprintf("%.0f µs", float64(d)/float64(time.Microsecond))
}
func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond)) }
func mib(b int64) string        { return fmt.Sprintf("%.1f", float64(b)/(1<<20)) }

func pct(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	i := int(math.Ceil(p/100*float64(len(s)))) - 1
	return s[max(0, min(i, len(s)-1))]
}

func mapsKeys(m map[int]int64) func(func(int) bool) {
	return func(yield func(int) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

func say(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "bench: "+format+"\n", args...)
}

// ---- processes ----

func signalContext() (context.Context, func()) {
	ctx, cancel := context.WithCancel(context.Background())
	ch := make(chan os.Signal, 1)
	signalNotify(ch)
	go func() {
		select {
		case <-ch:
			cancel()
		case <-ctx.Done():
		}
	}()
	return ctx, cancel
}

func keycapBinary(path, dir string) (string, error) {
	if _, err := os.Stat(path); err == nil {
		return filepath.Abs(path)
	}
	out := filepath.Join(dir, "keycap")
	say("building keycap into %s", out)
	cmd := exec.Command("go", "build", "-o", out, ".")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	return out, cmd.Run()
}

func writeKubeconfig(cfg *rest.Config, path string) error {
	kc := clientcmdapi.NewConfig()
	kc.Clusters["bench"] = &clientcmdapi.Cluster{Server: cfg.Host, CertificateAuthorityData: cfg.CAData}
	kc.AuthInfos["bench"] = &clientcmdapi.AuthInfo{ClientCertificateData: cfg.CertData, ClientKeyData: cfg.KeyData, Token: cfg.BearerToken}
	kc.Contexts["bench"] = &clientcmdapi.Context{Cluster: "bench", AuthInfo: "bench"}
	kc.CurrentContext = "bench"
	return clientcmd.WriteToFile(*kc, path)
}

type process struct {
	cmd      *exec.Cmd
	done     chan struct{}
	grpcAddr string
	httpAddr string
	metrics  string
}

func (p *process) stop() {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// cpu returns the CPU time (user + system) the process has used.
func (p *process) cpu() time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.cmd.Process.Pid))
	if err != nil {
		return 0
	}
	// Fields after the command name (which is in parentheses): utime and stime are the 12th
	// and 13th, in clock ticks (USER_HZ, 100 on Linux).
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseInt(f[11], 10, 64)
	s, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(u+s) * 10 * time.Millisecond
}

// selfCPU is the bench process's own CPU time (user + system).
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// machineCPU is the machine's CPU time from /proc/stat over all cores: busy only (everything but
// idle and iowait), or all.
func machineCPU(busy bool) time.Duration {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	var total int64
	for i, f := range strings.Fields(line)[1:] {
		v, _ := strconv.ParseInt(f, 10, 64)
		if busy && (i == 3 || i == 4) {
			continue
		}
		total += v
	}
	return time.Duration(total) * 10 * time.Millisecond
}

// rss returns the process's resident set size in bytes.
func (p *process) rss() int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	if err != nil {
		return 0
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// heap returns the Go heap figures keycap's metrics endpoint reports.
func (p *process) heap() string {
	m, err := p.scrape()
	if err != nil {
		return ""
	}
	return fmt.Sprintf("Go heap in use at the end: %.1f MiB.", m.heapInUse/(1<<20))
}

func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer func() { _ = l.Close() }()
	return l.Addr().String(), nil
}

func startKeycap(ctx context.Context, bin, kubeconfig, dir, name string, extra []string) (*process, error) {
	return startKeycapProbed(ctx, bin, kubeconfig, dir, name, "/readyz", extra)
}

// startKeycapProbed starts keycap and waits until its probe endpoint probe answers OK.
func startKeycapProbed(ctx context.Context, bin, kubeconfig, dir, name, probe string, extra []string) (*process, error) {
	var addrs [4]string
	for i := range addrs {
		a, err := freeAddr()
		if err != nil {
			return nil, err
		}
		addrs[i] = a
	}
	logFile, err := os.Create(filepath.Join(dir, name+".log"))
	if err != nil {
		return nil, err
	}
	args := append([]string{"--components=authz", "--operator-namespace=" + operatorNamespace,
		"--grpc-bind-address=" + addrs[0], "--http-bind-address=" + addrs[1],
		"--health-probe-bind-address=" + addrs[2], "--metrics-bind-address=" + addrs[3]}, extra...)
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+kubeconfig)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	p, err := startProcess(cmd)
	if err != nil {
		return nil, err
	}
	p.grpcAddr, p.httpAddr, p.metrics = addrs[0], addrs[1], addrs[3]
	deadline := time.Now().Add(5 * time.Minute)
	for {
		resp, err := http.Get("http://" + addrs[2] + probe)
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p, nil
			}
		}
		select {
		case <-p.done:
			log, _ := os.ReadFile(logFile.Name())
			return nil, fmt.Errorf("keycap exited:\n%s", log)
		case <-ctx.Done():
			p.stop()
			return nil, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			p.stop()
			return nil, fmt.Errorf("keycap's %s did not answer OK within 5 minutes", probe)
		}
	}
}

func startNoop(ctx context.Context, dir string) (*process, error) {
	g, err := freeAddr()
	if err != nil {
		return nil, err
	}
	h, err := freeAddr()
	if err != nil {
		return nil, err
	}
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(self)
	cmd.Env = append(os.Environ(), "KEYCAP_BENCH_NOOP="+g+","+h)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	p, err := startProcess(cmd)
	if err != nil {
		return nil, err
	}
	p.grpcAddr, p.httpAddr = g, h
	for range 200 {
		if c, err := net.Dial("tcp", h); err == nil {
			_ = c.Close()
			return p, nil
		}
		select {
		case <-ctx.Done():
			p.stop()
			return nil, ctx.Err()
		case <-time.After(25 * time.Millisecond):
		}
	}
	p.stop()
	return nil, errors.New("the no-op servers did not start")
}

func startProcess(cmd *exec.Cmd) (*process, error) {
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &process{cmd: cmd, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(p.done) }()
	return p, nil
}

// runNoop is the child process of the baselines: a no-op ext_authz gRPC server (always OK, no
// headers) and a bare net/http handler answering 200, built like keycap's servers.
func runNoop(addrs string) {
	g, h, _ := strings.Cut(addrs, ",")
	gl, err := net.Listen("tcp", g)
	if err != nil {
		panic(err)
	}
	hl, err := net.Listen("tcp", h)
	if err != nil {
		panic(err)
	}
	// Both baselines are served as keycap serves: the same server options and limits.
	s := grpc.NewServer(authz.GRPCServerOptions()...)
	authv3.RegisterAuthorizationServer(s, noopAuthz{})
	go func() { _ = s.Serve(gl) }()
	// The bare handler answers 200 with no header; under sameAnswerPath it answers with the
	// headers of keycap's allowed /check answer, once the bench has posted them to configurePath.
	var answer atomic.Pointer[http.Header]
	srv := authz.NewHTTPServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case configurePath:
			var hdr http.Header
			if err := json.NewDecoder(r.Body).Decode(&hdr); err != nil {
				w.WriteHeader(http.StatusBadRequest)
				return
			}
			answer.Store(&hdr)
		case sameAnswerPath:
			if hdr := answer.Load(); hdr != nil {
				h := w.Header()
				for k, v := range *hdr {
					h[k] = v
				}
			}
		}
		w.WriteHeader(http.StatusOK)
	}))
	go func() { _ = srv.Serve(hl) }()
	ch := make(chan os.Signal, 1)
	signalNotify(ch)
	<-ch
}

// The bare handler's paths besides "/" (runNoop).
const (
	configurePath  = "/configure"
	sameAnswerPath = "/same-answer"
)

// configureSameAnswer takes the headers of keycap's allowed /check answer for key (without those
// net/http writes itself) and posts them to the bare handler, for the rows that separate what
// keycap decides from what writing its answer costs net/http.
func configureSameAnswer(kc, noop *process, key string) error {
	req, err := http.NewRequest(http.MethodGet, "http://"+kc.httpAddr+"/check?scopes=bench:read", nil)
	if err != nil {
		return err
	}
	req.Header.Set("X-Api-Key", key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("keycap's /check answered %d", resp.StatusCode)
	}
	hdr := resp.Header.Clone()
	hdr.Del("Date")
	hdr.Del("Content-Length")
	body, err := json.Marshal(hdr)
	if err != nil {
		return err
	}
	resp, err = http.Post("http://"+noop.httpAddr+configurePath, "application/json", bytes.NewReader(body))
	if err != nil {
		return err
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("the bare handler refused the headers: %d", resp.StatusCode)
	}
	return nil
}

type noopAuthz struct {
	authv3.UnimplementedAuthorizationServer
}

func (noopAuthz) Check(context.Context, *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	return &authv3.CheckResponse{HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{}}}, nil
}

// ---- loading keys ----

// createKeys creates n ApiKeys named from offset on, each with its status written as the
// controller would (digest, keyID), with the given concurrency, and returns their keys.
func createKeys(ctx context.Context, cl client.Client, offset, n, workers int) ([]string, error) {
	out := make([]string, n)
	err := inParallel(ctx, n, workers, func(i int) (err error) {
		out[i], err = createKey(ctx, cl, fmt.Sprintf("k%06d", offset+i))
		return err
	})
	return out, err
}

// inParallel calls fn for 0 ≤ i < n on workers goroutines and returns the first error (or ctx's);
// a worker stops at its first error.
func inParallel(ctx context.Context, n, workers int, fn func(i int) error) error {
	var next atomic.Int64
	errs := make([]error, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := int(next.Add(1)) - 1; i < n && ctx.Err() == nil; i = int(next.Add(1)) - 1 {
				if errs[w] = fn(i); errs[w] != nil {
					return
				}
			}
		})
	}
	wg.Wait()
	return errors.Join(append(errs, ctx.Err())...)
}

func createKey(ctx context.Context, cl client.Client, name string) (string, error) {
	key, err := keys.Generate("kc")
	if err != nil {
		return "", err
	}
	k := &keycapv1alpha1.ApiKey{ObjectMeta: metav1.ObjectMeta{Namespace: "bench", Name: name}}
	k.Spec.Scopes = []string{"bench:read", "bench:write"}
	if err := cl.Create(ctx, k); err != nil {
		return "", fmt.Errorf("creating ApiKey %s: %w", name, err)
	}
	k.Status.Digests = []string{keys.Digest(key)}
	k.Status.KeyID = keys.KeyID(k.Status.Digests[0])
	k.Status.Hint = keys.Hint(key)
	k.Status.SecretName = name
	if err := cl.Status().Update(ctx, k); err != nil {
		return "", fmt.Errorf("writing the status of ApiKey %s: %w", name, err)
	}
	return key, nil
}

// waitLoaded waits until the data plane allows every key in ks.
func waitLoaded(ctx context.Context, addr string, ks []string) error {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer func() { _ = conn.Close() }()
	c := authv3.NewAuthorizationClient(conn)
	deadline := time.Now().Add(5 * time.Minute)
	for i := len(ks) - 1; i >= 0; {
		resp, err := c.Check(ctx, checkRequest(ks[i]))
		if err != nil {
			return err
		}
		if resp.GetOkResponse() != nil {
			i--
			continue
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the data plane did not load key %d", i)
		}
		time.Sleep(20 * time.Millisecond) // polling the data plane, a separate process
	}
	return nil
}

func checkRequest(key string) *authv3.CheckRequest {
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Method: "GET", Path: "/videos", Host: "api.example",
			Headers: map[string]string{"x-api-key": key, ":path": "/videos", ":method": "GET", "user-agent": "bench"},
		}},
		ContextExtensions: map[string]string{"keycap.dev/scopes": "bench:read"},
	}}
}

// ---- load ----

// load runs fn from c.concurrency workers for c.duration (after a one-second warm-up) and
// measures it. fn returns whether the request was allowed, or an error.
func load(ctx context.Context, c config, server *process, fn func(worker, i int) (bool, error)) stats {
	var (
		running   atomic.Bool
		stopping  atomic.Bool
		errs      atomic.Int64
		denied    atomic.Int64
		latencies = make([][]time.Duration, c.concurrency)
		wg        sync.WaitGroup
	)
	for w := range c.concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			lat := make([]time.Duration, 0, 1<<16)
			for i := 0; !stopping.Load() && ctx.Err() == nil; i++ {
				t0 := time.Now()
				ok, err := fn(w, i)
				d := time.Since(t0)
				if !running.Load() {
					continue
				}
				switch {
				case err != nil:
					errs.Add(1)
				case !ok:
					denied.Add(1)
				}
				lat = append(lat, d)
			}
			latencies[w] = lat
		}()
	}
	time.Sleep(500 * time.Millisecond) // warm-up: connections open, caches warm
	running.Store(true)
	t0, cpu0 := time.Now(), server.cpu()
	time.Sleep(c.duration)
	running.Store(false)
	elapsed, cpu := time.Since(t0), server.cpu()-cpu0
	stopping.Store(true)
	wg.Wait()
	var all []time.Duration
	for _, l := range latencies {
		all = append(all, l...)
	}
	st := stats{rps: float64(len(all)) / elapsed.Seconds(), p50: pct(all, 50), p99: pct(all, 99), errors: errs.Load(), denied: denied.Load()}
	if len(all) > 0 {
		st.cpuPerReq = cpu / time.Duration(len(all))
	}
	return st
}

// keyFor spreads the workers' requests over all loaded keys, so the index is probed all over.
func keyFor(ks []string, worker, i int) string {
	return ks[(worker*len(ks)/64+i*7919)%len(ks)]
}

// loadGRPC runs Check with requests spread over the loaded keys; the requests are built once so
// the client's cost stays out of the measurement.
func loadGRPC(ctx context.Context, server *process, addr string, ks []string, c config) stats {
	reqs := make([]*authv3.CheckRequest, 4096)
	for i := range reqs {
		reqs[i] = checkRequest(keyFor(ks, 0, i))
	}
	return loadGRPCRequests(ctx, server, addr, c, func(w, i int) *authv3.CheckRequest {
		return reqs[(w*131+i)%len(reqs)]
	})
}

func loadHTTP(ctx context.Context, server *process, url string, ks []string, c config) stats {
	return loadHTTPHost(ctx, server, url, "", ks, c)
}

// loadHTTPHost is loadHTTP with the requests' Host set to host (the URL's when empty).
func loadHTTPHost(ctx context.Context, server *process, url, host string, ks []string, c config) stats {
	tr := &http.Transport{MaxIdleConns: c.concurrency, MaxIdleConnsPerHost: c.concurrency, IdleConnTimeout: time.Minute}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	return load(ctx, c, server, func(w, i int) (bool, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return false, err
		}
		if host != "" {
			req.Host = host
		}
		req.Header.Set("X-Api-Key", keyFor(ks, w, i%4096))
		resp, err := hc.Do(req)
		if err != nil {
			return false, err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		return resp.StatusCode == http.StatusOK, nil
	})
}

// ---- revocation ----

// revocation disables (even trials) or deletes (odd trials) a loaded ApiKey and measures the time
// from sending that request to the first Check the data plane refuses, polling Check as fast as
// one client can.
func revocation(ctx context.Context, cl client.Client, addr string, trials int) (map[string][]time.Duration, error) {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, err
	}
	defer func() { _ = conn.Close() }()
	c := authv3.NewAuthorizationClient(conn)
	out := map[string][]time.Duration{}
	for t := range trials {
		name := fmt.Sprintf("rev%04d", t)
		key, err := createKey(ctx, cl, name)
		if err != nil {
			return nil, err
		}
		if err := waitLoaded(ctx, addr, []string{key}); err != nil {
			return nil, err
		}
		obj := &keycapv1alpha1.ApiKey{ObjectMeta: metav1.ObjectMeta{Namespace: "bench", Name: name}}
		kind := "disable"
		t0 := time.Now()
		if t%2 == 0 {
			err = cl.Patch(ctx, obj, client.RawPatch("application/merge-patch+json", []byte(`{"spec":{"disabled":true}}`)))
		} else {
			kind = "delete"
			err = cl.Delete(ctx, obj)
		}
		if err != nil {
			return nil, err
		}
		// The apiserver has answered (the change is in etcd): what follows is the watch event's
		// way to the data plane and its handler.
		ack := time.Since(t0)
		for {
			resp, err := c.Check(ctx, checkRequest(key))
			if err != nil {
				return nil, err
			}
			if resp.GetOkResponse() == nil {
				break
			}
			if time.Since(t0) > 10*time.Second {
				return nil, fmt.Errorf("trial %d: still allowed after 10s", t)
			}
		}
		d := time.Since(t0)
		out[kind] = append(out[kind], d)
		out["all"] = append(out["all"], d)
		out["ack "+kind] = append(out["ack "+kind], ack)
		out["ack all"] = append(out["ack all"], ack)
	}
	return out, nil
}

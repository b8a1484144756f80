package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	keycapv1alpha1 "github.com/keycap-dev/keycap/api/v1alpha1"
)

// The operator's memory, apart from the data plane's: the controllers alone (`keycap
// --components=controllers`, as the operator Deployment runs them, without the webhook, which
// shares their cache) issue operatorKeys ApiKeys, each into a Secret of its own, in a namespace
// of their own and with an operator namespace of their own (their signing and session keys are
// not the ones the bench publishes for the data plane). Measured before the data plane's rows,
// and the ApiKeys and Secrets deleted after, so the data plane never sees them.
const (
	operatorBenchNamespace = "operator-bench"
	operatorNamespaceOwn   = "keycap-operator-bench"
)

// operatorMemory is one binary's operator figures.
type operatorMemory struct {
	bin string
	// empty is the RSS with no credential; grown after issuing n ApiKeys; fresh a new process
	// started with them (listed, reconciled, idle). Heaps are go_memstats_heap_inuse_bytes.
	empty, grown, fresh             int64
	emptyHeap, grownHeap, freshHeap float64
	// took is the time the controllers needed to issue every ApiKey (all Ready).
	took time.Duration
}

// measureOperator measures bin (and, when set, before: only as an empty and a fresh process on
// the ApiKeys bin issued) with n ApiKeys.
func measureOperator(ctx context.Context, c config, cl client.Client, kubeconfig, dir, bin string, n int) ([]operatorMemory, error) {
	for _, ns := range []string{operatorBenchNamespace, operatorNamespaceOwn} {
		if err := cl.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
			return nil, err
		}
	}
	bins := []string{bin}
	if c.beforeBin != "" {
		bins = append(bins, c.beforeBin)
	}
	out := make([]operatorMemory, len(bins))
	for i, b := range bins {
		out[i].bin = b
		op, err := startOperator(ctx, b, kubeconfig, dir)
		if err != nil {
			return nil, err
		}
		out[i].empty, out[i].emptyHeap, err = op.settled(ctx, 0)
		op.stop()
		if err != nil {
			return nil, err
		}
	}

	say("  the controllers issue %d ApiKeys", n)
	op, err := startOperator(ctx, bin, kubeconfig, dir)
	if err != nil {
		return nil, err
	}
	t0 := time.Now()
	if err := createOperatorKeys(ctx, cl, n, c.creators); err != nil {
		op.stop()
		return nil, err
	}
	if err := waitAllReady(ctx, cl, n); err != nil {
		op.stop()
		return nil, err
	}
	out[0].took = time.Since(t0)
	out[0].grown, out[0].grownHeap, err = op.settled(ctx, 0)
	op.stop()
	if err != nil {
		return nil, err
	}

	for i, b := range bins {
		say("  a new operator process (%s) with %d ApiKeys", b, n)
		op, err := startOperator(ctx, b, kubeconfig, dir)
		if err != nil {
			return nil, err
		}
		out[i].fresh, out[i].freshHeap, err = op.settled(ctx, n)
		op.stop()
		if err != nil {
			return nil, err
		}
	}

	say("  deleting the operator's ApiKeys and Secrets")
	if err := cl.DeleteAllOf(ctx, &keycapv1alpha1.ApiKey{}, client.InNamespace(operatorBenchNamespace)); err != nil {
		return nil, err
	}
	if err := cl.DeleteAllOf(ctx, &corev1.Secret{}, client.InNamespace(operatorBenchNamespace)); err != nil {
		return nil, err
	}
	return out, nil
}

func startOperator(ctx context.Context, bin, kubeconfig, dir string) (*process, error) {
	// startKeycap's --components and --operator-namespace are overridden (the last flag wins).
	// The controllers alone have no readiness check: settled waits for their work instead.
	return startKeycapProbed(ctx, bin, kubeconfig, dir, "operator", "/healthz", []string{
		"--components=controllers", "--leader-elect=false", "--operator-namespace=" + operatorNamespaceOwn})
}

// createOperatorKeys creates n ApiKeys for the controllers to issue.
func createOperatorKeys(ctx context.Context, cl client.Client, n, workers int) error {
	return inParallel(ctx, n, workers, func(i int) error {
		k := &keycapv1alpha1.ApiKey{ObjectMeta: metav1.ObjectMeta{Namespace: operatorBenchNamespace, Name: fmt.Sprintf("op%06d", i)}}
		k.Spec.Scopes = []string{"bench:read", "bench:write"}
		if err := cl.Create(ctx, k); err != nil {
			return fmt.Errorf("creating ApiKey %s: %w", k.Name, err)
		}
		return nil
	})
}

// waitAllReady waits until n ApiKeys of the operator's namespace are Ready.
func waitAllReady(ctx context.Context, cl client.Client, n int) error {
	deadline := time.Now().Add(30 * time.Minute)
	for {
		var list keycapv1alpha1.ApiKeyList
		if err := cl.List(ctx, &list, client.InNamespace(operatorBenchNamespace)); err != nil {
			return err
		}
		ready := 0
		for i := range list.Items {
			if meta.IsStatusConditionTrue(list.Items[i].Status.Conditions, keycapv1alpha1.ConditionReady) {
				ready++
			}
		}
		if ready >= n {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("only %d of %d ApiKeys Ready after 30 minutes", ready, n)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(2 * time.Second):
		}
	}
}

// settled waits until the operator has reconciled at least reconciled ApiKeys and its work queues
// are empty on two reads a second apart, then 3 s more, and returns its RSS and Go heap in use.
func (p *process) settled(ctx context.Context, reconciled int) (int64, float64, error) {
	deadline := time.Now().Add(30 * time.Minute)
	quiet := 0
	for quiet < 2 {
		// The metrics listener may come up after the health probe's: until it answers, not yet.
		m, err := p.scrape()
		if err == nil && m.queued == 0 && m.apiKeyReconciles >= float64(reconciled) {
			quiet++
		} else {
			quiet = 0
		}
		if time.Now().After(deadline) {
			if err != nil {
				return 0, 0, fmt.Errorf("the operator did not settle in 30 minutes: its metrics: %w", err)
			}
			return 0, 0, fmt.Errorf("the operator did not settle in 30 minutes (%.0f ApiKey reconciles, %.0f queued)", m.apiKeyReconciles, m.queued)
		}
		select {
		case <-ctx.Done():
			return 0, 0, ctx.Err()
		case <-p.done:
			return 0, 0, errors.New("the operator exited")
		case <-time.After(time.Second):
		}
	}
	time.Sleep(3 * time.Second)
	m, err := p.scrape()
	return p.rss(), m.heapInUse, err
}

// operatorMetrics is what settled reads from the operator's metrics.
type operatorMetrics struct {
	queued, apiKeyReconciles, heapInUse float64
}

func (p *process) scrape() (operatorMetrics, error) {
	var m operatorMetrics
	resp, err := http.Get("http://" + p.metrics + "/metrics")
	if err != nil {
		return m, err
	}
	defer func() { _ = resp.Body.Close() }()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		sp := strings.LastIndexByte(line, ' ')
		if sp < 0 || strings.HasPrefix(line, "#") {
			continue
		}
		v, err := strconv.ParseFloat(line[sp+1:], 64)
		if err != nil {
			continue
		}
		switch name := line[:sp]; {
		case strings.HasPrefix(name, "workqueue_depth{"):
			m.queued += v
		case strings.HasPrefix(name, "controller_runtime_reconcile_total{") && strings.Contains(name, `controller="apikey"`):
			m.apiKeyReconciles += v
		case name == "go_memstats_heap_inuse_bytes":
			m.heapInUse = v
		}
	}
	return m, sc.Err()
}

func printOperator(ms []operatorMemory, n int) {
	if len(ms) == 0 {
		return
	}
	fmt.Printf("\nThe operator alone (`--components=controllers`), %d ApiKeys it issued (a Secret each) in %s:\n\n", n, ms[0].took.Round(time.Second))
	fmt.Println("| binary | RSS empty | RSS after issuing | per ApiKey | RSS restarted with them | per ApiKey | Go heap in use: empty / after issuing / restarted |")
	fmt.Println("|---|---:|---:|---:|---:|---:|---|")
	for _, m := range ms {
		grown, perGrown := "—", "—"
		if m.grown > 0 {
			grown, perGrown = mib(m.grown)+" MiB", fmt.Sprintf("%.0f B", float64(m.grown-m.empty)/float64(n))
		}
		fmt.Printf("| %s | %s MiB | %s | %s | %s MiB | %.0f B | %.1f / %s / %.1f MiB |\n", m.bin, mib(m.empty), grown, perGrown,
			mib(m.fresh), float64(m.fresh-m.empty)/float64(n), m.emptyHeap/(1<<20), heapOrDash(m.grownHeap, m.grown), m.freshHeap/(1<<20))
	}
}

func heapOrDash(h float64, measured int64) string {
	if measured == 0 {
		return "—"
	}
	return fmt.Sprintf("%.1f", h/(1<<20))
}

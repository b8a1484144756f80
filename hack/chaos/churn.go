package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"golang.org/x/time/rate"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	keycapv1alpha1 "github.com/keycap-dev/keycap/api/v1alpha1"
	"github.com/keycap-dev/keycap/internal/testenv"
)

// The churn soak's record of the world: what was asked of the apiserver and when it answered
// (mutations), what the operator made of it as the watch showed it (observations), which keys
// the Secrets held, and every check. Checks are judged after the run against that record.

type mutKind uint8

const (
	mutCreate mutKind = iota
	mutDisable
	mutEnable
	mutRotate
	mutDelete
)

type mutation struct {
	kind      mutKind
	sent, ack time.Time // ack is zero when the request failed
}

// observation is the ApiKey as the watch delivered it.
type observation struct {
	at time.Time
	// live: Ready=True for the current generation and not disabled.
	live              bool
	current, previous string // digests
	previousUntil     time.Time
	deleted           bool
}

type churnCred struct {
	name string
	mu   sync.Mutex
	muts []mutation
	obs  []observation
	keys []string // plaintexts the Secret held, in order
	// gone is set once the delete was acknowledged; such a credential is still checked for a while.
	gone time.Time
}

type churnCheck struct {
	cred     *churnCred
	key      int16 // index into cred.keys
	sent     time.Time
	recv     time.Time
	allowed  bool
	notReady bool
}

type churn struct {
	e      *env
	mu     sync.Mutex
	creds  map[string]*churnCred
	order  []*churnCred
	checks []churnCheck
	errors atomic.Int64
	// propagation is, per disable and delete, the time from the acknowledgement until both data
	// planes refused the key.
	propMu      sync.Mutex
	propagation []time.Duration
	// overtaken counts the measurements the credential's next change ended first.
	overtaken  atomic.Int64
	mutations  [5]atomic.Int64
	failedMuts atomic.Int64
	errMu      sync.Mutex
	errSample  string
	// bg holds the propagation measurements still running.
	bg sync.WaitGroup
}

func (c *churn) cred(name string) *churnCred {
	c.mu.Lock()
	defer c.mu.Unlock()
	cr := c.creds[name]
	if cr == nil {
		cr = &churnCred{name: name}
		c.creds[name] = cr
		c.order = append(c.order, cr)
	}
	return cr
}

// watchWorld records ApiKey observations and Secret keys in namespace ns through an informer
// cache, timestamped on arrival.
func (c *churn) watchWorld(ctx context.Context, ns string) error {
	ca, err := cache.New(c.e.rest, cache.Options{Scheme: testenv.Scheme(), DefaultNamespaces: map[string]cache.Config{ns: {}}})
	if err != nil {
		return err
	}
	keyInf, err := ca.GetInformer(ctx, &keycapv1alpha1.ApiKey{})
	if err != nil {
		return err
	}
	onKey := func(obj any, deleted bool) {
		if d, ok := obj.(toolscache.DeletedFinalStateUnknown); ok {
			obj = d.Obj
		}
		k, ok := obj.(*keycapv1alpha1.ApiKey)
		if !ok {
			return
		}
		o := observation{at: time.Now(), deleted: deleted}
		ready := meta.FindStatusCondition(k.Status.Conditions, "Ready")
		o.live = !deleted && !k.Spec.Disabled && ready != nil && ready.Status == metav1.ConditionTrue &&
			ready.ObservedGeneration == k.Generation && k.DeletionTimestamp == nil
		if len(k.Status.Digests) > 0 {
			o.current = k.Status.Digests[0]
		}
		if len(k.Status.Digests) > 1 && k.Status.PreviousKeyValidUntil != nil {
			o.previous, o.previousUntil = k.Status.Digests[1], k.Status.PreviousKeyValidUntil.Time
		}
		cr := c.cred(k.Name)
		cr.mu.Lock()
		cr.obs = append(cr.obs, o)
		cr.mu.Unlock()
	}
	if _, err := keyInf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc:    func(o any) { onKey(o, false) },
		UpdateFunc: func(_, o any) { onKey(o, false) },
		DeleteFunc: func(o any) { onKey(o, true) },
	}); err != nil {
		return err
	}
	secInf, err := ca.GetInformer(ctx, &corev1.Secret{})
	if err != nil {
		return err
	}
	onSecret := func(obj any) {
		s, ok := obj.(*corev1.Secret)
		if !ok {
			return
		}
		v := string(s.Data["api-key"])
		if v == "" {
			return
		}
		cr := c.cred(s.Name)
		cr.mu.Lock()
		if !slices.Contains(cr.keys, v) {
			cr.keys = append(cr.keys, v)
		}
		cr.mu.Unlock()
	}
	if _, err := secInf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc: onSecret, UpdateFunc: func(_, o any) { onSecret(o) },
	}); err != nil {
		return err
	}
	go func() { _ = ca.Start(ctx) }()
	if !ca.WaitForCacheSync(ctx) {
		return fmt.Errorf("the churn watch did not sync")
	}
	return nil
}

func (c *churn) mutate(ctx context.Context, kind mutKind, cr *churnCred) {
	obj := &keycapv1alpha1.ApiKey{ObjectMeta: metav1.ObjectMeta{Namespace: "churn", Name: cr.name}}
	m := mutation{kind: kind, sent: time.Now()}
	cr.mu.Lock()
	cr.muts = append(cr.muts, m)
	i := len(cr.muts) - 1
	cr.mu.Unlock()
	var err error
	switch kind {
	case mutCreate:
		obj.Spec.Scopes = []string{"chaos:read"}
		obj.Spec.Rotation = &keycapv1alpha1.RotationPolicy{Every: metav1.Duration{Duration: time.Hour}, GracePeriod: &metav1.Duration{Duration: 10 * time.Second}}
		err = c.e.cl.Create(ctx, obj)
	case mutDisable:
		err = c.e.cl.Patch(ctx, obj, mergePatch(`{"spec":{"disabled":true}}`))
	case mutEnable:
		err = c.e.cl.Patch(ctx, obj, mergePatch(`{"spec":{"disabled":null}}`))
	case mutRotate:
		err = c.e.cl.Patch(ctx, obj, mergePatch(fmt.Sprintf(`{"metadata":{"annotations":{%q:%q}}}`, keycapv1alpha1.AnnotationRotate, time.Now().Format(time.RFC3339Nano))))
	case mutDelete:
		err = c.e.cl.Delete(ctx, obj)
	}
	if err != nil {
		c.failedMuts.Add(1)
		return
	}
	c.mutations[kind].Add(1)
	ack := time.Now()
	cr.mu.Lock()
	cr.muts[i].ack = ack
	if kind == mutDelete {
		cr.gone = ack
	}
	key := ""
	if len(cr.keys) > 0 {
		key = cr.keys[len(cr.keys)-1]
	}
	cr.mu.Unlock()
	if (kind == mutDisable || kind == mutDelete) && key != "" {
		c.bg.Add(1)
		go func() { defer c.bg.Done(); c.measure(ctx, cr, i, key, ack) }()
	}
}

// measure polls both data planes every 20 ms until they refuse key, recording the checks. A
// measurement overtaken by the credential's next change (an enable after the disable: allowing
// is then right) ends without a figure, counted apart.
func (c *churn) measure(ctx context.Context, cr *churnCred, mut int, key string, ack time.Time) {
	chk := newChecker()
	refused := make([]bool, len(c.e.dps))
	for time.Since(ack) < 30*time.Second && ctx.Err() == nil {
		cr.mu.Lock()
		overtaken := len(cr.muts) > mut+1
		cr.mu.Unlock()
		if overtaken {
			c.overtaken.Add(1)
			return
		}
		all := true
		for i, dp := range c.e.dps {
			if refused[i] {
				continue
			}
			ok, notReady, err := c.checkKey(ctx, chk, dp, cr, key)
			if err == nil && !ok && !notReady {
				refused[i] = true
			} else {
				all = false
			}
		}
		if all {
			c.propMu.Lock()
			c.propagation = append(c.propagation, time.Since(ack))
			c.propMu.Unlock()
			return
		}
		time.Sleep(20 * time.Millisecond) // polling another process
	}
}

// checkKey checks key of cr on dp over gRPC and records the check.
func (c *churn) checkKey(ctx context.Context, chk *checker, dp *keycap, cr *churnCred, key string) (allowed, notReady bool, err error) {
	cl, err := chk.grpcClient(dp.grpc)
	if err != nil {
		return false, false, err
	}
	sent := time.Now()
	resp, err := cl.Check(ctx, &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Method: "GET", Path: "/churn", Host: "api.example", Headers: map[string]string{"x-api-key": key},
		}},
		ContextExtensions: map[string]string{"keycap.dev/scopes": "chaos:read"},
	}})
	recv := time.Now()
	if err != nil {
		c.errors.Add(1)
		c.errMu.Lock()
		if c.errSample == "" {
			c.errSample = err.Error()
		}
		c.errMu.Unlock()
		return false, false, err
	}
	allowed = resp.GetOkResponse() != nil
	notReady = resp.GetStatus().GetMessage() == "NOT_READY"
	cr.mu.Lock()
	ki := slices.Index(cr.keys, key)
	cr.mu.Unlock()
	c.mu.Lock()
	c.checks = append(c.checks, churnCheck{cred: cr, key: int16(ki), sent: sent, recv: recv, allowed: allowed, notReady: notReady})
	c.mu.Unlock()
	return allowed, notReady, nil
}

// capacity measures one data plane's closed-loop gRPC Check throughput for 3 s.
func capacity(ctx context.Context, dp *keycap, p probe) float64 {
	chk := newChecker()
	var n atomic.Int64
	var wg sync.WaitGroup
	stop := time.Now().Add(3 * time.Second)
	for range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(stop) {
				if v := chk.check(ctx, dp, true, p); v.err == nil {
					n.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	return float64(n.Load()) / 3
}

func churnSoak(ctx context.Context, e *env) ([]row, error) {
	if err := e.cl.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "churn"}}); err != nil {
		return nil, err
	}
	c := &churn{e: e, creds: map[string]*churnCred{}}
	wctx, wcancel := context.WithCancel(ctx)
	defer wcancel()
	if err := c.watchWorld(wctx, "churn"); err != nil {
		return nil, err
	}
	capa := capacity(ctx, e.dps[0], e.probes[0])
	checkRate := max(int(capa/2), 10)
	say("  one data plane's capacity %.0f checks/s; checking at %d/s for %s", capa, checkRate, e.cfg.soak)

	start := time.Now()
	sctx, scancel := context.WithTimeout(ctx, e.cfg.soak)
	defer scancel()
	var wg sync.WaitGroup
	// Mutations: 22 a second from a pool of about 150 credentials.
	next := 0
	mutTick := time.NewTicker(45 * time.Millisecond) // 22 a second asked, so that ≥ 20 are acknowledged
	defer mutTick.Stop()
	mutSem := make(chan struct{}, 16)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for sctx.Err() == nil {
			select {
			case <-sctx.Done():
				return
			case <-mutTick.C:
			}
			c.mu.Lock()
			var live, disabled []*churnCred
			for _, cr := range c.order {
				cr.mu.Lock()
				if cr.gone.IsZero() && len(cr.keys) > 0 && len(cr.muts) > 0 && !cr.muts[len(cr.muts)-1].ack.IsZero() {
					if cr.muts[len(cr.muts)-1].kind == mutDisable {
						disabled = append(disabled, cr)
					} else {
						live = append(live, cr)
					}
				}
				cr.mu.Unlock()
			}
			c.mu.Unlock()
			var kind mutKind
			var cr *churnCred
			r := rand.IntN(100)
			switch {
			case len(live)+len(disabled) < 150 && r < 40 || len(live) == 0:
				kind, cr = mutCreate, c.cred(fmt.Sprintf("churn-%05d", next))
				next++
			case r < 55 && len(disabled) > 0:
				kind, cr = mutEnable, disabled[rand.IntN(len(disabled))]
			case r < 70:
				kind, cr = mutDisable, live[rand.IntN(len(live))]
			case r < 85:
				kind, cr = mutRotate, live[rand.IntN(len(live))]
			default:
				pool := append(live, disabled...)
				kind, cr = mutDelete, pool[rand.IntN(len(pool))]
			}
			select {
			case mutSem <- struct{}{}:
			default:
				c.failedMuts.Add(1) // 16 mutations outstanding: the apiserver is behind
				continue
			}
			wg.Add(1)
			go func() { defer wg.Done(); defer func() { <-mutSem }(); c.mutate(sctx, kind, cr) }()
		}
	}()
	// Checks: random keys of random credentials (live, disabled, deleted within 20 s, rotated
	// out), from a pool of workers paced by one limiter.
	limiter := rate.NewLimiter(rate.Limit(checkRate), checkRate/10+1)
	chk := newChecker()
	var sent atomic.Int64
	for w := range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), uint64(time.Now().UnixNano())))
			for i := 0; limiter.Wait(sctx) == nil; i++ {
				c.mu.Lock()
				n := len(c.order)
				var cr *churnCred
				if n > 0 {
					cr = c.order[n-1-rng.IntN(min(n, 400))]
				}
				c.mu.Unlock()
				if cr == nil {
					continue
				}
				cr.mu.Lock()
				if len(cr.keys) == 0 || (!cr.gone.IsZero() && time.Since(cr.gone) > 20*time.Second) {
					cr.mu.Unlock()
					continue
				}
				key := cr.keys[len(cr.keys)-1]
				if rng.IntN(4) == 0 {
					key = cr.keys[rng.IntN(len(cr.keys))]
				}
				cr.mu.Unlock()
				sent.Add(1)
				_, _, _ = c.checkKey(context.WithoutCancel(sctx), chk, e.dps[(w+i)%len(e.dps)], cr, key)
			}
		}()
	}
	wg.Wait()
	took := time.Since(start)
	c.bg.Wait()
	time.Sleep(2 * time.Second) // the last watch events arrive
	wcancel()

	decisions, wrong, wrongAllow, wrongRefuse, judged := c.judge(e.cfg.bound)
	var muts int64
	for i := range c.mutations {
		muts += c.mutations[i].Load()
	}
	c.propMu.Lock()
	prop := slices.Clone(c.propagation)
	c.propMu.Unlock()
	fig := fmt.Sprintf("%.1f mutations/s acknowledged (%d: create %d, disable %d, enable %d, rotate %d, delete %d; %d failed or shed); "+
		"wrong: allowed after revocation %d, refused while live %d (%d of the decisions fell where the definition judges them); "+
		"disable/delete to refused on both data planes p50 %s, p99 %s, max %s over %d (%d more overtaken by the credential's next change before both refused)",
		float64(muts)/took.Seconds(), muts, c.mutations[0].Load(), c.mutations[1].Load(), c.mutations[2].Load(), c.mutations[3].Load(), c.mutations[4].Load(),
		c.failedMuts.Load(), wrongAllow, wrongRefuse, judged, ms(pct(prop, 50)), ms(pct(prop, 99)), ms(pctMax(prop)), len(prop), c.overtaken.Load())
	if c.errSample != "" {
		fig += "; first error: " + c.errSample
	}
	return []row{{
		scenario: "8. churn soak",
		load: fmt.Sprintf("22 mutations/s asked; checks asked at %d/s (half of one data plane's measured %.0f/s), %.0f/s sent, over 2 data planes",
			checkRate, capa, float64(sent.Load())/took.Seconds()),
		duration: took, decisions: decisions, wrong: wrong, errors: c.errors.Load(),
		figure: fig,
	}}, nil
}

func pctMax(d []time.Duration) time.Duration {
	if len(d) == 0 {
		return 0
	}
	return slices.Max(d)
}

// judge applies issue 14's definition to every check: wrong when allowed more than bound after a
// disable or delete was acknowledged (or after a rotated-out key's grace ended), or refused while
// the credential had been Ready and enabled, with this key current, for longer than bound and
// nothing was asked of it since.
func (c *churn) judge(bound time.Duration) (decisions, wrong, wrongAllow, wrongRefuse, judged int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, cr := range c.order {
		cr.mu.Lock() // the watches have stopped: nothing changes any more
		defer cr.mu.Unlock()
	}
	for _, ch := range c.checks {
		if ch.notReady {
			continue
		}
		decisions++
		cr := ch.cred
		if ch.key < 0 || int(ch.key) >= len(cr.keys) {
			continue
		}
		d := digest(cr.keys[ch.key])
		mustRefuse, mustAllow := false, false

		// The last mutation acknowledged more than bound before the check was sent.
		var last *mutation
		pendingAfter := false
		for i := range cr.muts {
			m := &cr.muts[i]
			if !m.ack.IsZero() && m.ack.Add(bound).Before(ch.sent) {
				last = m
			} else if m.sent.Before(ch.recv) {
				pendingAfter = true
			}
		}
		if last != nil && (last.kind == mutDisable || last.kind == mutDelete) && !pendingAfter {
			mustRefuse = true
		}
		// A key rotated out: refused once its grace period (or, without one, its removal) is more
		// than bound old.
		wasCurrent := false
		for _, o := range cr.obs {
			if o.current == d {
				wasCurrent = true
				continue
			}
			if !wasCurrent || o.deleted {
				continue
			}
			end := o.at
			if o.previous == d {
				end = o.previousUntil
			}
			if end.Add(bound).Before(ch.sent) {
				mustRefuse = true
			}
			break
		}
		// Live: the latest observation more than bound before the send shows this key current
		// and the credential Ready and enabled, and nothing was pending since.
		var at *observation
		for i := range cr.obs {
			if cr.obs[i].at.Add(bound).Before(ch.sent) {
				at = &cr.obs[i]
			}
		}
		if at != nil && at.live && at.current == d {
			quiet := true
			for _, m := range cr.muts {
				if m.sent.Before(ch.recv) && (m.ack.IsZero() || m.ack.After(at.at)) {
					quiet = false
				}
			}
			for _, o := range cr.obs {
				if o.at.After(at.at) && o.at.Before(ch.recv) && (!o.live || o.current != d) {
					quiet = false
				}
			}
			mustAllow = quiet && !mustRefuse
		}
		if mustRefuse || mustAllow {
			judged++
		}
		switch {
		case mustRefuse && ch.allowed:
			wrong++
			wrongAllow++
		case mustAllow && !ch.allowed:
			wrong++
			wrongRefuse++
		}
	}
	return decisions, wrong, wrongAllow, wrongRefuse, judged
}

var _ client.Object = &keycapv1alpha1.ApiKey{}

package main

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"sigs.k8s.io/controller-runtime/pkg/client"

	keycapv1alpha1 "github.com/keycap-dev/keycap/api/v1alpha1"
	"github.com/keycap-dev/keycap/internal/signing"
)

func ms(d time.Duration) string { return fmt.Sprintf("%.0f ms", float64(d)/float64(time.Millisecond)) }
func secs(d time.Duration) string {
	return fmt.Sprintf("%.1f s", d.Seconds())
}

func digest(key string) string {
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:])
}

func mergePatch(patch string) client.Patch {
	return client.RawPatch("application/merge-patch+json", []byte(patch))
}

func restarts(ks []*keycap) int64 {
	var n int64
	for _, k := range ks {
		n += k.restarts.Load()
	}
	return n
}

// ---- 1. fail closed while starting ----

// failClosedStart restarts a data plane twice (SIGTERM, then SIGKILL) while an active and a
// disabled ApiKey are checked every 20 ms on both transports. After each check the data plane's
// own readiness probe is asked: an allow followed by "not ready" is an allow before ready.
func failClosedStart(ctx context.Context, e *env) ([]row, error) {
	dp := e.dps[0]
	probes := []probe{e.probes[0], e.probes[1]} // the active and the disabled ApiKey
	chk := newChecker()
	var t tally
	var beforeReady, disabledAllowed, fiveXX atomic.Int64
	var stopped atomic.Bool
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for i := 0; !stopped.Load(); i++ {
			<-tick.C
			p := probes[i%2]
			v := chk.check(ctx, dp, (i/2)%2 == 0, p)
			ready := dp.ready()
			switch {
			case v.allowed && !p.allow:
				disabledAllowed.Add(1)
			case v.allowed && !ready:
				beforeReady.Add(1)
			case v.err == nil && v.status >= 500 && v.reason != "NOT_READY":
				fiveXX.Add(1)
			}
			t.judge(v, p.allow, p.what)
		}
	}()
	start := time.Now()
	var back []time.Duration
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGKILL} {
		time.Sleep(2 * time.Second) // checks against the running data plane first
		t0 := dp.kill(sig)
		time.Sleep(200 * time.Millisecond) // until the supervisor has it starting again
		if err := dp.waitReady(ctx, 2*time.Minute); err != nil {
			stopped.Store(true)
			wg.Wait()
			return nil, err
		}
		back = append(back, time.Since(t0))
	}
	time.Sleep(2 * time.Second)
	stopped.Store(true)
	wg.Wait()
	return []row{{
		scenario: "1. fail closed while starting (data plane SIGTERM, then SIGKILL)",
		load:     "1 check / 20 ms, active + disabled ApiKey, gRPC + HTTP",
		duration: time.Since(start), decisions: t.decisions.Load(), wrong: t.wrong.Load(), errors: t.errors.Load(),
		figure: fmt.Sprintf("allowed before ready %d, disabled key allowed %d, 5xx other than NOT_READY's 503 %d; %d NOT_READY denials, %d refused connections; ready again %s / %s after the signal",
			beforeReady.Load(), disabledAllowed.Load(), fiveXX.Load(), t.notReady.Load(), t.refused.Load(), secs(back[0]), secs(back[1])),
	}}, nil
}

// ---- 2. apiserver frozen and killed; 3. etcd restarted ----

// withLoad runs checks at e.cfg.rate over both data planes and every fixture while fn runs.
func withLoad(ctx context.Context, e *env, fn func() error) (*tally, time.Duration, error) {
	var t tally
	lctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { newChecker().run(lctx, e.cfg.rate, e.dps, e.probes, &t); close(done) }()
	start := time.Now()
	err := fn()
	cancel()
	<-done
	return &t, time.Since(start), err
}

// newRevocable creates an ApiKey and waits until both data planes allow it.
func newRevocable(ctx context.Context, e *env, name string) (string, error) {
	k := &keycapv1alpha1.ApiKey{ObjectMeta: metav1.ObjectMeta{Namespace: "chaos", Name: name},
		Spec: keycapv1alpha1.ApiKeySpec{CredentialSpec: keycapv1alpha1.CredentialSpec{Scopes: []string{"chaos:read"}}}}
	if err := retry(ctx, time.Minute, func() error { return e.cl.Create(ctx, k) }); err != nil {
		return "", err
	}
	var key string
	if err := retry(ctx, 2*time.Minute, func() error {
		s := &corev1.Secret{}
		if err := e.cl.Get(ctx, client.ObjectKey{Namespace: "chaos", Name: name}, s); err != nil {
			return err
		}
		if key = string(s.Data["api-key"]); key == "" {
			return errors.New("no key yet")
		}
		return nil
	}); err != nil {
		return "", err
	}
	p := apiKeyProbe(key)
	chk := newChecker()
	for _, dp := range e.dps {
		if err := retry(ctx, 2*time.Minute, func() error {
			if !chk.check(ctx, dp, true, p).allowed {
				return fmt.Errorf("%s not allowed on %s", name, dp.name)
			}
			return nil
		}); err != nil {
			return "", err
		}
	}
	return key, nil
}

func apiKeyProbe(key string) probe {
	return probe{what: "ApiKey", headers: map[string]string{"x-api-key": key}, ext: map[string]string{"keycap.dev/scopes": "chaos:read"}, query: "?scopes=chaos:read", allow: true}
}

// disableAndTime disables the ApiKey name (retrying until the apiserver acknowledges it) and
// returns the time from the acknowledgement until every data plane refuses key.
func disableAndTime(ctx context.Context, e *env, name, key string, del bool) (ack, visible time.Duration, err error) {
	obj := &keycapv1alpha1.ApiKey{ObjectMeta: metav1.ObjectMeta{Namespace: "chaos", Name: name}}
	t0 := time.Now()
	if err := retry(ctx, 2*time.Minute, func() error {
		if del {
			return e.cl.Delete(ctx, obj)
		}
		return e.cl.Patch(ctx, obj, mergePatch(`{"spec":{"disabled":true}}`))
	}); err != nil {
		return 0, 0, err
	}
	acked := time.Now()
	p := apiKeyProbe(key)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var slowest time.Duration
	var failed error
	for _, dp := range e.dps {
		wg.Add(1)
		go func() {
			defer wg.Done()
			chk := newChecker()
			for {
				if v := chk.check(ctx, dp, true, p); v.err == nil && !v.allowed && v.reason != "NOT_READY" {
					break
				}
				if time.Since(acked) > time.Minute {
					mu.Lock()
					failed = fmt.Errorf("%s still allowed on %s a minute after the apiserver acknowledged", name, dp.name)
					mu.Unlock()
					return
				}
				time.Sleep(2 * time.Millisecond) // polling another process
			}
			d := time.Since(acked)
			mu.Lock()
			slowest = max(slowest, d)
			mu.Unlock()
		}()
	}
	wg.Wait()
	return acked.Sub(t0), slowest, failed
}

func apiserverOutage(ctx context.Context, e *env) ([]row, error) {
	key, err := newRevocable(ctx, e, "revoke-apiserver")
	if err != nil {
		return nil, err
	}
	opRestarts := restarts(e.ops)
	var ackAfter, visible, downFor time.Duration
	t, took, err := withLoad(ctx, e, func() error {
		time.Sleep(3 * time.Second)
		say("  SIGSTOP kube-apiserver for %s", e.cfg.outage)
		if err := e.cp.signal("kube-apiserver", syscall.SIGSTOP); err != nil {
			return err
		}
		time.Sleep(e.cfg.outage)
		if err := e.cp.signal("kube-apiserver", syscall.SIGCONT); err != nil {
			return err
		}
		time.Sleep(5 * time.Second)
		say("  SIGKILL kube-apiserver, down for %s", e.cfg.outage)
		restart, err := e.cp.kill("kube-apiserver", syscall.SIGKILL)
		if err != nil {
			return err
		}
		t0 := time.Now()
		time.Sleep(e.cfg.outage)
		if err := restart(); err != nil {
			return err
		}
		if err := e.cp.waitReady(ctx, 3*time.Minute); err != nil {
			return err
		}
		downFor = time.Since(t0)
		ackAfter, visible, err = disableAndTime(ctx, e, "revoke-apiserver", key, false)
		time.Sleep(2 * time.Second)
		return err
	})
	return []row{{
		scenario: "2. kube-apiserver frozen (SIGSTOP), then killed",
		load:     fmt.Sprintf("%d checks/s, 9 probes of 4 kinds, 2 data planes, gRPC + HTTP", e.cfg.rate),
		duration: took, decisions: t.decisions.Load(), wrong: t.wrong.Load(), errors: t.errors.Load(),
		figure: fmt.Sprintf("frozen %s, then down %s; after it returned a disable was acknowledged in %s and refused by both data planes %s later; operator restarts (lost lease) %d%s",
			secs(e.cfg.outage), secs(downFor), ms(ackAfter), ms(visible), restarts(e.ops)-opRestarts, sampleNote(t)),
	}}, err
}

func sampleNote(t *tally) string {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.samples) == 0 {
		return ""
	}
	return "; e.g. " + t.samples[0]
}

func etcdRestart(ctx context.Context, e *env) ([]row, error) {
	key, err := newRevocable(ctx, e, "revoke-etcd")
	if err != nil {
		return nil, err
	}
	opRestarts := restarts(e.ops)
	var ackAfter, visible, downFor time.Duration
	down := e.cfg.outage / 3
	t, took, err := withLoad(ctx, e, func() error {
		time.Sleep(3 * time.Second)
		say("  restarting etcd (SIGTERM, down %s)", down)
		restart, err := e.cp.kill("etcd", syscall.SIGTERM)
		if err != nil {
			return err
		}
		t0 := time.Now()
		time.Sleep(down)
		if err := restart(); err != nil {
			return err
		}
		if err := e.cp.waitReady(ctx, 3*time.Minute); err != nil {
			return err
		}
		downFor = time.Since(t0)
		ackAfter, visible, err = disableAndTime(ctx, e, "revoke-etcd", key, false)
		time.Sleep(2 * time.Second)
		return err
	})
	return []row{{
		scenario: "3. etcd restarted",
		load:     fmt.Sprintf("%d checks/s, 9 probes of 4 kinds, 2 data planes, gRPC + HTTP", e.cfg.rate),
		duration: took, decisions: t.decisions.Load(), wrong: t.wrong.Load(), errors: t.errors.Load(),
		figure: fmt.Sprintf("etcd down %s, apiserver ready %s after the stop; a disable was then acknowledged in %s and refused by both data planes %s later; operator restarts %d%s",
			secs(down), secs(downFor), ms(ackAfter), ms(visible), restarts(e.ops)-opRestarts, sampleNote(t)),
	}}, err
}

// ---- 4. operator killed mid-work; 5. leader failover ----

// leader returns the operator holding the lease, waiting up to timeout for one.
func (e *env) leader(ctx context.Context, timeout time.Duration) (*keycap, error) {
	deadline := time.Now().Add(timeout)
	for {
		for _, op := range e.ops {
			if op.isLeader() {
				return op, nil
			}
		}
		if time.Now().After(deadline) {
			return nil, errors.New("no operator holds the lease")
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// secretHistory records every distinct value of one data key of the Secrets in namespace ns, in
// order, as the watch delivers them.
type secretHistory struct {
	mu     sync.Mutex
	values map[string][]string
	// writes counts the Secret versions seen per name.
	stop func()
}

func watchSecrets(ctx context.Context, e *env, ns string) (*secretHistory, error) {
	h := &secretHistory{values: map[string][]string{}}
	ctx, cancel := context.WithCancel(ctx)
	h.stop = cancel
	w, err := e.cl.Watch(ctx, &corev1.SecretList{}, client.InNamespace(ns))
	if err != nil {
		cancel()
		return nil, err
	}
	go func() {
		defer w.Stop()
		rv := ""
		for {
			for ev := range w.ResultChan() {
				s, ok := ev.Object.(*corev1.Secret)
				if !ok || ev.Type == watch.Deleted {
					continue
				}
				rv = s.ResourceVersion
				for _, dk := range []string{"api-key", "agent-key", "token", "license-key", signing.SecretDataKey} {
					if v := string(s.Data[dk]); v != "" {
						h.mu.Lock()
						if vs := h.values[s.Name]; len(vs) == 0 || vs[len(vs)-1] != v {
							h.values[s.Name] = append(vs, v)
						}
						h.mu.Unlock()
					}
				}
			}
			if ctx.Err() != nil {
				return
			}
			// The watch ended (apiserver restart, timeout): resume from the last version seen.
			for ctx.Err() == nil {
				if w, err = e.cl.Watch(ctx, &corev1.SecretList{}, client.InNamespace(ns), &client.ListOptions{Raw: &metav1.ListOptions{ResourceVersion: rv}}); err == nil {
					break
				}
				time.Sleep(time.Second)
			}
		}
	}()
	return h, nil
}

func (h *secretHistory) of(name string) []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.values[name])
}

// operatorKilled kills the leader with SIGKILL right after asking for an ApiKey rotation, in the
// middle of a burst of licence activations, while an AppToken renews every ~30 s; three times.
func operatorKilled(ctx context.Context, e *env) ([]row, error) {
	const trials = 3
	hist, err := watchSecrets(ctx, e, "chaos")
	if err != nil {
		return nil, err
	}
	defer hist.stop()
	keyHist, err := watchSecrets(ctx, e, operatorNamespace)
	if err != nil {
		return nil, err
	}
	defer keyHist.stop()
	start := time.Now()
	renewing := &keycapv1alpha1.AppToken{ObjectMeta: metav1.ObjectMeta{Namespace: "chaos", Name: "renewing"},
		Spec: keycapv1alpha1.AppTokenSpec{CredentialSpec: keycapv1alpha1.CredentialSpec{Scopes: []string{"chaos:read"}},
			Subject: "chaos", Audiences: []string{"https://api.example"},
			Duration: &metav1.Duration{Duration: time.Minute}, RenewBefore: &metav1.Duration{Duration: 30 * time.Second}}}
	if err := retry(ctx, time.Minute, func() error { return e.cl.Create(ctx, renewing) }); err != nil {
		return nil, err
	}
	chk := newChecker()
	var t tally
	var problems []string
	var takeovers []time.Duration
	activationsExact, graceKept, rotatedBeforeKill := 0, 0, 0
	for i := range trials {
		name := fmt.Sprintf("rotating-%d", i)
		k := &keycapv1alpha1.ApiKey{ObjectMeta: metav1.ObjectMeta{Namespace: "chaos", Name: name},
			Spec: keycapv1alpha1.ApiKeySpec{CredentialSpec: keycapv1alpha1.CredentialSpec{Scopes: []string{"chaos:read"}},
				OpaqueKeySpec: keycapv1alpha1.OpaqueKeySpec{Rotation: &keycapv1alpha1.RotationPolicy{
					Every: metav1.Duration{Duration: time.Hour}, GracePeriod: &metav1.Duration{Duration: 5 * time.Minute}}}}}
		if err := retry(ctx, time.Minute, func() error { return e.cl.Create(ctx, k) }); err != nil {
			return nil, err
		}
		lic := &keycapv1alpha1.License{ObjectMeta: metav1.ObjectMeta{Namespace: "chaos", Name: fmt.Sprintf("seats-%d", i)},
			Spec: keycapv1alpha1.LicenseSpec{Product: "chaos", MaxInstances: 5}}
		if err := retry(ctx, time.Minute, func() error { return e.cl.Create(ctx, lic) }); err != nil {
			return nil, err
		}
		var old, licKey string
		if err := retry(ctx, 2*time.Minute, func() error {
			vs, ls := hist.of(name), hist.of(lic.Name)
			if len(vs) == 0 || len(ls) == 0 {
				return errors.New("not issued yet")
			}
			old, licKey = vs[0], ls[0]
			return nil
		}); err != nil {
			return nil, err
		}
		for _, dp := range e.dps {
			if err := retry(ctx, 2*time.Minute, func() error {
				if !chk.check(ctx, dp, true, apiKeyProbe(old)).allowed {
					return errors.New("not allowed yet")
				}
				return nil
			}); err != nil {
				return nil, fmt.Errorf("%s: %w", name, err)
			}
		}
		// Both data planes know the licence (an unknown instance is NOT_ACTIVATED, not NOT_FOUND).
		for _, dp := range e.dps {
			p := probe{what: "License", headers: map[string]string{"licensekey": licKey, "instanceid": "unknown"}}
			if err := retry(ctx, 2*time.Minute, func() error {
				if v := chk.check(ctx, dp, true, p); v.err != nil || v.reason == "NOT_FOUND" {
					return fmt.Errorf("licence not known yet (%s): %w", v.reason, v.err)
				}
				return nil
			}); err != nil {
				return nil, fmt.Errorf("%s on %s: %w", lic.Name, dp.name, err)
			}
		}
		leader, err := e.leader(ctx, time.Minute)
		if err != nil {
			return nil, err
		}
		// The burst: 20 instances race for 5 seats through both data planes.
		var wins atomic.Int64
		var won sync.Map
		var burst sync.WaitGroup
		for j := range 20 {
			burst.Add(1)
			go func() {
				defer burst.Done()
				inst := fmt.Sprintf("node-%d", j)
				if activate(ctx, chk.hc, e.dps[j%2], licKey, inst) == nil {
					wins.Add(1)
					won.Store(inst, true)
				}
			}()
		}
		if err := e.cl.Patch(ctx, k, mergePatch(fmt.Sprintf(`{"metadata":{"annotations":{%q:%q}}}`, keycapv1alpha1.AnnotationRotate, time.Now().Format(time.RFC3339Nano)))); err != nil {
			return nil, err
		}
		time.Sleep(time.Duration(rand.IntN(150)) * time.Millisecond)
		killed := leader.kill(syscall.SIGKILL)
		if len(hist.of(name)) > 1 {
			rotatedBeforeKill++
		}
		say("  trial %d: killed %s (the leader) after the rotation request", i, leader.name)
		burst.Wait()
		next, err := e.leader(ctx, 2*time.Minute)
		if err != nil {
			return nil, err
		}
		takeovers = append(takeovers, time.Since(killed))
		_ = next

		// The rotation completes exactly once: the Secret holds old, then one new key, and the
		// status lists both with the grace period.
		var current string
		if err := retry(ctx, 2*time.Minute, func() error {
			vs := hist.of(name)
			if len(vs) < 2 {
				return errors.New("not rotated yet")
			}
			current = vs[len(vs)-1]
			got := &keycapv1alpha1.ApiKey{}
			if err := e.cl.Get(ctx, client.ObjectKeyFromObject(k), got); err != nil {
				return err
			}
			if !slices.Equal(got.Status.Digests, []string{digest(current), digest(old)}) || got.Status.PreviousKeyValidUntil == nil {
				return fmt.Errorf("status digests %v", got.Status.Digests)
			}
			return nil
		}); err != nil {
			problems = append(problems, fmt.Sprintf("%s: %v", name, err))
			continue
		}
		time.Sleep(3 * time.Second) // anything a second writer would do shows up by now
		if vs := hist.of(name); len(vs) != 2 || vs[0] != old {
			problems = append(problems, fmt.Sprintf("%s: the Secret held %d keys (want the old and one new)", name, len(vs)))
		}
		for _, dp := range e.dps {
			for _, key := range []string{current, old} { // the old key is in its grace period
				if err := retry(ctx, time.Minute, func() error {
					if v := chk.check(ctx, dp, true, apiKeyProbe(key)); v.err != nil || !v.allowed {
						return fmt.Errorf("refused (%s)", v.reason)
					}
					return nil
				}); err != nil {
					t.wrong.Add(1)
					problems = append(problems, fmt.Sprintf("%s on %s: %v", name, dp.name, err))
				}
				t.decisions.Add(1)
			}
		}
		graceKept++
		// Seats: exactly 5 activations won, and the status holds exactly those.
		got := &keycapv1alpha1.License{}
		if err := e.cl.Get(ctx, client.ObjectKeyFromObject(lic), got); err != nil {
			return nil, err
		}
		recorded := 0
		for _, a := range got.Status.Activations {
			if _, ok := won.Load(a.InstanceID); ok {
				recorded++
			}
		}
		if wins.Load() == 5 && len(got.Status.Activations) == 5 && recorded == 5 {
			activationsExact++
		} else {
			problems = append(problems, fmt.Sprintf("%s: %d activations won, %d in status (%d of the winners)", lic.Name, wins.Load(), len(got.Status.Activations), recorded))
		}
	}
	// The AppToken renewed throughout: every token it held was distinct and the current one works.
	tokens := hist.of("renewing")
	distinct := map[string]bool{}
	for _, tok := range tokens {
		distinct[tok] = true
	}
	if len(tokens) > 0 {
		p := probe{what: "AppToken", headers: map[string]string{"authorization": "Bearer " + tokens[len(tokens)-1]}, allow: true}
		for _, dp := range e.dps {
			if err := retry(ctx, time.Minute, func() error {
				if v := chk.check(ctx, dp, true, p); !v.allowed {
					return fmt.Errorf("refused (%s): %w", v.reason, v.err)
				}
				return nil
			}); err != nil {
				t.wrong.Add(1)
				problems = append(problems, "the current AppToken on "+dp.name+": "+err.Error())
			}
			t.decisions.Add(1)
		}
	}
	// Every AppToken still unexpired verifies on both data planes, whichever signing key signed
	// it: a replaced key stays published.
	signers := map[string]bool{}
	for i, tok := range tokens {
		kid, exp := jwtKeyIDAndExpiry(tok)
		signers[kid] = true
		if i == len(tokens)-1 || time.Until(exp) < 5*time.Second {
			continue // the current token is checked above; an expiring one proves nothing
		}
		p := probe{what: "AppToken", headers: map[string]string{"authorization": "Bearer " + tok}, allow: true}
		for _, dp := range e.dps {
			if v := chk.check(ctx, dp, true, p); !v.allowed {
				t.wrong.Add(1)
				problems = append(problems, fmt.Sprintf("an earlier AppToken (key %s) on %s: refused (%s)", kid, dp.name, v.reason))
			}
			t.decisions.Add(1)
		}
	}
	rotations, keyProblems := judgeSigningKeys(keyHist.of(signing.SecretName), e.cfg.signingKeyRotation)
	problems = append(problems, keyProblems...)
	fig := fmt.Sprintf("%d kills of the leader 0-150 ms after a rotation request (the new key was already in the Secret at %d of them): rotations completed exactly once with the grace kept %d/%d, keys lost or changed 0 unless listed; activations exact %d/%d; AppToken renewed %d times over the run, %d distinct tokens, signed by %d signing keys; signing key rotated %d times (every %s) across the kills: keys changed, lost or issued twice 0 unless listed; takeover %s",
		trials, rotatedBeforeKill, graceKept, trials, activationsExact, trials, len(tokens)-1, len(distinct), len(signers), rotations, e.cfg.signingKeyRotation, durations(takeovers))
	if len(problems) > 0 {
		fig += "; PROBLEMS: " + fmt.Sprint(problems)
	}
	return []row{{
		scenario: "4. operator leader killed (SIGKILL) mid rotation, renewal and activation burst",
		load:     "3 trials: rotate + 20 concurrent activations for 5 seats + AppToken renewing every ~30 s + signing key rotating",
		duration: time.Since(start), decisions: t.decisions.Load(), wrong: t.wrong.Load(), errors: int64(len(problems)) - t.wrong.Load(),
		figure: fig,
	}}, nil
}

func durations(ds []time.Duration) string {
	out := ""
	for i, d := range ds {
		if i > 0 {
			out += ", "
		}
		out += secs(d)
	}
	return out
}

// leaderFailover creates ApiKeys at 5/s for 30 s and kills the leader after 5 s.
func leaderFailover(ctx context.Context, e *env) ([]row, error) {
	hist, err := watchSecrets(ctx, e, "chaos")
	if err != nil {
		return nil, err
	}
	defer hist.stop()
	leader, err := e.leader(ctx, time.Minute)
	if err != nil {
		return nil, err
	}
	start := time.Now()
	var created []string
	var refusedCreates int64
	var killedAt time.Time
	tookOver := make(chan time.Duration, 1)
	tick := time.NewTicker(200 * time.Millisecond)
	for i := 0; time.Since(start) < 30*time.Second; i++ {
		<-tick.C
		if killedAt.IsZero() && time.Since(start) > 5*time.Second {
			killedAt = leader.kill(syscall.SIGKILL)
			say("  killed %s (the leader)", leader.name)
			go func() {
				if _, err := e.leader(ctx, 2*time.Minute); err == nil {
					tookOver <- time.Since(killedAt)
				}
				close(tookOver)
			}()
		}
		name := fmt.Sprintf("failover-%03d", i)
		k := &keycapv1alpha1.ApiKey{ObjectMeta: metav1.ObjectMeta{Namespace: "chaos", Name: name},
			Spec: keycapv1alpha1.ApiKeySpec{CredentialSpec: keycapv1alpha1.CredentialSpec{Scopes: []string{"chaos:read"}}}}
		for {
			err := e.cl.Create(ctx, k)
			if err == nil {
				break
			}
			refusedCreates++ // the webhook behind the dying replica; a pipeline retries
			if time.Since(start) > 2*time.Minute {
				return nil, err
			}
			time.Sleep(100 * time.Millisecond)
		}
		created = append(created, name)
	}
	tick.Stop()
	takeover, ok := <-tookOver
	if !ok {
		return nil, errors.New("no operator took the lease over within 2 minutes")
	}
	// Every credential ends up issued exactly once, its digest in status, allowed by the data planes.
	var lost, twice, wrong int
	chk := newChecker()
	decisions := 0
	for i, name := range created {
		var key string
		err := retry(ctx, 3*time.Minute, func() error {
			got := &keycapv1alpha1.ApiKey{}
			if err := e.cl.Get(ctx, client.ObjectKey{Namespace: "chaos", Name: name}, got); err != nil {
				return err
			}
			vs := hist.of(name)
			if len(vs) == 0 || len(got.Status.Digests) == 0 || got.Status.Digests[0] != digest(vs[len(vs)-1]) {
				return errors.New("not issued")
			}
			key = vs[len(vs)-1]
			return nil
		})
		if err != nil {
			lost++
			continue
		}
		if len(hist.of(name)) != 1 {
			twice++
		}
		for _, dp := range e.dps {
			decisions++
			if err := retry(ctx, time.Minute, func() error {
				if !chk.check(ctx, dp, i%2 == 0, apiKeyProbe(key)).allowed {
					return errors.New("refused")
				}
				return nil
			}); err != nil {
				wrong++
			}
		}
	}
	return []row{{
		scenario: "5. leader failover (leader SIGKILLed while credentials are created)",
		load:     fmt.Sprintf("%d ApiKeys created at 5/s, two operators", len(created)),
		duration: time.Since(start), decisions: int64(decisions), wrong: int64(wrong), errors: int64(lost),
		figure: fmt.Sprintf("takeover (lease acquired by the other replica) %s after the kill with the default 15 s lease; keys issued twice %d, writes lost %d; creates refused by the webhook while its replica died %d (retried)",
			secs(takeover), twice, lost, refusedCreates),
	}}, nil
}

// ---- 6. two data planes ----

func twoDataPlanes(ctx context.Context, e *env) ([]row, error) {
	start := time.Now()
	const trials = 20
	var times []time.Duration
	over := 0
	for i := range trials {
		name := fmt.Sprintf("revoke-%02d", i)
		key, err := newRevocable(ctx, e, name)
		if err != nil {
			return nil, err
		}
		_, d, err := disableAndTime(ctx, e, name, key, i%2 == 1)
		if err != nil {
			return nil, err
		}
		times = append(times, d)
		if d > e.cfg.bound {
			over++
		}
	}
	slices.Sort(times)
	rows := []row{{
		scenario: "6a. disable/delete refused by both data planes",
		load:     fmt.Sprintf("%d trials (half disable, half delete), polled every 2 ms on each", trials),
		duration: time.Since(start), decisions: int64(trials * 2), wrong: 0, errors: 0,
		figure: fmt.Sprintf("from the apiserver's acknowledgement until both refuse: p50 %s, p99 %s, max %s; over the %s bound: %d",
			ms(pct(times, 50)), ms(pct(times, 99)), ms(times[len(times)-1]), secs(e.cfg.bound), over),
	}}

	// One data plane killed and restarted under load; the other's figures are kept apart.
	start = time.Now()
	var t1, t2 tally
	lctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); newChecker().run(lctx, e.cfg.rate, e.dps[:1], e.probes, &t1) }()
	go func() { defer wg.Done(); newChecker().run(lctx, e.cfg.rate, e.dps[1:], e.probes, &t2) }()
	time.Sleep(3 * time.Second)
	killed := e.dps[1].kill(syscall.SIGKILL)
	time.Sleep(200 * time.Millisecond)
	err := e.dps[1].waitReady(ctx, 2*time.Minute)
	back := time.Since(killed)
	time.Sleep(5 * time.Second)
	cancel()
	wg.Wait()
	rows = append(rows, row{
		scenario: "6b. one of two data planes SIGKILLed and restarted",
		load:     fmt.Sprintf("%d checks/s on each data plane, 9 probes, gRPC + HTTP", e.cfg.rate),
		duration: time.Since(start), decisions: t1.decisions.Load() + t2.decisions.Load(), wrong: t1.wrong.Load() + t2.wrong.Load(),
		errors: t1.errors.Load() + t2.errors.Load(),
		figure: fmt.Sprintf("the other data plane: %d decisions, %d wrong, %d errors, %d refused connections; the killed one ready again %s after the kill (%d refused connections, %d NOT_READY denials meanwhile)",
			t1.decisions.Load(), t1.wrong.Load(), t1.errors.Load(), t1.refused.Load(), secs(back), t2.refused.Load(), t2.notReady.Load()),
	})
	return rows, err
}

func pct(d []time.Duration, p int) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	i := (p*len(s)+99)/100 - 1
	return s[max(0, min(i, len(s)-1))]
}

// ---- 7. webhook certificate rotation ----

// webhookRotation forces a new webhook CA and serving certificate by deleting the certificate
// Secret (keycap has no flag or clock hook to shorten the 90-day/365-day lifetimes) while
// changes are applied continuously through the admission webhook, and counts failed admissions.
func webhookRotation(ctx context.Context, e *env) ([]row, error) {
	start := time.Now()
	obj := &keycapv1alpha1.ApiKey{ObjectMeta: metav1.ObjectMeta{Namespace: "chaos", Name: "applied"},
		Spec: keycapv1alpha1.ApiKeySpec{CredentialSpec: keycapv1alpha1.CredentialSpec{Scopes: []string{"chaos:read"}}}}
	if err := retry(ctx, time.Minute, func() error { return e.cl.Create(ctx, obj) }); err != nil {
		return nil, err
	}
	tlsSecret := &corev1.Secret{}
	if err := e.cl.Get(ctx, client.ObjectKey{Namespace: operatorNamespace, Name: "keycap-webhook-tls"}, tlsSecret); err != nil {
		return nil, fmt.Errorf("the webhook certificate Secret: %w", err)
	}
	var applies, failures atomic.Int64
	var firstFail, lastFail atomic.Int64
	var sample atomic.Value
	lctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; lctx.Err() == nil; i++ {
				target := &keycapv1alpha1.ApiKey{ObjectMeta: metav1.ObjectMeta{Namespace: obj.Namespace, Name: obj.Name}}
				err := e.cl.Patch(lctx, target, mergePatch(fmt.Sprintf(`{"spec":{"description":"apply %d-%d"}}`, w, i)))
				if lctx.Err() != nil {
					return
				}
				applies.Add(1)
				if err != nil {
					failures.Add(1)
					now := time.Since(start).Nanoseconds()
					firstFail.CompareAndSwap(0, now)
					lastFail.Store(now)
					sample.CompareAndSwap(nil, err.Error())
				}
				time.Sleep(100 * time.Millisecond) // 10 applies/s per writer
			}
		}()
	}
	time.Sleep(5 * time.Second)
	say("  deleting Secret keycap-webhook-tls")
	deletedAt := time.Since(start)
	if err := e.cl.Delete(ctx, tlsSecret); err != nil {
		cancel()
		wg.Wait()
		return nil, fmt.Errorf("deleting the certificate Secret: %w", err)
	}
	// The managers resync at least once a minute; give both replicas that long and a margin.
	var reissued time.Duration
	_ = retry(ctx, 2*time.Minute, func() error {
		s := &corev1.Secret{}
		if err := e.cl.Get(ctx, client.ObjectKeyFromObject(tlsSecret), s); err != nil {
			return err
		}
		reissued = time.Since(start) - deletedAt
		return nil
	})
	time.Sleep(75 * time.Second)
	cancel()
	wg.Wait()
	fig := fmt.Sprintf("certificate Secret deleted at %s: re-issued %s later; failed admissions %d of %d applies",
		secs(deletedAt), secs(reissued), failures.Load(), applies.Load())
	if failures.Load() > 0 {
		fig += fmt.Sprintf(", between %s and %s after the start (%v)", secs(time.Duration(firstFail.Load())), secs(time.Duration(lastFail.Load())), sample.Load())
	}
	return []row{{
		scenario: "7. webhook CA + serving certificate replaced (certificate Secret deleted), 2 replicas",
		load:     "4 writers patching an ApiKey, ~40 admissions/s",
		duration: time.Since(start), decisions: applies.Load(), wrong: 0, errors: failures.Load(),
		figure: fig,
	}}, nil
}

// jwtKeyIDAndExpiry returns the kid of a JWT's header and its exp, unverified (the data planes
// verify; this only labels).
func jwtKeyIDAndExpiry(token string) (string, time.Time) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return "", time.Time{}
	}
	var header struct {
		Kid string `json:"kid"`
	}
	var claims struct {
		Exp int64 `json:"exp"`
	}
	if b, err := base64.RawURLEncoding.DecodeString(parts[0]); err == nil {
		_ = json.Unmarshal(b, &header)
	}
	if b, err := base64.RawURLEncoding.DecodeString(parts[1]); err == nil {
		_ = json.Unmarshal(b, &claims)
	}
	return header.Kid, time.Unix(claims.Exp, 0)
}

// judgeSigningKeys judges the versions of the signing key Secret seen during a scenario: a key
// never changes (its SignFrom and public half stay what they were), is never dropped (a replaced
// key stays published for the longest token lifetime, a year, so within a run it never goes), and
// one rotation adds one key (two keys meant to start signing closer together than half the
// rotation period were issued twice). It returns how many keys the scenario added.
func judgeSigningKeys(versions []string, every time.Duration) (added int, problems []string) {
	type seen struct {
		signFrom time.Time
		public   string
	}
	keys := map[string]seen{}
	var prev map[string]bool
	for i, v := range versions {
		st, err := signing.Unmarshal([]byte(v))
		if err != nil {
			problems = append(problems, fmt.Sprintf("signing key Secret version %d does not parse: %v", i, err))
			continue
		}
		now := map[string]bool{}
		for _, k := range st.Keys {
			now[k.ID] = true
			s := seen{signFrom: k.SignFrom, public: base64.StdEncoding.EncodeToString(k.Public)}
			if old, ok := keys[k.ID]; !ok {
				keys[k.ID] = s
				if i > 0 {
					added++
				}
			} else if old != s {
				problems = append(problems, "signing key "+k.ID+" changed")
			}
		}
		for id := range prev {
			if !now[id] {
				problems = append(problems, "signing key "+id+" was dropped while it had to stay published")
			}
		}
		prev = now
	}
	var starts []time.Time
	for _, s := range keys {
		starts = append(starts, s.signFrom)
	}
	slices.SortFunc(starts, func(a, b time.Time) int { return a.Compare(b) })
	for i := 1; i < len(starts); i++ {
		if starts[i].Sub(starts[i-1]) < every/2 {
			problems = append(problems, fmt.Sprintf("two signing keys start signing %s apart (rotation every %s): issued twice", starts[i].Sub(starts[i-1]), every))
		}
	}
	return added, problems
}

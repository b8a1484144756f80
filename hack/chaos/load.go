package main

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	keycapv1alpha1 "github.com/keycap-dev/keycap/api/v1alpha1"
)

// probe is one credential presented to the data plane the way a proxy would: headers, and what
// the route requires (gRPC context_extensions, or the forward-auth query).
type probe struct {
	what    string
	headers map[string]string
	ext     map[string]string
	query   string
	// allow is the right decision.
	allow bool
}

// verdict is the data plane's answer to one check.
type verdict struct {
	allowed bool
	reason  string
	// status is the HTTP status (gRPC: the denial's HTTP status; 200 when allowed).
	status int
	err    error
}

// client asks data planes over gRPC and HTTP; one per load generator.
type checker struct {
	mu    sync.Mutex
	conns map[string]authv3.AuthorizationClient
	hc    *http.Client
}

func newChecker() *checker {
	tr := &http.Transport{MaxIdleConns: 256, MaxIdleConnsPerHost: 128, IdleConnTimeout: time.Minute}
	return &checker{conns: map[string]authv3.AuthorizationClient{}, hc: &http.Client{Transport: tr, Timeout: 5 * time.Second}}
}

func (c *checker) grpcClient(addr string) (authv3.AuthorizationClient, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if cl := c.conns[addr]; cl != nil {
		return cl, nil
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, err
	}
	cl := authv3.NewAuthorizationClient(conn)
	c.conns[addr] = cl
	return cl, nil
}

func (c *checker) check(ctx context.Context, dp *keycap, viaGRPC bool, p probe) verdict {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if viaGRPC {
		cl, err := c.grpcClient(dp.grpc)
		if err != nil {
			return verdict{err: err}
		}
		resp, err := cl.Check(ctx, &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
			Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
				Method: "GET", Path: "/chaos", Host: "api.example", Headers: p.headers,
			}},
			ContextExtensions: p.ext,
		}})
		if err != nil {
			return verdict{err: err}
		}
		if resp.GetOkResponse() != nil {
			return verdict{allowed: true, status: http.StatusOK}
		}
		return verdict{reason: resp.GetStatus().GetMessage(), status: int(resp.GetDeniedResponse().GetStatus().GetCode())}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+dp.http+"/check"+p.query, nil)
	if err != nil {
		return verdict{err: err}
	}
	for k, v := range p.headers {
		req.Header.Set(k, v)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return verdict{err: err}
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	return verdict{allowed: resp.StatusCode == http.StatusOK, status: resp.StatusCode, reason: resp.Header.Get("X-Keycap-Reason")}
}

// tally counts the decisions of a scenario.
type tally struct {
	decisions, wrong, errors atomic.Int64
	// notReady counts fail-closed denials of a data plane that had not synced (NOT_READY, 503).
	notReady atomic.Int64
	// refused counts connections refused or reset: a data plane that is not listening (Envoy
	// with failure_mode_allow: false denies those).
	refused atomic.Int64
	mu      sync.Mutex
	samples []string
}

func (t *tally) note(format string, args ...any) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.samples) < 5 {
		t.samples = append(t.samples, fmt.Sprintf(format, args...))
	}
}

// judge records one verdict against the right decision: a transport failure or a 5xx other than
// NOT_READY is an error, NOT_READY is a fail-closed denial, anything else is a decision that is
// wrong when it differs from allow.
func (t *tally) judge(v verdict, allow bool, what string) {
	switch {
	case v.err != nil:
		if isRefused(v.err) {
			t.refused.Add(1)
			return
		}
		t.errors.Add(1)
		t.note("%s: %v", what, v.err)
	case v.reason == "NOT_READY":
		t.notReady.Add(1)
	case v.status >= 500:
		t.errors.Add(1)
		t.note("%s: %d %s", what, v.status, v.reason)
	default:
		t.decisions.Add(1)
		if v.allowed != allow {
			t.wrong.Add(1)
			t.note("%s: allowed=%v (%s), want %v", what, v.allowed, v.reason, allow)
		}
	}
}

func isRefused(err error) bool {
	s := err.Error()
	return strings.Contains(s, "connection refused") || strings.Contains(s, "connection reset") ||
		strings.Contains(s, "Unavailable") || strings.Contains(s, "EOF")
}

// run sends checks at rate per second, spread over dps, both transports and probes, until ctx
// ends, judging each with judge.
func (c *checker) run(ctx context.Context, rate int, dps []*keycap, probes []probe, t *tally) {
	var wg sync.WaitGroup
	tick := time.NewTicker(time.Second / time.Duration(rate))
	defer tick.Stop()
	sem := make(chan struct{}, 256)
	for i := 0; ; i++ {
		select {
		case <-ctx.Done():
			wg.Wait()
			return
		case <-tick.C:
		}
		p := probes[i%len(probes)]
		dp := dps[(i/len(probes))%len(dps)]
		viaGRPC := (i/(len(probes)*len(dps)))%2 == 0
		select {
		case sem <- struct{}{}:
		default:
			t.errors.Add(1) // more than 256 checks outstanding: the data plane is not answering
			t.note("%s: 256 checks outstanding", p.what)
			continue
		}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			t.judge(c.check(context.WithoutCancel(ctx), dp, viaGRPC, p), p.allow, p.what+" via "+dp.name)
		}()
	}
}

// ---- fixtures: one credential of every kind that must be allowed, one that must be refused ----

// fixtures creates, in namespace ns, an active and a refused credential of every kind, waits
// until the operator has issued them, activates the licences, and returns the probes.
func fixtures(ctx context.Context, cl client.Client, ns string, dps []*keycap) ([]probe, error) {
	meta := func(name string) metav1.ObjectMeta { return metav1.ObjectMeta{Namespace: ns, Name: name} }
	scopes := []string{"chaos:read"}
	objs := []client.Object{
		&keycapv1alpha1.ApiKey{ObjectMeta: meta("key-on"), Spec: keycapv1alpha1.ApiKeySpec{CredentialSpec: keycapv1alpha1.CredentialSpec{Scopes: scopes}}},
		&keycapv1alpha1.ApiKey{ObjectMeta: meta("key-off"), Spec: keycapv1alpha1.ApiKeySpec{CredentialSpec: keycapv1alpha1.CredentialSpec{Scopes: scopes, Disabled: true}}},
		&keycapv1alpha1.ApiKey{ObjectMeta: meta("parent-off"), Spec: keycapv1alpha1.ApiKeySpec{CredentialSpec: keycapv1alpha1.CredentialSpec{Scopes: scopes}}},
		&keycapv1alpha1.AppToken{ObjectMeta: meta("token-on"), Spec: keycapv1alpha1.AppTokenSpec{CredentialSpec: keycapv1alpha1.CredentialSpec{Scopes: scopes}, Subject: "chaos", Audiences: []string{"https://api.example"}}},
		&keycapv1alpha1.AppToken{ObjectMeta: meta("token-off"), Spec: keycapv1alpha1.AppTokenSpec{CredentialSpec: keycapv1alpha1.CredentialSpec{Scopes: scopes}, Subject: "chaos", Audiences: []string{"https://api.example"}}},
		&keycapv1alpha1.License{ObjectMeta: meta("lic-on"), Spec: keycapv1alpha1.LicenseSpec{Product: "chaos", Plan: "pro", Entitlements: []string{"sso"}, MaxInstances: 3}},
		&keycapv1alpha1.License{ObjectMeta: meta("lic-off"), Spec: keycapv1alpha1.LicenseSpec{Product: "chaos", Plan: "pro", Entitlements: []string{"sso"}, MaxInstances: 3}},
	}
	for _, o := range objs {
		if err := retry(ctx, time.Minute, func() error { return cl.Create(ctx, o) }); err != nil {
			return nil, fmt.Errorf("creating %s: %w", o.GetName(), err)
		}
	}
	agents := []client.Object{
		&keycapv1alpha1.AgentKey{ObjectMeta: meta("agent-on"), Spec: keycapv1alpha1.AgentKeySpec{APIKeyRef: keycapv1alpha1.ApiKeyReference{Name: "key-on"}, Agent: "a1"}},
		&keycapv1alpha1.AgentKey{ObjectMeta: meta("agent-parent-off"), Spec: keycapv1alpha1.AgentKeySpec{APIKeyRef: keycapv1alpha1.ApiKeyReference{Name: "parent-off"}, Agent: "a2"}},
	}
	for _, o := range agents {
		if err := retry(ctx, time.Minute, func() error { return cl.Create(ctx, o) }); err != nil {
			return nil, fmt.Errorf("creating %s: %w", o.GetName(), err)
		}
	}
	secret := func(name, dataKey string) (string, error) {
		var v string
		err := retry(ctx, 2*time.Minute, func() error {
			s := &corev1.Secret{}
			if err := cl.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, s); err != nil {
				return err
			}
			if v = string(s.Data[dataKey]); v == "" {
				return fmt.Errorf("no %s in Secret %s yet", dataKey, name)
			}
			return nil
		})
		return v, err
	}
	vals := map[string]string{}
	for name, dataKey := range map[string]string{"key-on": "api-key", "key-off": "api-key", "agent-on": "agent-key",
		"agent-parent-off": "agent-key", "token-on": "token", "token-off": "token", "lic-on": "license-key", "lic-off": "license-key"} {
		v, err := secret(name, dataKey)
		if err != nil {
			return nil, err
		}
		vals[name] = v
	}
	chk := newChecker()
	for _, lic := range []string{"lic-on", "lic-off"} {
		if err := retry(ctx, 2*time.Minute, func() error { return activate(ctx, chk.hc, dps[0], vals[lic], "i1") }); err != nil {
			return nil, fmt.Errorf("activating %s: %w", lic, err)
		}
	}
	for _, off := range []client.Object{&keycapv1alpha1.ApiKey{ObjectMeta: meta("parent-off")},
		&keycapv1alpha1.AppToken{ObjectMeta: meta("token-off")}, &keycapv1alpha1.License{ObjectMeta: meta("lic-off")}} {
		if err := retry(ctx, time.Minute, func() error {
			return cl.Patch(ctx, off, client.RawPatch("application/merge-patch+json", []byte(`{"spec":{"disabled":true}}`)))
		}); err != nil {
			return nil, err
		}
	}
	key := func(what, v string, allow bool) probe {
		return probe{what: what, headers: map[string]string{"x-api-key": v}, ext: map[string]string{"keycap.dev/scopes": "chaos:read"},
			query: "?scopes=chaos:read", allow: allow}
	}
	bearer := func(what, v string, allow bool) probe {
		return probe{what: what, headers: map[string]string{"authorization": "Bearer " + v}, ext: map[string]string{"keycap.dev/scopes": "chaos:read"},
			query: "?scopes=chaos:read", allow: allow}
	}
	lic := func(what, v string, allow bool) probe {
		return probe{what: what, headers: map[string]string{"licensekey": v, "instanceid": "i1"}, ext: map[string]string{"keycap.dev/entitlements": "sso"},
			query: "?entitlements=sso", allow: allow}
	}
	probes := []probe{
		key("ApiKey", vals["key-on"], true), key("disabled ApiKey", vals["key-off"], false),
		bearer("AgentKey", vals["agent-on"], true), bearer("AgentKey of a disabled parent", vals["agent-parent-off"], false),
		bearer("AppToken", vals["token-on"], true), bearer("disabled AppToken", vals["token-off"], false),
		lic("License", vals["lic-on"], true), lic("disabled License", vals["lic-off"], false),
		key("wrong scope", vals["key-on"], false),
	}
	probes[len(probes)-1].ext = map[string]string{"keycap.dev/scopes": "chaos:admin"}
	probes[len(probes)-1].query = "?scopes=chaos:admin"
	// Wait until every data plane decides every probe right on both transports.
	for _, dp := range dps {
		for _, p := range probes {
			for _, viaGRPC := range []bool{true, false} {
				if err := retry(ctx, 2*time.Minute, func() error {
					if v := chk.check(ctx, dp, viaGRPC, p); v.err != nil || v.allowed != p.allow {
						return fmt.Errorf("%s on %s: allowed=%v %s: %w", p.what, dp.name, v.allowed, v.reason, v.err)
					}
					return nil
				}); err != nil {
					return nil, err
				}
			}
		}
	}
	return probes, nil
}

// activate activates instance of the licence key through dp.
func activate(ctx context.Context, hc *http.Client, dp *keycap, licenseKey, instance string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+dp.http+"/api/commercial/activate", strings.NewReader(`{"reset":false}`))
	if err != nil {
		return err
	}
	req.Header.Set("licensekey", licenseKey)
	req.Header.Set("instanceid", instance)
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	body, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("activation: %d %s", resp.StatusCode, body)
	}
	return nil
}

// retry calls f until it succeeds or timeout passes.
func retry(ctx context.Context, timeout time.Duration, f func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Duration(100+rand.IntN(100)) * time.Millisecond):
		}
	}
}

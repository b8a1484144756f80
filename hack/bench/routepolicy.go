package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	keycapv1alpha1 "github.com/keycap-dev/keycap/api/v1alpha1"
)

// The RoutePolicy row's requests: a host the policy holds and a path under its rule's prefix.
const (
	policyHost = "bench.example.com"
	policyPath = "/api/items"
	// policyScope is the rule's scope, which every loaded ApiKey holds (createKey).
	policyScope = "bench:write"
	// policyProbeScope is a scope no loaded ApiKey holds: the policy first requires it, so a
	// Check refused with INSUFFICIENT_SCOPE shows the data plane has applied the policy.
	policyProbeScope = "bench:admin"
)

// policyRequest is checkRequest for key on the policy's host and path (Envoy's attributes and
// pseudo-headers alike), with the proxy's own scope requirement kept: the request must meet
// both the proxy's and the rule's.
func policyRequest(key string) *authv3.CheckRequest {
	r := checkRequest(key)
	h := r.Attributes.Request.Http
	h.Host, h.Path = policyHost, policyPath
	h.Headers[":authority"] = policyHost
	h.Headers[":path"] = policyPath
	return r
}

// routePolicyKinds measures Check (gRPC and HTTP forward-auth) of requests on a host one
// RoutePolicy holds, whose rule for /api adds a scope, with requests spread over the loaded keys
// as in the key rows, in alternating rounds with the same baselines. The policy is deleted
// afterwards so that what the bench measures next runs without it.
func routePolicyKinds(ctx context.Context, c config, cl client.Client, kc, noop *process, loaded []string) ([]row, error) {
	rp := &keycapv1alpha1.RoutePolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: "bench", Name: "bench"},
		Spec: keycapv1alpha1.RoutePolicySpec{
			Hosts: []string{policyHost},
			Rules: []keycapv1alpha1.RoutePolicyRule{{Paths: []string{"/api"}, Scopes: []string{policyProbeScope}}},
		},
	}
	if err := cl.Create(ctx, rp); err != nil {
		return nil, fmt.Errorf("creating the RoutePolicy: %w", err)
	}
	defer func() { _ = cl.Delete(context.WithoutCancel(ctx), rp) }()
	probe := policyRequest(loaded[0])
	t0 := time.Now()
	if err := waitReason(ctx, kc.grpcAddr, probe, "INSUFFICIENT_SCOPE"); err != nil {
		return nil, fmt.Errorf("the RoutePolicy requiring %s: %w", policyProbeScope, err)
	}
	say("  the data plane applied the RoutePolicy %s after its create", time.Since(t0).Round(time.Millisecond))
	rp.Spec.Rules[0].Scopes = []string{policyScope}
	if err := cl.Update(ctx, rp); err != nil {
		return nil, fmt.Errorf("updating the RoutePolicy: %w", err)
	}
	t0 = time.Now()
	if err := waitAllowed(ctx, kc.grpcAddr, probe); err != nil {
		return nil, fmt.Errorf("the RoutePolicy requiring %s: %w", policyScope, err)
	}
	say("  the data plane applied the update %s after it", time.Since(t0).Round(time.Millisecond))

	reqs := make([]*authv3.CheckRequest, 4096)
	for i := range reqs {
		reqs[i] = policyRequest(keyFor(loaded, 0, i))
	}
	next := func(w, i int) *authv3.CheckRequest { return reqs[(w*131+i)%len(reqs)] }
	// Envoy's HTTP ext_authz: the client's path after /check, its Host as the check's Host; the
	// query of a path under /check/ is not read, so the policy states every requirement.
	httpURL := "http://" + kc.httpAddr + "/check" + policyPath
	if err := waitHTTPAllowed(ctx, httpURL, policyHost, loaded[0]); err != nil {
		return nil, err
	}
	var gn, gk, hn, hk []stats
	for range c.rounds {
		gn = append(gn, loadGRPCRequests(ctx, noop, noop.grpcAddr, c, next))
		gk = append(gk, loadGRPCRequests(ctx, kc, kc.grpcAddr, c, next))
		hn = append(hn, loadHTTPHost(ctx, noop, "http://"+noop.httpAddr+"/check"+policyPath, policyHost, loaded, c))
		hk = append(hk, loadHTTPHost(ctx, kc, httpURL, policyHost, loaded, c))
	}
	rows := []row{
		{n: len(loaded), proto: "gRPC Check, RoutePolicy match", keycap: median(gk), noop: median(gn)},
		{n: len(loaded), proto: "HTTP /check, RoutePolicy match", keycap: median(hk), noop: median(hn)},
	}
	for _, r := range rows {
		say("  %s: keycap %.0f rps vs baseline %.0f", r.proto, r.keycap.rps, r.noop.rps)
	}
	return rows, nil
}

// waitReason polls Check with req until the data plane refuses it for reason (the status
// message of a refusal).
func waitReason(ctx context.Context, addr string, req *authv3.CheckRequest, reason string) error {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer func() { _ = conn.Close() }()
	c := authv3.NewAuthorizationClient(conn)
	deadline := time.Now().Add(time.Minute)
	for {
		resp, err := c.Check(ctx, req)
		if err != nil {
			return err
		}
		got := resp.GetStatus().GetMessage()
		if resp.GetOkResponse() == nil && got == reason {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not refused with %s after a minute (allowed: %t, %q)", reason, resp.GetOkResponse() != nil, got)
		}
		time.Sleep(20 * time.Millisecond) // polling the data plane, a separate process
	}
}

// waitHTTPAllowed checks that forward-auth allows key on host (the policy is already applied:
// this only proves the HTTP row measures allowed answers).
func waitHTTPAllowed(ctx context.Context, url, host, key string) error {
	hc := &http.Client{Timeout: 10 * time.Second}
	deadline := time.Now().Add(time.Minute)
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		req.Host = host
		req.Header.Set("X-Api-Key", key)
		resp, err := hc.Do(req)
		if err != nil {
			return err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("HTTP /check on the RoutePolicy's host still refused after a minute (%d %s)", resp.StatusCode, resp.Header.Get("X-Keycap-Reason"))
		}
		time.Sleep(20 * time.Millisecond) // polling the data plane, a separate process
	}
}

package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/keycap-dev/keycap/internal/session"
	"github.com/keycap-dev/keycap/internal/sessionkeys"
)

// sessionLogins is how many of the loaded ApiKeys log in for the session row: the Checks spread
// over that many distinct cookies.
const sessionLogins = 64

// publishSessionKeys creates the session key Secret the controllers' sessionkeys.Manager would
// keep, with one key that seals now; the data plane re-reads it until it exists.
func publishSessionKeys(ctx context.Context, cl client.Client) error {
	k, err := session.NewKey(time.Now().Add(-time.Minute))
	if err != nil {
		return err
	}
	data, err := session.KeySet{Keys: []session.Key{k}}.Marshal()
	if err != nil {
		return err
	}
	return cl.Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: operatorNamespace, Name: sessionkeys.SecretName},
		Data:       map[string][]byte{sessionkeys.SecretDataKey: data},
	})
}

// login opens the seed's SSO link for key on the data plane until it sets the session cookie
// (the data plane reads the session keys within seconds of their creation).
func login(ctx context.Context, httpAddr, key string) (string, error) {
	hc := &http.Client{Timeout: 10 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	u := "http://" + httpAddr + "/auth/apikey-login?key=" + url.QueryEscape(key)
	deadline := time.Now().Add(time.Minute)
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		if err != nil {
			return "", err
		}
		resp, err := hc.Do(req)
		if err != nil {
			return "", err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		for _, c := range resp.Cookies() {
			if c.Name == session.CookieName && c.Value != "" {
				return c.Value, nil
			}
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("the login link set no session cookie after a minute (%d %s)", resp.StatusCode, resp.Header.Get("Location"))
		}
		time.Sleep(100 * time.Millisecond) // polling the data plane, a separate process
	}
}

func sessionRequest(cookie string) *authv3.CheckRequest {
	r := checkRequest("")
	h := r.Attributes.Request.Http.Headers
	delete(h, "x-api-key")
	// The portal's own cookie next to keycap's, so each answer also rewrites the upstream's
	// cookie header without keycap's.
	h["cookie"] = "portal_pref=dark; " + session.CookieName + "=" + cookie
	return r
}

// sessionKind measures gRPC Check authenticated by the session cookie (sessionLogins cookies of
// loaded ApiKeys, each logged in through the SSO link), in alternating rounds with the no-op
// baseline.
func sessionKind(ctx context.Context, c config, kc, noop *process, loaded []string) (row, error) {
	reqs := make([]*authv3.CheckRequest, min(sessionLogins, len(loaded)))
	for i := range reqs {
		cookie, err := login(ctx, kc.httpAddr, loaded[i*len(loaded)/len(reqs)])
		if err != nil {
			return row{}, err
		}
		reqs[i] = sessionRequest(cookie)
		if err := waitAllowed(ctx, kc.grpcAddr, reqs[i]); err != nil {
			return row{}, fmt.Errorf("the session cookie: %w", err)
		}
	}
	var sn, sk []stats
	for range c.rounds {
		sn = append(sn, loadGRPCRequests(ctx, noop, noop.grpcAddr, c, func(w, i int) *authv3.CheckRequest { return reqs[(w+i)%len(reqs)] }))
		sk = append(sk, loadGRPCRequests(ctx, kc, kc.grpcAddr, c, func(w, i int) *authv3.CheckRequest { return reqs[(w+i)%len(reqs)] }))
	}
	r := row{n: len(loaded), proto: "gRPC Check, session cookie", keycap: median(sk), noop: median(sn)}
	say("  %s: keycap %.0f rps vs baseline %.0f", r.proto, r.keycap.rps, r.noop.rps)
	return r, nil
}

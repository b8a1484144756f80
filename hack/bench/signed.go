package main

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	keycapv1alpha1 "github.com/keycap-dev/keycap/api/v1alpha1"
	"github.com/keycap-dev/keycap/internal/activation"
	"github.com/keycap-dev/keycap/internal/apptoken"
	"github.com/keycap-dev/keycap/internal/authz/wire"
	"github.com/keycap-dev/keycap/internal/keys"
	"github.com/keycap-dev/keycap/internal/signing"
)

// operatorNamespace is where the bench publishes the public signing keys for the data plane.
const operatorNamespace = "keycap-system"

// benchSigner holds the AppToken signing key the bench publishes in the public ConfigMap, as the
// controllers' signing.Manager would: the data plane reads only the public half.
type benchSigner struct {
	kid string
	key ed25519.PrivateKey
}

func (s benchSigner) Current() (string, ed25519.PrivateKey) { return s.kid, s.key }

// publishKeys creates the operator namespace and the public ConfigMap with a fresh key set; the
// data plane is not ready until it has read it.
func publishKeys(ctx context.Context, cl client.Client) (benchSigner, error) {
	k, err := signing.NewKey(time.Now().Add(-time.Minute))
	if err != nil {
		return benchSigner{}, err
	}
	lic, err := signing.NewKey(time.Now().Add(-time.Minute))
	if err != nil {
		return benchSigner{}, err
	}
	jwks, err := json.Marshal(signing.JWKSet{Keys: []signing.JWK{signing.NewJWK(k.Public)}})
	if err != nil {
		return benchSigner{}, err
	}
	if err := cl.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: operatorNamespace}}); err != nil {
		return benchSigner{}, err
	}
	cm := &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Namespace: operatorNamespace, Name: signing.PublicConfigMapName},
		Data: map[string]string{
			signing.ConfigMapJWKSKey:         string(jwks),
			signing.ConfigMapLicenseKey:      string(signing.EncodePublicKeyPEM(lic.Public)),
			signing.ConfigMapLicenseKeyIDKey: lic.ID,
		},
	}
	if err := cl.Create(ctx, cm); err != nil {
		return benchSigner{}, err
	}
	return benchSigner{kid: k.ID, key: k.Private}, nil
}

// appTokenBench is one AppToken the bench created, with its status written as the controller
// would (keyID from the UID).
type appTokenBench struct {
	signer benchSigner
	keyID  string
}

func createAppToken(ctx context.Context, cl client.Client, signer benchSigner) (appTokenBench, error) {
	at := &keycapv1alpha1.AppToken{ObjectMeta: metav1.ObjectMeta{Namespace: "bench", Name: "bench-app"}}
	at.Spec.Scopes = []string{"bench:read", "bench:write"}
	at.Spec.Audiences = []string{"bench"}
	if err := cl.Create(ctx, at); err != nil {
		return appTokenBench{}, fmt.Errorf("creating the AppToken: %w", err)
	}
	at.Status.KeyID = apptoken.KeyIDForUID(string(at.UID))
	if err := cl.Status().Update(ctx, at); err != nil {
		return appTokenBench{}, fmt.Errorf("writing the AppToken's status: %w", err)
	}
	return appTokenBench{signer: signer, keyID: at.Status.KeyID}, nil
}

// issue signs n distinct tokens of the AppToken (each with its own jti).
func (a appTokenBench) issue(n int) ([]string, error) {
	out := make([]string, n)
	now := time.Now()
	for i := range out {
		t, err := apptoken.Issue(a.signer, apptoken.Input{
			Issuer: signing.DefaultIssuer, KeyID: a.keyID, Subject: "bench/bench-app", Audiences: []string{"bench"},
			Org: "bench", Scopes: []string{"bench:read"}, IssuedAt: now, Lifetime: time.Hour,
		})
		if err != nil {
			return nil, err
		}
		out[i] = t.Token
	}
	return out, nil
}

func tokenRequest(token string) *authv3.CheckRequest {
	r := checkRequest("")
	h := r.Attributes.Request.Http.Headers
	delete(h, "x-api-key")
	h["authorization"] = "Bearer " + token
	r.Attributes.ContextExtensions["keycap.dev/audience"] = "bench"
	return r
}

func licenseRequest(key, instance string) *authv3.CheckRequest {
	r := checkRequest("")
	h := r.Attributes.Request.Http.Headers
	delete(h, "x-api-key")
	h["licensekey"], h["instanceid"] = key, instance
	r.Attributes.ContextExtensions["keycap.dev/entitlements"] = "pro"
	return r
}

// benchLicense is a License with its status written as the controller would, and the activation
// the data plane writes.
type benchLicense struct {
	key, instance string
}

// createLicenses creates n Licenses, each with instance "i-<n>" activated.
func createLicenses(ctx context.Context, cl client.Client, n int) ([]benchLicense, error) {
	out := make([]benchLicense, n)
	for i := range out {
		key, err := keys.Generate(keycapv1alpha1.LicenseKeyPrefix)
		if err != nil {
			return nil, err
		}
		lic := &keycapv1alpha1.License{ObjectMeta: metav1.ObjectMeta{Namespace: "bench", Name: fmt.Sprintf("lic%03d", i)}}
		lic.Spec.Product = "bench"
		lic.Spec.Entitlements = []string{"pro", "sso"}
		lic.Spec.Scopes = []string{"bench:read"}
		lic.Spec.MaxInstances = 4
		if err := cl.Create(ctx, lic); err != nil {
			return nil, fmt.Errorf("creating License %s: %w", lic.Name, err)
		}
		now := metav1.NewTime(time.Now().Truncate(time.Second))
		instance := fmt.Sprintf("i-%d", i)
		lic.Status.Digests = []string{keys.Digest(key)}
		lic.Status.KeyID = keys.KeyID(lic.Status.Digests[0])
		lic.Status.Activations = []keycapv1alpha1.LicenseActivation{{InstanceID: instance, ActivatedAt: now, LastSeenAt: now}}
		if err := cl.Status().Update(ctx, lic); err != nil {
			return nil, fmt.Errorf("writing the status of License %s: %w", lic.Name, err)
		}
		out[i] = benchLicense{key: key, instance: instance}
	}
	return out, nil
}

// waitAllowed waits until the data plane allows req.
func waitAllowed(ctx context.Context, addr string, req *authv3.CheckRequest) error {
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
		if resp.GetOkResponse() != nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("still refused after a minute: %s", resp.GetStatus().GetMessage())
		}
		time.Sleep(20 * time.Millisecond) // polling the data plane, a separate process
	}
}

// loadGRPCRequests runs Check with the requests next picks.
func loadGRPCRequests(ctx context.Context, server *process, addr string, c config, next func(w, i int) *authv3.CheckRequest) stats {
	clients := make([]authv3.AuthorizationClient, c.conns)
	for i := range clients {
		conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			return stats{errors: 1}
		}
		defer func() { _ = conn.Close() }()
		clients[i] = authv3.NewAuthorizationClient(conn)
	}
	return load(ctx, c, server, func(w, i int) (bool, error) {
		resp, err := clients[w%len(clients)].Check(ctx, next(w, i))
		return resp.GetOkResponse() != nil, err
	})
}

// loadActivations posts activations: worker w re-activates (refreshes) its licence's instance,
// so every request reads the License from the apiserver and patches its status, without seat
// refusals; workers share licences only when there are fewer licences than workers.
func loadActivations(ctx context.Context, server *process, url string, lics []benchLicense, c config) stats {
	tr := &http.Transport{MaxIdleConns: c.concurrency, MaxIdleConnsPerHost: c.concurrency, IdleConnTimeout: time.Minute}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	return load(ctx, c, server, func(w, _ int) (bool, error) {
		l := lics[w%len(lics)]
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(`{"reset":false}`))
		if err != nil {
			return false, err
		}
		req.Header.Set(wire.HeaderLicenseKey, l.key)
		req.Header.Set(wire.HeaderInstanceID, l.instance)
		resp, err := hc.Do(req)
		if err != nil {
			return false, err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		return resp.StatusCode == http.StatusOK, nil
	})
}

// signedKinds measures Check with AppTokens (first use: every request a token never seen, so a
// signature verification each; repeated: a few tokens, answered from the verifier's cache), Check
// with a licence, and activation throughput, each in alternating rounds with its baseline (the
// no-op gRPC server; for activation the bare net/http handler).
func signedKinds(ctx context.Context, c config, cl client.Client, kc, noop *process, signer benchSigner, n int) ([]row, error) {
	app, err := createAppToken(ctx, cl, signer)
	if err != nil {
		return nil, err
	}
	repeated, err := app.issue(64)
	if err != nil {
		return nil, err
	}
	if err := waitAllowed(ctx, kc.grpcAddr, tokenRequest(repeated[0])); err != nil {
		return nil, fmt.Errorf("the AppToken: %w", err)
	}
	repeatedReqs := make([]*authv3.CheckRequest, len(repeated))
	for i, t := range repeated {
		repeatedReqs[i] = tokenRequest(t)
	}
	lics, err := createLicenses(ctx, cl, c.concurrency)
	if err != nil {
		return nil, err
	}
	for _, l := range lics {
		if err := waitAllowed(ctx, kc.grpcAddr, licenseRequest(l.key, l.instance)); err != nil {
			return nil, fmt.Errorf("licence: %w", err)
		}
	}
	licReqs := make([]*authv3.CheckRequest, len(lics))
	for i, l := range lics {
		licReqs[i] = licenseRequest(l.key, l.instance)
	}

	// First use: a fresh pool of never-seen tokens per run, larger than a run can use (the
	// verifier caches every token it verifies, so a token reused would be a cache hit).
	const firstUsePool = 120_000
	var fn, fk, rn, rk, ln, lk, an, ak []stats
	for range c.rounds {
		// The baseline ignores the tokens, so it runs on the pool of the previous keycap run.
		pool, err := app.issue(firstUsePool)
		if err != nil {
			return nil, err
		}
		reqs := make([]*authv3.CheckRequest, len(pool))
		for i, t := range pool {
			reqs[i] = tokenRequest(t)
		}
		fn = append(fn, loadGRPCRequests(ctx, noop, noop.grpcAddr, c, func(w, i int) *authv3.CheckRequest { return reqs[(w*7919+i)%len(reqs)] }))
		var next atomic.Int64
		fk = append(fk, loadGRPCRequests(ctx, kc, kc.grpcAddr, c, func(_, _ int) *authv3.CheckRequest {
			return reqs[int(next.Add(1)-1)%len(reqs)]
		}))
		if next.Load() > int64(len(reqs)) {
			say("  warning: the first-use pool of %d tokens was reused (%d requests)", len(reqs), next.Load())
		}
		rn = append(rn, loadGRPCRequests(ctx, noop, noop.grpcAddr, c, func(w, i int) *authv3.CheckRequest { return repeatedReqs[(w*7+i)%len(repeatedReqs)] }))
		rk = append(rk, loadGRPCRequests(ctx, kc, kc.grpcAddr, c, func(w, i int) *authv3.CheckRequest { return repeatedReqs[(w*7+i)%len(repeatedReqs)] }))
		ln = append(ln, loadGRPCRequests(ctx, noop, noop.grpcAddr, c, func(w, i int) *authv3.CheckRequest { return licReqs[(w+i)%len(licReqs)] }))
		lk = append(lk, loadGRPCRequests(ctx, kc, kc.grpcAddr, c, func(w, i int) *authv3.CheckRequest { return licReqs[(w+i)%len(licReqs)] }))
		an = append(an, loadActivations(ctx, noop, "http://"+noop.httpAddr+activation.Path, lics, c))
		ak = append(ak, loadActivations(ctx, kc, "http://"+kc.httpAddr+activation.Path, lics, c))
	}
	rows := []row{
		{n: n, proto: "gRPC Check, AppToken first use", keycap: median(fk), noop: median(fn)},
		{n: n, proto: "gRPC Check, AppToken repeated", keycap: median(rk), noop: median(rn)},
		{n: n, proto: "gRPC Check, licence", keycap: median(lk), noop: median(ln)},
		{n: n, proto: "HTTP activation", keycap: median(ak), noop: median(an)},
	}
	for _, r := range rows {
		say("  %s: keycap %.0f rps vs baseline %.0f", r.proto, r.keycap.rps, r.noop.rps)
	}
	return rows, nil
}

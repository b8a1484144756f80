package authz_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/onsi/gomega"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/client"

	keycapv1alpha1 "github.com/keycap-dev/keycap/api/v1alpha1"
	"github.com/keycap-dev/keycap/internal/authz"
	"github.com/keycap-dev/keycap/internal/keys"
)

func grpcClient(t *testing.T) authv3.AuthorizationClient {
	t.Helper()
	return grpcClientOf(t, world.dp)
}

// grpcClientOf is an ext_authz client of the data plane dp.
func grpcClientOf(t *testing.T, dp *authz.DataPlane) authv3.AuthorizationClient {
	t.Helper()
	conn, err := grpc.NewClient(dp.GRPCAddr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	gomega.NewWithT(t).Expect(err).NotTo(gomega.HaveOccurred())
	t.Cleanup(func() { _ = conn.Close() })
	return authv3.NewAuthorizationClient(conn)
}

// checkRequest builds a CheckRequest as Envoy sends it.
func checkRequest(headers map[string]string, ext map[string]string) *authv3.CheckRequest {
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Method: "GET", Path: "/videos", Host: "api.example", Headers: headers,
		}},
		ContextExtensions: ext,
	}}
}

// result is what a test asserts of a Check answer.
type result struct {
	code    codes.Code
	http    int
	reason  string
	headers map[string]string
	removed []string
}

func check(t *testing.T, c authv3.AuthorizationClient, req *authv3.CheckRequest) result {
	t.Helper()
	resp, err := c.Check(context.Background(), req)
	gomega.NewWithT(t).Expect(err).NotTo(gomega.HaveOccurred())
	return toResult(t, resp)
}

func toResult(t *testing.T, resp *authv3.CheckResponse) result {
	t.Helper()
	g := gomega.NewWithT(t)
	r := result{code: codes.Code(resp.GetStatus().GetCode()), headers: map[string]string{}}
	if ok := resp.GetOkResponse(); ok != nil {
		r.http = 200
		r.reason = "OK"
		for _, h := range ok.GetHeaders() {
			g.Expect(h.GetAppendAction()).To(gomega.Equal(corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD))
			r.headers[h.GetHeader().GetKey()] = h.GetHeader().GetValue()
		}
		r.removed = ok.GetHeadersToRemove()
		return r
	}
	denied := resp.GetDeniedResponse()
	g.Expect(denied).NotTo(gomega.BeNil())
	r.http = int(denied.GetStatus().GetCode())
	for _, h := range denied.GetHeaders() {
		r.headers[h.GetHeader().GetKey()] = h.GetHeader().GetValue()
	}
	var body struct {
		Error struct{ Code, Message, Reason string } `json:"error"`
	}
	g.Expect(json.Unmarshal([]byte(denied.GetBody()), &body)).To(gomega.Succeed())
	g.Expect(body.Error.Reason).To(gomega.Equal(r.headers["x-keycap-reason"]))
	r.reason = body.Error.Reason
	return r
}

func TestGRPCCheck(t *testing.T) {
	ns := newNamespace(t)
	c := grpcClient(t)
	key, _ := createApiKey(t, ns, "main", nil)
	byoKey := "my-own.key/with:any~format"
	_, _ = createApiKey(t, ns, "byo", func(k *keycapv1alpha1.ApiKey) {
		k.Spec.KeyHash = "sha256:" + keys.Digest(byoKey)
		k.Status.Digests = []string{keys.Digest(byoKey)}
	})
	other, _ := keys.Generate("kc")
	// A key in keycap's format with a wrong checksum: the last character changed.
	badChecksum := key[:len(key)-1] + map[bool]string{true: "A", false: "B"}[!strings.HasSuffix(key, "A")]

	g := gomega.NewWithT(t)
	g.Eventually(func() string {
		return check(t, c, checkRequest(map[string]string{"x-api-key": byoKey}, nil)).reason
	}).WithTimeout(propagationTimeout).Should(gomega.Equal("OK"))

	cases := map[string]struct {
		headers map[string]string
		ext     map[string]string
		code    codes.Code
		http    int
		reason  string
	}{
		"a valid key in x-api-key is allowed":           {headers: map[string]string{"x-api-key": key}, code: codes.OK, http: 200, reason: "OK"},
		"a valid key as a bearer is allowed":            {headers: map[string]string{"authorization": "Bearer " + key}, code: codes.OK, http: 200, reason: "OK"},
		"a valid key in X-CapData-Token is allowed":     {headers: map[string]string{"x-capdata-token": key}, code: codes.OK, http: 200, reason: "OK"},
		"the same key twice is one credential":          {headers: map[string]string{"x-api-key": key, "authorization": "bearer " + key}, code: codes.OK, http: 200, reason: "OK"},
		"a bring-your-own key in any format is allowed": {headers: map[string]string{"x-api-key": byoKey}, code: codes.OK, http: 200, reason: "OK"},
		"held scopes and the right namespace pass": {headers: map[string]string{"x-api-key": key},
			ext: map[string]string{"keycap.dev/scopes": "videos:read, videos:write", "keycap.dev/namespaces": "other," + ns}, code: codes.OK, http: 200, reason: "OK"},
		"no credential is refused as missing":          {headers: map[string]string{"accept": "*/*"}, code: codes.Unauthenticated, http: 401, reason: "MISSING"},
		"an unknown key is refused":                    {headers: map[string]string{"x-api-key": other}, code: codes.Unauthenticated, http: 401, reason: "NOT_FOUND"},
		"a wrong checksum is refused as malformed":     {headers: map[string]string{"x-api-key": badChecksum}, code: codes.Unauthenticated, http: 401, reason: "MALFORMED"},
		"a scope the key lacks is forbidden":           {headers: map[string]string{"x-api-key": key}, ext: map[string]string{"keycap.dev/scopes": "videos:read,admin"}, code: codes.PermissionDenied, http: 403, reason: "INSUFFICIENT_SCOPE"},
		"another tenant's route is forbidden":          {headers: map[string]string{"x-api-key": key}, ext: map[string]string{"keycap.dev/namespaces": "someone-else"}, code: codes.PermissionDenied, http: 403, reason: "WRONG_NAMESPACE"},
		"two different keys are ambiguous":             {headers: map[string]string{"x-api-key": key, "authorization": "Bearer " + other}, code: codes.Unauthenticated, http: 401, reason: "AMBIGUOUS"},
		"a repeated header with two keys is ambiguous": {headers: map[string]string{"x-api-key": key + "," + other}, code: codes.Unauthenticated, http: 401, reason: "AMBIGUOUS"},
		"an empty bearer is malformed":                 {headers: map[string]string{"authorization": "Bearer "}, code: codes.Unauthenticated, http: 401, reason: "MALFORMED"},
		"an oversized key is malformed":                {headers: map[string]string{"x-api-key": strings.Repeat("a", 10000)}, code: codes.Unauthenticated, http: 401, reason: "MALFORMED"},
		"an unsigned JWT (alg none) is refused":        {headers: map[string]string{"authorization": "Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0."}, code: codes.Unauthenticated, http: 401, reason: "ALGORITHM_NOT_ALLOWED"},
		"a key with a space inside is malformed":       {headers: map[string]string{"x-api-key": "kc_ab cd"}, code: codes.Unauthenticated, http: 401, reason: "MALFORMED"},
		"basic auth is not a keycap credential":        {headers: map[string]string{"authorization": "Basic dXNlcjpwYXNz"}, code: codes.Unauthenticated, http: 401, reason: "MISSING"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			g := gomega.NewWithT(t)
			r := check(t, c, checkRequest(tc.headers, tc.ext))
			g.Expect(r.reason).To(gomega.Equal(tc.reason))
			g.Expect(r.code).To(gomega.Equal(tc.code))
			g.Expect(r.http).To(gomega.Equal(tc.http))
		})
	}

	t.Run("an allowed answer carries the identity and removes the credential", func(t *testing.T) {
		g := gomega.NewWithT(t)
		r := check(t, c, checkRequest(map[string]string{"authorization": "Bearer " + key, "x-keycap-agent": "forged"}, nil))
		g.Expect(r.headers).To(gomega.Equal(map[string]string{
			"x-keycap-kind":      "ApiKey",
			"x-keycap-namespace": ns,
			"x-keycap-name":      "main",
			"x-keycap-key-id":    keys.KeyID(keys.Digest(key)),
			"x-keycap-scopes":    "videos:read,videos:write",
		}))
		g.Expect(r.removed).To(gomega.ConsistOf("authorization", "x-keycap-agent", "x-keycap-parent", "x-keycap-subject", "x-keycap-entitlements", "x-keycap-auth-method"))
	})

	t.Run("a non-UTF-8 raw header value is malformed", func(t *testing.T) {
		req := checkRequest(nil, nil)
		req.Attributes.Request.Http.HeaderMap = &corev3.HeaderMap{Headers: []*corev3.HeaderValue{
			{Key: "x-api-key", RawValue: []byte{0xff, 0xfe, 'k', 'c'}},
		}}
		gomega.NewWithT(t).Expect(check(t, c, req).reason).To(gomega.Equal("MALFORMED"))
	})

	t.Run("the raw header map of encode_raw_headers is read", func(t *testing.T) {
		req := checkRequest(nil, nil)
		req.Attributes.Request.Http.HeaderMap = &corev3.HeaderMap{Headers: []*corev3.HeaderValue{
			{Key: "x-api-key", RawValue: []byte(key)},
		}}
		gomega.NewWithT(t).Expect(check(t, c, req).reason).To(gomega.Equal("OK"))
	})

	t.Run("the health service reports serving", func(t *testing.T) {
		conn, err := grpc.NewClient(world.dp.GRPCAddr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
		g := gomega.NewWithT(t)
		g.Expect(err).NotTo(gomega.HaveOccurred())
		defer func() { _ = conn.Close() }()
		resp, err := healthpb.NewHealthClient(conn).Check(context.Background(), &healthpb.HealthCheckRequest{Service: "envoy.service.auth.v3.Authorization"})
		g.Expect(err).NotTo(gomega.HaveOccurred())
		g.Expect(resp.GetStatus()).To(gomega.Equal(healthpb.HealthCheckResponse_SERVING))
	})
}

func TestGRPCRevocation(t *testing.T) {
	ns := newNamespace(t)
	c := grpcClient(t)
	reasonOf := func(key string) func() string {
		return func() string { return check(t, c, checkRequest(map[string]string{"x-api-key": key}, nil)).reason }
	}

	t.Run("a disabled key is refused at once and enabling it restores it", func(t *testing.T) {
		g := gomega.NewWithT(t)
		key, k := createApiKey(t, ns, "disable-me", nil)
		g.Eventually(reasonOf(key)).WithTimeout(propagationTimeout).Should(gomega.Equal("OK"))
		setDisabled(t, k, true)
		g.Eventually(reasonOf(key)).WithTimeout(revocationTimeout).WithPolling(5 * time.Millisecond).Should(gomega.Equal("DISABLED"))
		setDisabled(t, k, false)
		g.Eventually(reasonOf(key)).WithTimeout(propagationTimeout).Should(gomega.Equal("OK"))
	})

	t.Run("a deleted key is refused at once", func(t *testing.T) {
		g := gomega.NewWithT(t)
		key, k := createApiKey(t, ns, "delete-me", nil)
		g.Eventually(reasonOf(key)).WithTimeout(propagationTimeout).Should(gomega.Equal("OK"))
		g.Expect(world.client.Delete(context.Background(), k)).To(gomega.Succeed())
		g.Eventually(reasonOf(key)).WithTimeout(revocationTimeout).WithPolling(5 * time.Millisecond).Should(gomega.Equal("NOT_FOUND"))
	})

	t.Run("a key whose expiry has passed is refused", func(t *testing.T) {
		g := gomega.NewWithT(t)
		past := metav1.NewTime(world.clock.Now().Add(-time.Minute))
		key, _ := createApiKey(t, ns, "expired", func(k *keycapv1alpha1.ApiKey) { k.Status.ExpiresAt = &past })
		// Wait until the index has it (a created object with the status written): EXPIRED, not NOT_FOUND.
		g.Eventually(reasonOf(key)).WithTimeout(propagationTimeout).Should(gomega.Equal("EXPIRED"))
	})

	t.Run("a key is refused the moment it expires, without any watch event", func(t *testing.T) {
		g := gomega.NewWithT(t)
		clk, reasonOf := ownClock(t)
		soon := metav1.NewTime(clk.Now().Add(time.Hour))
		key, _ := createApiKey(t, ns, "expires-soon", func(k *keycapv1alpha1.ApiKey) { k.Spec.ExpiresAt = &soon })
		g.Eventually(reasonOf(key)).WithTimeout(propagationTimeout).Should(gomega.Equal("OK"))
		clk.Step(time.Hour)
		g.Expect(reasonOf(key)()).To(gomega.Equal("EXPIRED"))
	})

	t.Run("the previous key works through the grace period only", func(t *testing.T) {
		g := gomega.NewWithT(t)
		clk, reasonOf := ownClock(t)
		previous, _ := keys.Generate("kc")
		current, _ := keys.Generate("kc")
		until := metav1.NewTime(clk.Now().Add(10 * time.Minute))
		_, _ = createApiKey(t, ns, "rotated", func(k *keycapv1alpha1.ApiKey) {
			k.Status.Digests = []string{keys.Digest(current), keys.Digest(previous)}
			k.Status.PreviousKeyValidUntil = &until
		})
		g.Eventually(reasonOf(previous)).WithTimeout(propagationTimeout).Should(gomega.Equal("OK"))
		g.Expect(reasonOf(current)()).To(gomega.Equal("OK"))
		clk.Step(10 * time.Minute)
		g.Expect(reasonOf(previous)()).To(gomega.Equal("EXPIRED"))
		g.Expect(reasonOf(current)()).To(gomega.Equal("OK"))
	})
}

func TestGRPCAgentKeys(t *testing.T) {
	ns := newNamespace(t)
	c := grpcClient(t)
	_, parent := createApiKey(t, ns, "account", nil)
	agentKey, _ := createAgentKey(t, ns, "bot", "account", []string{"videos:read", "billing:read"})
	inherits, _ := createAgentKey(t, ns, "helper", "account", nil)
	orphan, _ := createAgentKey(t, ns, "orphan", "no-such-parent", nil)
	g := gomega.NewWithT(t)
	checkKey := func(key string, ext map[string]string) result {
		return check(t, c, checkRequest(map[string]string{"x-api-key": key}, ext))
	}
	g.Eventually(func() string { return checkKey(agentKey, nil).reason }).WithTimeout(propagationTimeout).Should(gomega.Equal("OK"))
	g.Eventually(func() string { return checkKey(orphan, nil).reason }).WithTimeout(propagationTimeout).Should(gomega.Equal("PARENT_INACTIVE"))

	r := checkKey(agentKey, nil)
	g.Expect(r.headers).To(gomega.HaveKeyWithValue("x-keycap-kind", "AgentKey"))
	g.Expect(r.headers).To(gomega.HaveKeyWithValue("x-keycap-agent", "agent-bot"))
	g.Expect(r.headers).To(gomega.HaveKeyWithValue("x-keycap-parent", "account"))
	// The agent's scopes narrowed to the parent's: billing:read is not the parent's.
	g.Expect(r.headers).To(gomega.HaveKeyWithValue("x-keycap-scopes", "videos:read"))
	g.Expect(checkKey(agentKey, map[string]string{"keycap.dev/scopes": "billing:read"}).reason).To(gomega.Equal("INSUFFICIENT_SCOPE"))
	g.Expect(checkKey(inherits, nil).headers).To(gomega.HaveKeyWithValue("x-keycap-scopes", "videos:read,videos:write"))

	setDisabled(t, parent, true)
	g.Eventually(func() string { return checkKey(agentKey, nil).reason }).WithTimeout(revocationTimeout).WithPolling(5 * time.Millisecond).Should(gomega.Equal("PARENT_INACTIVE"))
	setDisabled(t, parent, false)
	g.Eventually(func() string { return checkKey(agentKey, nil).reason }).WithTimeout(propagationTimeout).Should(gomega.Equal("OK"))
	g.Expect(world.client.Delete(context.Background(), parent)).To(gomega.Succeed())
	g.Eventually(func() string { return checkKey(agentKey, nil).reason }).WithTimeout(revocationTimeout).WithPolling(5 * time.Millisecond).Should(gomega.Equal("PARENT_INACTIVE"))
}

// ownClock starts a data plane on a fake clock of the test's own, at the suite clock's time, and
// returns the clock and the reason that data plane gives an x-api-key: a test stepping it moves
// no other test's time.
func ownClock(t *testing.T) (*clocktesting.FakeClock, func(key string) func() string) {
	t.Helper()
	clk := clocktesting.NewFakeClock(world.clock.Now())
	c := grpcClientOf(t, startDataPlaneWith(t, func(o *authz.Options) { o.Clock = clk }))
	return clk, func(key string) func() string {
		return func() string { return check(t, c, checkRequest(map[string]string{"x-api-key": key}, nil)).reason }
	}
}

func TestLastUsedAtIsWrittenInTheBackground(t *testing.T) {
	ns := newNamespace(t)
	// A data plane on a clock of this test's own: the wait below steps it once per poll, so how
	// far it moves depends on the apiserver's speed, and the suite's clock must not move with it.
	suiteNow := world.clock.Now()
	clk := clocktesting.NewFakeClock(suiteNow)
	dp := startDataPlaneWith(t, func(o *authz.Options) {
		o.Clock = clk
		o.DisableLastUsed = false
		o.LastUsedFlushInterval = lastUsedFlush
	})
	c := grpcClientOf(t, dp)
	key, k := createApiKey(t, ns, "used", nil)
	g := gomega.NewWithT(t)
	g.Eventually(func() string {
		return check(t, c, checkRequest(map[string]string{"x-api-key": key}, nil)).reason
	}).WithTimeout(propagationTimeout).Should(gomega.Equal("OK"))
	usedAt := clk.Now()

	// The write waits for the flush tick of the (fake) clock.
	got := &keycapv1alpha1.ApiKey{}
	g.Eventually(func() *metav1.Time {
		clk.Step(lastUsedFlush)
		g.Expect(world.client.Get(context.Background(), client.ObjectKeyFromObject(k), got)).To(gomega.Succeed())
		return got.Status.LastUsedAt
	}).WithTimeout(propagationTimeout).ShouldNot(gomega.BeNil())
	g.Expect(got.Status.LastUsedAt.Time).To(gomega.BeTemporally("~", usedAt, 2*time.Second))
	// Only lastUsedAt changed in status.
	g.Expect(got.Status.Digests).To(gomega.Equal([]string{keys.Digest(key)}))
	g.Expect(got.Status.KeyID).To(gomega.Equal(keys.KeyID(keys.Digest(key))))
	g.Expect(world.clock.Now()).To(gomega.Equal(suiteNow), "the suite's clock did not move")
}

package signing

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func TestThumbprintMatchesRFC8037(t *testing.T) {
	g := gomega.NewWithT(t)
	// RFC 8037 Appendix A.2 and A.3.
	x, err := base64.RawURLEncoding.DecodeString("11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo")
	g.Expect(err).NotTo(gomega.HaveOccurred())
	g.Expect(Thumbprint(ed25519.PublicKey(x))).To(gomega.Equal("kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"))
}

func TestPlanRotatesWithOverlap(t *testing.T) {
	g := gomega.NewWithT(t)
	policy := Policy{RotateEvery: 10 * time.Hour, PrePublish: time.Hour, MaxTokenLifetime: 5 * time.Hour}
	plan := func(s State, now time.Time) State {
		t.Helper()
		out, _, err := Plan(s, now, policy, NewKey)
		g.Expect(err).NotTo(gomega.HaveOccurred())
		return out
	}

	s := plan(State{}, t0)
	g.Expect(s.Keys).To(gomega.HaveLen(1), "a first key is created on first start")
	g.Expect(s.License).NotTo(gomega.BeNil(), "the licence key is created on first start")
	first := s.Keys[0]
	cur, ok := s.Current(t0)
	g.Expect(ok).To(gomega.BeTrue())
	g.Expect(cur.ID).To(gomega.Equal(first.ID))

	_, changed, err := Plan(s, t0.Add(8*time.Hour), policy, NewKey)
	g.Expect(err).NotTo(gomega.HaveOccurred())
	g.Expect(changed).To(gomega.BeFalse(), "nothing to do before the pre-publication moment")

	s = plan(s, t0.Add(9*time.Hour))
	g.Expect(s.Keys).To(gomega.HaveLen(2), "the successor is published an hour early")
	second := s.Keys[1]
	g.Expect(second.SignFrom).To(gomega.Equal(t0.Add(10 * time.Hour)))
	cur, _ = s.Current(t0.Add(9 * time.Hour))
	g.Expect(cur.ID).To(gomega.Equal(first.ID), "the old key still signs until the successor's time")
	g.Expect(NextChange(s, policy)).To(gomega.Equal(t0.Add(10 * time.Hour)))

	s = plan(s, t0.Add(10*time.Hour))
	cur, _ = s.Current(t0.Add(10 * time.Hour))
	g.Expect(cur.ID).To(gomega.Equal(second.ID), "the successor signs from its time")
	g.Expect(s.Keys).To(gomega.HaveLen(2), "the replaced key stays published")
	g.Expect(s.Keys[0].Private).To(gomega.BeNil(), "the replaced key can no longer sign")

	s = plan(s, t0.Add(15*time.Hour-time.Second))
	g.Expect(s.Keys[0].ID).To(gomega.Equal(first.ID), "published while a token it signed may live")
	s = plan(s, t0.Add(15*time.Hour))
	g.Expect(s.Keys).To(gomega.HaveLen(1), "removed once every token it signed has expired")
	g.Expect(s.Keys[0].ID).To(gomega.Equal(second.ID))
}

func TestPlanAfterLongDowntimePrePublishesBeforeSigning(t *testing.T) {
	g := gomega.NewWithT(t)
	policy := Policy{RotateEvery: 10 * time.Hour, PrePublish: time.Hour, MaxTokenLifetime: 5 * time.Hour}
	s, _, err := Plan(State{}, t0, policy, NewKey)
	g.Expect(err).NotTo(gomega.HaveOccurred())
	late := t0.Add(100 * time.Hour)
	s, changed, err := Plan(s, late, policy, NewKey)
	g.Expect(err).NotTo(gomega.HaveOccurred())
	g.Expect(changed).To(gomega.BeTrue())
	g.Expect(s.Keys).To(gomega.HaveLen(2))
	g.Expect(s.Keys[1].SignFrom).To(gomega.Equal(late.Add(time.Hour)))
	cur, ok := s.Current(late)
	g.Expect(ok).To(gomega.BeTrue(), "the overdue key keeps signing until its successor is known")
	g.Expect(cur.ID).To(gomega.Equal(s.Keys[0].ID))
}

func TestStateRoundTripsAndRejectsTampering(t *testing.T) {
	g := gomega.NewWithT(t)
	s, _, err := Plan(State{}, t0, Policy{}, NewKey)
	g.Expect(err).NotTo(gomega.HaveOccurred())
	data, err := s.Marshal()
	g.Expect(err).NotTo(gomega.HaveOccurred())
	back, err := Unmarshal(data)
	g.Expect(err).NotTo(gomega.HaveOccurred())
	g.Expect(back.Keys[0].ID).To(gomega.Equal(s.Keys[0].ID))
	g.Expect(back.Keys[0].Private.Equal(s.Keys[0].Private)).To(gomega.BeTrue())
	g.Expect(back.License.ID).To(gomega.Equal(s.License.ID))

	var raw map[string]any
	g.Expect(json.Unmarshal(data, &raw)).To(gomega.Succeed())
	raw["keys"].([]any)[0].(map[string]any)["kid"] = "someone-elses"
	tampered, _ := json.Marshal(raw)
	_, err = Unmarshal(tampered)
	g.Expect(err).To(gomega.MatchError(gomega.ContainSubstring("thumbprint")))
}

func TestManagerEnsurePublishesAndPublicKeysRead(t *testing.T) {
	g := gomega.NewWithT(t)
	ctx := context.Background()
	scheme := runtime.NewScheme()
	g.Expect(corev1.AddToScheme(scheme)).To(gomega.Succeed())
	c := fake.NewClientBuilder().WithScheme(scheme).Build()
	clk := clocktesting.NewFakeClock(t0)
	m := NewManager(c, c, Options{Namespace: "keycap-system", Clock: clk})

	kid, priv := m.Current()
	g.Expect(kid).To(gomega.BeEmpty(), "nothing before the first Ensure")
	g.Expect(priv).To(gomega.BeNil())
	g.Expect(m.Ensure(ctx)).To(gomega.Succeed())
	kid, priv = m.Current()
	g.Expect(kid).NotTo(gomega.BeEmpty())

	// A second manager (a restarted or new leader) finds the same keys.
	again := NewManager(c, c, Options{Namespace: "keycap-system", Clock: clk})
	g.Expect(again.Ensure(ctx)).To(gomega.Succeed())
	kid2, priv2 := again.Current()
	g.Expect(kid2).To(gomega.Equal(kid))
	g.Expect(priv2.Equal(priv)).To(gomega.BeTrue())

	p := NewPublicKeys(c, PublicKeysOptions{Namespace: "keycap-system"})
	g.Expect(p.HasSynced()).To(gomega.BeFalse())
	g.Expect(p.Refresh(ctx)).To(gomega.Succeed())
	pub, ok := p.PublicKey(kid)
	g.Expect(ok).To(gomega.BeTrue())
	g.Expect(pub.Equal(priv.Public())).To(gomega.BeTrue())
	licKID, licPub := p.LicensePublicKey()
	wantLicKID, licPriv := m.LicenseKey()
	g.Expect(licKID).To(gomega.Equal(wantLicKID))
	g.Expect(licPub.Equal(licPriv.Public())).To(gomega.BeTrue())
	_, ok = p.PublicKey(licKID)
	g.Expect(ok).To(gomega.BeFalse(), "the licence key never verifies JWTs")

	srv := httptest.NewServer(Handler(p))
	defer srv.Close()
	resp, err := http.Get(srv.URL + JWKSPath)
	g.Expect(err).NotTo(gomega.HaveOccurred())
	defer func() { _ = resp.Body.Close() }()
	var set map[string][]map[string]string
	g.Expect(json.NewDecoder(resp.Body).Decode(&set)).To(gomega.Succeed())
	g.Expect(set["keys"]).To(gomega.ConsistOf(gomega.And(
		gomega.HaveKeyWithValue("kty", "OKP"), gomega.HaveKeyWithValue("crv", "Ed25519"),
		gomega.HaveKeyWithValue("kid", kid), gomega.HaveKeyWithValue("use", "sig"),
		gomega.HaveKeyWithValue("alg", "EdDSA"),
		gomega.HaveKeyWithValue("x", base64.RawURLEncoding.EncodeToString(priv.Public().(ed25519.PublicKey)))),
	))

	resp2, err := http.Get(srv.URL + OpenIDConfigurationPath)
	g.Expect(err).NotTo(gomega.HaveOccurred())
	defer func() { _ = resp2.Body.Close() }()
	var oidc map[string]any
	g.Expect(json.NewDecoder(resp2.Body).Decode(&oidc)).To(gomega.Succeed())
	g.Expect(oidc).To(gomega.HaveKeyWithValue("issuer", DefaultIssuer))
	g.Expect(oidc).To(gomega.HaveKeyWithValue("jwks_uri", DefaultIssuer+JWKSPath))
	g.Expect(oidc).To(gomega.HaveKeyWithValue("id_token_signing_alg_values_supported", []any{"EdDSA"}))
}

func TestHandlerIsUnavailableBeforeKeysLoad(t *testing.T) {
	g := gomega.NewWithT(t)
	p := NewPublicKeys(nil, PublicKeysOptions{Namespace: "x"})
	rec := httptest.NewRecorder()
	Handler(p).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, JWKSPath, nil))
	g.Expect(rec.Code).To(gomega.Equal(http.StatusServiceUnavailable))
}

func TestManagerRotatesOnScheduleWhileRunning(t *testing.T) {
	g := gomega.NewWithT(t)
	scheme := runtime.NewScheme()
	g.Expect(corev1.AddToScheme(scheme)).To(gomega.Succeed())
	c := fake.NewClientBuilder().WithScheme(scheme).Build()
	clk := clocktesting.NewFakeClock(t0)
	policy := Policy{RotateEvery: 10 * time.Hour, PrePublish: time.Hour, MaxTokenLifetime: 2 * time.Hour}
	m := NewManager(c, c, Options{Namespace: "keycap-system", Clock: clk, Policy: policy})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Start(ctx) }()
	defer func() { cancel(); <-done }()

	waitIdle := func() {
		t.Helper()
		g.Eventually(clk.HasWaiters).WithTimeout(10 * time.Second).Should(gomega.BeTrue())
	}
	waitIdle()
	first, _ := m.Current()
	g.Expect(first).NotTo(gomega.BeEmpty())
	published := func() []string {
		p := NewPublicKeys(c, PublicKeysOptions{Namespace: "keycap-system"})
		g.Expect(p.Refresh(context.Background())).To(gomega.Succeed())
		var set JWKSet
		g.Expect(json.Unmarshal(p.JWKS(), &set)).To(gomega.Succeed())
		var ids []string
		for _, k := range set.Keys {
			ids = append(ids, k.KeyID)
		}
		return ids
	}
	g.Expect(published()).To(gomega.Equal([]string{first}))

	clk.Step(9 * time.Hour)
	g.Eventually(published).WithTimeout(10*time.Second).Should(gomega.HaveLen(2), "the successor is published before it signs")
	waitIdle()
	kid, _ := m.Current()
	g.Expect(kid).To(gomega.Equal(first))

	clk.Step(time.Hour)
	g.Eventually(func() string { kid, _ := m.Current(); return kid }).WithTimeout(10 * time.Second).ShouldNot(gomega.Equal(first))
	second, _ := m.Current()
	g.Expect(published()).To(gomega.Equal([]string{first, second}), "the previous key stays published")

	waitIdle()
	clk.Step(2 * time.Hour)
	g.Eventually(published).WithTimeout(10 * time.Second).Should(gomega.Equal([]string{second}))
}

package controllers

import (
	"context"
	"testing"
	"time"

	"github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	keycapv1alpha1 "github.com/keycap-dev/keycap/api/v1alpha1"
	"github.com/keycap-dev/keycap/internal/apptoken"
	"github.com/keycap-dev/keycap/internal/signing"
)

// operatorNamespace is the suite's Options.OperatorNamespace; the signing key set lives there.
const operatorNamespace = "keycap-system"

// ensureOperatorNamespace creates the operator namespace once for the tests that need it.
func ensureOperatorNamespace(t *testing.T) {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: operatorNamespace}}
	if err := k8sClient.Create(context.Background(), ns); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
}

// publishedVerifier verifies tokens the way the data plane does: with the public keys read from
// the published ConfigMap, not with anything the controller holds in memory.
func publishedVerifier(t *testing.T, g *gomega.WithT) *apptoken.Verifier {
	t.Helper()
	keys := signing.NewPublicKeys(k8sClient, signing.PublicKeysOptions{Namespace: operatorNamespace})
	g.Eventually(func() error { return keys.Refresh(context.Background()) }).WithTimeout(reconcileTimeout).Should(gomega.Succeed())
	return apptoken.NewVerifier(keys, apptoken.VerifierOptions{Issuer: signing.DefaultIssuer, Clock: fakeClock})
}

func tokenIn(g gomega.Gomega, namespace, name string) string {
	return string(getSecret(g, namespace, name).Data[keycapv1alpha1.AppTokenSecretKey])
}

func TestAppTokenIssuesAndRenewsSignedJWT(t *testing.T) {
	g := gomega.NewWithT(t)
	ensureOperatorNamespace(t)
	ns := newNamespace(t)
	at := newAppToken(ns, "reporting", keycapv1alpha1.AppTokenSpec{
		CredentialSpec: keycapv1alpha1.CredentialSpec{Scopes: []string{"reports:read"}},
		Audiences:      []string{"https://api.acme.example"},
		Duration:       &metav1.Duration{Duration: time.Hour},
	})
	createReady(t, g, at, keycapv1alpha1.ReasonIssued)

	token := tokenIn(g, ns, "reporting")
	v := publishedVerifier(t, g)
	claims, err := v.Verify(token, "https://api.acme.example")
	g.Expect(err).NotTo(gomega.HaveOccurred())
	g.Expect(claims.Org).To(gomega.Equal(ns))
	g.Expect(claims.Subject).To(gomega.Equal(ns + "/reporting"))
	g.Expect(claims.Scopes).To(gomega.Equal([]string{"reports:read"}))
	g.Expect(claims.KeyID).To(gomega.Equal(at.Status.KeyID))
	g.Expect(claims.SigningKeyID).To(gomega.Equal(at.Status.SigningKeyID))
	g.Expect(at.Status.IssuedAt.Time).To(gomega.BeTemporally("==", claims.IssuedAt))
	g.Expect(at.Status.TokenExpiresAt.Time).To(gomega.BeTemporally("==", claims.IssuedAt.Add(time.Hour)))
	g.Expect(at.Status.RenewAt.Time).To(gomega.BeTemporally("==", claims.IssuedAt.Add(40*time.Minute)), "renewBefore defaults to a third of duration")
	g.Expect(at.Status.Hint).To(gomega.Equal(tokenHint(token)))
	g.Expect(at.Status.Hint).NotTo(gomega.ContainSubstring(token[10:30]))
	g.Expect(toJSON(t, at.Status)).NotTo(gomega.ContainSubstring(token))

	// A reconcile that changes nothing keeps the token: observedGeneration catching up with a
	// spec change proves the reconcile ran.
	touchSpec(t, at)
	getReady(t, g, at, keycapv1alpha1.ReasonIssued)
	g.Expect(tokenIn(g, ns, "reporting")).To(gomega.Equal(token))

	// At renewAt the controller writes a new token; the old one still verifies until its exp.
	fakeClock.Step(40 * time.Minute)
	g.Eventually(func(g gomega.Gomega) { g.Expect(tokenIn(g, ns, "reporting")).NotTo(gomega.Equal(token)) }).
		WithTimeout(reconcileTimeout).Should(gomega.Succeed())
	renewed := tokenIn(g, ns, "reporting")
	getReady(t, g, at, keycapv1alpha1.ReasonIssued)
	eventuallyStored(g, at, func(g gomega.Gomega) {
		g.Expect(at.Status.IssuedAt.Time).To(gomega.BeTemporally("==", fakeClock.Now().Truncate(time.Second)))
	})
	newClaims, err := v.Verify(renewed, "")
	g.Expect(err).NotTo(gomega.HaveOccurred())
	g.Expect(newClaims.KeyID).To(gomega.Equal(claims.KeyID), "the keyID is stable across renewals")
	g.Expect(newClaims.ID).NotTo(gomega.Equal(claims.ID))
	_, err = v.Verify(token, "")
	g.Expect(err).NotTo(gomega.HaveOccurred(), "the renewed-away token is valid until its own exp")
	g.Expect(eventReasonsOf(g, ns, "reporting")).To(gomega.ContainElements(EventReasonIssued, EventReasonRenewed))
}

func eventReasonsOf(g gomega.Gomega, namespace, name string) []string {
	var reasons []string
	g.Eventually(func() []string { reasons = eventReasons(g, namespace, name); return reasons }).
		WithTimeout(reconcileTimeout).Should(gomega.ContainElement(EventReasonRenewed))
	return reasons
}

// TestInterruptedRenewalRevokesNothing is the operator stopping between a renewal's two writes:
// status already records the new token's issuedAt, the Secret still holds the token before it. The
// next reconcile must renew again without revoking that token (it is keycap's, and consumers may
// still hold it), not treat it as compromised.
func TestInterruptedRenewalRevokesNothing(t *testing.T) {
	g := gomega.NewWithT(t)
	ensureOperatorNamespace(t)
	ns := newNamespace(t)
	at := newAppToken(ns, "interrupted", keycapv1alpha1.AppTokenSpec{
		Audiences: []string{"https://api.acme.example"},
		Duration:  &metav1.Duration{Duration: time.Hour},
	})
	createReady(t, g, at, keycapv1alpha1.ReasonIssued)
	before := tokenIn(g, ns, "interrupted")
	g.Expect(k8sClient.Get(context.Background(), client.ObjectKeyFromObject(at), at)).To(gomega.Succeed())
	renewedAt := metav1.NewTime(at.Status.IssuedAt.Add(10 * time.Second))
	updateStatus(g, at, func(a *keycapv1alpha1.AppToken) { a.Status.IssuedAt = &renewedAt })

	g.Eventually(func(g gomega.Gomega) {
		g.Expect(tokenIn(g, ns, "interrupted")).NotTo(gomega.Equal(before))
	}).WithTimeout(reconcileTimeout).Should(gomega.Succeed())
	g.Expect(k8sClient.Get(context.Background(), client.ObjectKeyFromObject(at), at)).To(gomega.Succeed())
	g.Expect(at.Status.TokensNotBefore).To(gomega.BeNil(), "the token before the interrupted renewal was revoked")
	eventuallyEvents(g, ns, "interrupted", EventReasonRenewed)
}

func TestAppTokenSpecChangeReissuesAndDisableStopsRenewal(t *testing.T) {
	g := gomega.NewWithT(t)
	ensureOperatorNamespace(t)
	ns := newNamespace(t)
	at := newAppToken(ns, "ci", keycapv1alpha1.AppTokenSpec{
		CredentialSpec: keycapv1alpha1.CredentialSpec{SecretName: "ci-token"},
		Subject:        "ci-bot",
		Audiences:      []string{"builds"},
		Duration:       &metav1.Duration{Duration: time.Hour},
		RenewBefore:    &metav1.Duration{Duration: 10 * time.Minute},
	})
	createReady(t, g, at, keycapv1alpha1.ReasonIssued)
	g.Expect(at.Status.RenewAt.Time).To(gomega.BeTemporally("==", at.Status.IssuedAt.Add(50*time.Minute)))
	first := tokenIn(g, ns, "ci-token")
	v := publishedVerifier(t, g)

	update(g, at, func(at *keycapv1alpha1.AppToken) { at.Spec.Scopes = []string{"builds:write"} })
	g.Eventually(func(g gomega.Gomega) {
		claims, err := v.Verify(tokenIn(g, ns, "ci-token"), "builds")
		g.Expect(err).NotTo(gomega.HaveOccurred())
		g.Expect(claims.Scopes).To(gomega.Equal([]string{"builds:write"}))
		g.Expect(claims.Subject).To(gomega.Equal("ci-bot"))
	}).WithTimeout(reconcileTimeout).Should(gomega.Succeed())

	update(g, at, func(at *keycapv1alpha1.AppToken) { at.Spec.Disabled = true })
	getReady(t, g, at, keycapv1alpha1.ReasonDisabled)
	held := tokenIn(g, ns, "ci-token")
	g.Expect(held).NotTo(gomega.Equal(first))
	fakeClock.Step(55 * time.Minute)
	// Past renewAt: a reconcile after the step (observedGeneration of a new spec proves it ran)
	// leaves the token of a disabled AppToken as it is.
	touchSpec(t, at)
	getReady(t, g, at, keycapv1alpha1.ReasonDisabled)
	g.Expect(tokenIn(g, ns, "ci-token")).To(gomega.Equal(held), "a disabled AppToken is not renewed")

	update(g, at, func(at *keycapv1alpha1.AppToken) { at.Spec.Disabled = false })
	getReady(t, g, at, keycapv1alpha1.ReasonIssued)
	g.Eventually(func(g gomega.Gomega) { g.Expect(tokenIn(g, ns, "ci-token")).NotTo(gomega.Equal(held)) }).
		WithTimeout(reconcileTimeout).Should(gomega.Succeed(), "enabled again past renewAt: renewed at once")
}

func TestAppTokenSecretConflict(t *testing.T) {
	g := gomega.NewWithT(t)
	ctx := context.Background()
	ensureOperatorNamespace(t)
	ns := newNamespace(t)
	foreign := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "taken"}, StringData: map[string]string{"token": "mine"}}
	g.Expect(k8sClient.Create(ctx, foreign)).To(gomega.Succeed())
	at := newAppToken(ns, "taken", keycapv1alpha1.AppTokenSpec{Audiences: []string{"x"}})
	createReady(t, g, at, keycapv1alpha1.ReasonSecretConflict)
	g.Expect(string(getSecret(g, ns, "taken").Data["token"])).To(gomega.Equal("mine"))

	g.Expect(k8sClient.Delete(ctx, foreign)).To(gomega.Succeed())
	getReady(t, g, at, keycapv1alpha1.ReasonIssued)
}

func TestTokensNotBefore(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 500_000_000, time.UTC)
	at := func(t time.Time) *metav1.Time { m := metav1.NewTime(t); return &m }
	cases := map[string]struct {
		status keycapv1alpha1.AppTokenStatus
		want   time.Time
	}{
		"a token issued in an earlier second is refused from now (whole seconds)": {
			status: keycapv1alpha1.AppTokenStatus{IssuedAt: at(now.Add(-time.Minute).Truncate(time.Second))},
			want:   now.Truncate(time.Second)},
		"a token issued within the same second is refused too": {
			status: keycapv1alpha1.AppTokenStatus{IssuedAt: at(now.Truncate(time.Second))},
			want:   now.Truncate(time.Second).Add(time.Second)},
		"it never moves back": {
			status: keycapv1alpha1.AppTokenStatus{TokensNotBefore: at(now.Add(time.Hour).Truncate(time.Second))},
			want:   now.Add(time.Hour).Truncate(time.Second)},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			g := gomega.NewWithT(t)
			g.Expect(tokensNotBefore(now, &tc.status)).To(gomega.BeTemporally("==", tc.want))
		})
	}
}

package controllers

import (
	"context"
	"testing"
	"time"

	"github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	keycapv1alpha1 "github.com/keycap-dev/keycap/api/v1alpha1"
	"github.com/keycap-dev/keycap/internal/keys"
)

func newApiKey(namespace, name string) *keycapv1alpha1.ApiKey {
	return &keycapv1alpha1.ApiKey{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name}}
}

func TestApiKeyIssuesKeyIntoOwnedSecret(t *testing.T) {
	g := gomega.NewWithT(t)
	ns := newNamespace(t)
	apiKey := newApiKey(ns, "billing")
	apiKey.Spec.Prefix = "acme"
	apiKey.Spec.Scopes = []string{"videos:read"}
	apiKey.Spec.SecretTemplate = &keycapv1alpha1.SecretTemplate{
		Labels:      map[string]string{"team": "payments", keycapv1alpha1.LabelName: "forged"},
		Annotations: map[string]string{"note": "x", "keycap.dev/previous-digest": "forged"},
	}
	createReady(t, g, apiKey, keycapv1alpha1.ReasonIssued)

	secret := getSecret(g, ns, "billing")
	key := string(secret.Data[keycapv1alpha1.ApiKeySecretKey])
	g.Expect(keys.Check(key)).To(gomega.Succeed())
	g.Expect(keys.Prefix(key)).To(gomega.Equal("acme"))
	g.Expect(apiKey.Status.Digests).To(gomega.Equal([]string{keys.Digest(key)}))
	g.Expect(apiKey.Status.KeyID).To(gomega.Equal(keys.KeyID(keys.Digest(key))))
	g.Expect(apiKey.Status.Hint).To(gomega.Equal(keys.Hint(key)))
	g.Expect(apiKey.Status.SecretName).To(gomega.Equal("billing"))
	g.Expect(apiKey.Status.LastRotatedAt).NotTo(gomega.BeNil())
	g.Expect(apiKey.Status.ExpiresAt).To(gomega.BeNil())

	// Garbage collection: envtest runs no garbage collector, so assert what it acts on.
	g.Expect(secret.OwnerReferences).To(gomega.HaveLen(1))
	ref := secret.OwnerReferences[0]
	g.Expect(ref.Kind).To(gomega.Equal("ApiKey"))
	g.Expect(ref.UID).To(gomega.Equal(apiKey.UID))
	g.Expect(ref.Controller).To(gomega.Equal(ptr.To(true)))
	g.Expect(ref.BlockOwnerDeletion).To(gomega.Equal(ptr.To(true)))

	g.Expect(secret.Labels).To(gomega.Equal(map[string]string{
		"team":                        "payments",
		keycapv1alpha1.LabelManagedBy: keycapv1alpha1.ManagedByValue,
		keycapv1alpha1.LabelKind:      "ApiKey",
		keycapv1alpha1.LabelName:      "billing",
	}))
	g.Expect(secret.Annotations).To(gomega.HaveKeyWithValue("note", "x"))
	g.Expect(secret.Annotations).NotTo(gomega.HaveKey("keycap.dev/previous-digest"))

	// The key is in no status field and no event.
	eventuallyEvents(g, ns, "billing", EventReasonIssued)
	assertKeyNowhere(t, g, ns, key)
}

func TestApiKeyDefaultPrefixAndSecretName(t *testing.T) {
	g := gomega.NewWithT(t)
	ns := newNamespace(t)
	apiKey := newApiKey(ns, "default-prefix")
	apiKey.Spec.SecretName = "custom-secret"
	createReady(t, g, apiKey, keycapv1alpha1.ReasonIssued)
	key := secretKey(g, ns, "custom-secret", keycapv1alpha1.ApiKeySecretKey)
	g.Expect(keys.Prefix(key)).To(gomega.Equal(DefaultApiKeyPrefix))
	g.Expect(apiKey.Status.SecretName).To(gomega.Equal("custom-secret"))
	g.Expect(apiKey.Status.Digests).To(gomega.Equal([]string{keys.Digest(key)}))
}

func TestApiKeyDisable(t *testing.T) {
	g := gomega.NewWithT(t)
	ns := newNamespace(t)
	apiKey := newApiKey(ns, "disable-me")
	createReady(t, g, apiKey, keycapv1alpha1.ReasonIssued)
	key := secretKey(g, ns, "disable-me", keycapv1alpha1.ApiKeySecretKey)

	patch(t, apiKey, func() { apiKey.Spec.Disabled = true })
	getReady(t, g, apiKey, keycapv1alpha1.ReasonDisabled)
	g.Expect(apiKey.Status.Digests).To(gomega.Equal([]string{keys.Digest(key)}))
	g.Expect(secretKey(g, ns, "disable-me", keycapv1alpha1.ApiKeySecretKey)).To(gomega.Equal(key))

	patch(t, apiKey, func() { apiKey.Spec.Disabled = false })
	getReady(t, g, apiKey, keycapv1alpha1.ReasonIssued)
	g.Expect(secretKey(g, ns, "disable-me", keycapv1alpha1.ApiKeySecretKey)).To(gomega.Equal(key))
	g.Expect(apiKey.Status.Digests).To(gomega.Equal([]string{keys.Digest(key)}))
}

func TestApiKeyExpiresOnTime(t *testing.T) {
	g := gomega.NewWithT(t)
	ns := newNamespace(t)

	// One expires at an absolute time, one after a duration from its creation.
	at := newApiKey(ns, "expires-at")
	expiresAt := metav1.NewTime(fakeClock.Now().Add(2 * time.Hour))
	at.Spec.ExpiresAt = &expiresAt
	lifetime := newApiKey(ns, "duration")
	// Earlier tests stepped the fake clock ahead of the apiserver's, which sets the creation
	// timestamp the duration counts from: make the lifetime end 3h after the fake clock's now.
	drift := time.Until(fakeClock.Now()).Truncate(time.Second)
	lifetime.Spec.Duration = &metav1.Duration{Duration: drift + 3*time.Hour}
	for _, a := range []*keycapv1alpha1.ApiKey{at, lifetime} {
		createReady(t, g, a, keycapv1alpha1.ReasonIssued)
	}
	g.Expect(at.Status.ExpiresAt.Time).To(gomega.BeTemporally("==", expiresAt.Time))
	g.Expect(lifetime.Status.ExpiresAt.Time).To(gomega.BeTemporally("==", lifetime.CreationTimestamp.Add(lifetime.Spec.Duration.Duration)))
	g.Expect(expiryGaugeValue(keycapv1alpha1.KindApiKey, ns, "expires-at")).To(gomega.Equal(float64(expiresAt.Unix())))

	// No reconcile is triggered by the test: the controllers' RequeueAfter fires on the fake clock.
	fakeClock.Step(2*time.Hour + time.Second)
	getReady(t, g, at, keycapv1alpha1.ReasonExpired)
	getReady(t, g, lifetime, keycapv1alpha1.ReasonIssued)

	fakeClock.Step(time.Hour + time.Minute)
	getReady(t, g, lifetime, keycapv1alpha1.ReasonExpired)
	eventuallyEvents(g, ns, "duration", EventReasonExpired)
	// The key stays, so extending the lifetime restores it.
	g.Expect(lifetime.Status.Digests).To(gomega.HaveLen(1))
}

func TestApiKeyRotationKeepsPreviousKeyForGracePeriod(t *testing.T) {
	g := gomega.NewWithT(t)
	ctx := context.Background()
	ns := newNamespace(t)
	apiKey := newApiKey(ns, "rotating")
	apiKey.Spec.Rotation = &keycapv1alpha1.RotationPolicy{
		Every:       metav1.Duration{Duration: 24 * time.Hour},
		GracePeriod: &metav1.Duration{Duration: time.Hour},
	}
	createReady(t, g, apiKey, keycapv1alpha1.ReasonIssued)
	first := secretKey(g, ns, "rotating", keycapv1alpha1.ApiKeySecretKey)

	fakeClock.Step(24*time.Hour + time.Second)
	var second string
	g.Eventually(func(g gomega.Gomega) {
		second = secretKey(g, ns, "rotating", keycapv1alpha1.ApiKeySecretKey)
		g.Expect(second).NotTo(gomega.Equal(first))
		g.Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(apiKey), apiKey)).To(gomega.Succeed())
		g.Expect(apiKey.Status.Digests).To(gomega.Equal([]string{keys.Digest(second), keys.Digest(first)}))
	}).WithTimeout(reconcileTimeout).Should(gomega.Succeed())
	g.Expect(apiKey.Status.PreviousKeyValidUntil).NotTo(gomega.BeNil())
	g.Expect(apiKey.Status.PreviousKeyValidUntil.Time).To(gomega.BeTemporally("==", apiKey.Status.LastRotatedAt.Add(time.Hour)))
	g.Expect(apiKey.Status.KeyID).To(gomega.Equal(keys.KeyID(keys.Digest(second))))

	// The grace period ends on the fake clock: the previous digest goes, the current key stays.
	fakeClock.Step(time.Hour + time.Second)
	eventuallyStored(g, apiKey, func(g gomega.Gomega) {
		g.Expect(apiKey.Status.Digests).To(gomega.Equal([]string{keys.Digest(second)}))
		g.Expect(apiKey.Status.PreviousKeyValidUntil).To(gomega.BeNil())
	})
	g.Expect(secretKey(g, ns, "rotating", keycapv1alpha1.ApiKeySecretKey)).To(gomega.Equal(second))
	eventuallyEvents(g, ns, "rotating", EventReasonRotated, EventReasonGracePeriodEnded)
}

// TestInterruptedRotationKeepsTheGracePeriod is the operator stopping between a rotation's two
// writes: status already lists a new key (which never reached the Secret) and keeps the Secret's
// key as the previous one in its grace period. The next reconcile must complete the rotation with
// another new key and keep the grace period, not treat the Secret's key as compromised.
func TestInterruptedRotationKeepsTheGracePeriod(t *testing.T) {
	g := gomega.NewWithT(t)
	ns := newNamespace(t)
	apiKey := newApiKey(ns, "interrupted")
	apiKey.Spec.Rotation = &keycapv1alpha1.RotationPolicy{
		Every:       metav1.Duration{Duration: 24 * time.Hour},
		GracePeriod: &metav1.Duration{Duration: time.Hour},
	}
	createReady(t, g, apiKey, keycapv1alpha1.ReasonIssued)
	old := secretKey(g, ns, "interrupted", keycapv1alpha1.ApiKeySecretKey)

	// What a rotation writes to status before its Secret write.
	lost, err := keys.Generate("kc")
	g.Expect(err).NotTo(gomega.HaveOccurred())
	rotatedAt := metav1.NewTime(fakeClock.Now().Truncate(time.Second))
	until := metav1.NewTime(rotatedAt.Add(time.Hour))
	updateStatus(g, apiKey, func(k *keycapv1alpha1.ApiKey) {
		k.Status.Digests = []string{keys.Digest(lost), keys.Digest(old)}
		k.Status.PreviousKeyValidUntil = &until
		k.Status.LastRotatedAt = &rotatedAt
		k.Status.KeyID = keys.KeyID(keys.Digest(lost))
	})

	var current string
	g.Eventually(func(g gomega.Gomega) {
		current = secretKey(g, ns, "interrupted", keycapv1alpha1.ApiKeySecretKey)
		g.Expect(current).NotTo(gomega.Equal(old))
		g.Expect(k8sClient.Get(context.Background(), client.ObjectKeyFromObject(apiKey), apiKey)).To(gomega.Succeed())
		g.Expect(apiKey.Status.Digests).To(gomega.Equal([]string{keys.Digest(current), keys.Digest(old)}))
	}).WithTimeout(reconcileTimeout).Should(gomega.Succeed())
	g.Expect(current).NotTo(gomega.Equal(lost))
	g.Expect(apiKey.Status.PreviousKeyValidUntil.Time).To(gomega.BeTemporally("==", until.Time))
	eventuallyEvents(g, ns, "interrupted", EventReasonRotated)
}

func TestApiKeyRotateAnnotation(t *testing.T) {
	g := gomega.NewWithT(t)
	ctx := context.Background()
	ns := newNamespace(t)
	apiKey := newApiKey(ns, "rotate-on-demand")
	apiKey.Annotations = map[string]string{keycapv1alpha1.AnnotationRotate: "created-with-it"}
	createReady(t, g, apiKey, keycapv1alpha1.ReasonIssued)
	first := secretKey(g, ns, "rotate-on-demand", keycapv1alpha1.ApiKeySecretKey)

	// An annotation present at creation does not rotate the first key.
	touchSpec(t, apiKey)
	getReady(t, g, apiKey, keycapv1alpha1.ReasonIssued)
	g.Expect(secretKey(g, ns, "rotate-on-demand", keycapv1alpha1.ApiKeySecretKey)).To(gomega.Equal(first))

	patch(t, apiKey, func() { apiKey.Annotations[keycapv1alpha1.AnnotationRotate] = "2026-01-01T00:00:00Z" })
	var second string
	g.Eventually(func(g gomega.Gomega) {
		second = secretKey(g, ns, "rotate-on-demand", keycapv1alpha1.ApiKeySecretKey)
		g.Expect(second).NotTo(gomega.Equal(first))
		g.Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(apiKey), apiKey)).To(gomega.Succeed())
		// Without a rotation policy there is no grace period: the old key stops at once.
		g.Expect(apiKey.Status.Digests).To(gomega.Equal([]string{keys.Digest(second)}))
	}).WithTimeout(reconcileTimeout).Should(gomega.Succeed())

	// The same value again does not rotate again.
	touchSpec(t, apiKey)
	getReady(t, g, apiKey, keycapv1alpha1.ReasonIssued)
	g.Expect(secretKey(g, ns, "rotate-on-demand", keycapv1alpha1.ApiKeySecretKey)).To(gomega.Equal(second))
}

func TestApiKeyDeletedSecretIsReissued(t *testing.T) {
	g := gomega.NewWithT(t)
	ctx := context.Background()
	ns := newNamespace(t)
	apiKey := newApiKey(ns, "reissue")
	createReady(t, g, apiKey, keycapv1alpha1.ReasonIssued)
	first := secretKey(g, ns, "reissue", keycapv1alpha1.ApiKeySecretKey)

	g.Expect(k8sClient.Delete(ctx, getSecret(g, ns, "reissue"))).To(gomega.Succeed())
	g.Eventually(func(g gomega.Gomega) {
		second := secretKey(g, ns, "reissue", keycapv1alpha1.ApiKeySecretKey)
		g.Expect(keys.Check(second)).To(gomega.Succeed())
		g.Expect(second).NotTo(gomega.Equal(first))
		g.Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(apiKey), apiKey)).To(gomega.Succeed())
		// The old key is invalid at once: only the new digest is listed.
		g.Expect(apiKey.Status.Digests).To(gomega.Equal([]string{keys.Digest(second)}))
	}).WithTimeout(reconcileTimeout).Should(gomega.Succeed())
	eventuallyEvents(g, ns, "reissue", EventReasonReissued)
}

func TestApiKeySecretEditedIsReissued(t *testing.T) {
	g := gomega.NewWithT(t)
	ctx := context.Background()
	ns := newNamespace(t)
	apiKey := newApiKey(ns, "tampered")
	createReady(t, g, apiKey, keycapv1alpha1.ReasonIssued)

	// Someone writes a well-formed key of their choosing into the Secret: it is not trusted.
	chosen, err := keys.Generate(DefaultApiKeyPrefix)
	g.Expect(err).NotTo(gomega.HaveOccurred())
	secret := getSecret(g, ns, "tampered")
	secret.Data[keycapv1alpha1.ApiKeySecretKey] = []byte(chosen)
	g.Expect(k8sClient.Update(ctx, secret)).To(gomega.Succeed())
	g.Eventually(func(g gomega.Gomega) {
		now := secretKey(g, ns, "tampered", keycapv1alpha1.ApiKeySecretKey)
		g.Expect(now).NotTo(gomega.Equal(chosen))
		g.Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(apiKey), apiKey)).To(gomega.Succeed())
		g.Expect(apiKey.Status.Digests).To(gomega.Equal([]string{keys.Digest(now)}))
	}).WithTimeout(reconcileTimeout).Should(gomega.Succeed())
	g.Expect(apiKey.Status.Digests).NotTo(gomega.ContainElement(keys.Digest(chosen)))
}

func TestApiKeyKeepsKeyAcrossManagerRestart(t *testing.T) {
	g := gomega.NewWithT(t)
	ns := newNamespace(t)
	apiKey := newApiKey(ns, "survivor")
	apiKey.Spec.Rotation = &keycapv1alpha1.RotationPolicy{
		Every:       metav1.Duration{Duration: 24 * time.Hour},
		GracePeriod: &metav1.Duration{Duration: 12 * time.Hour},
	}
	createReady(t, g, apiKey, keycapv1alpha1.ReasonIssued)
	// Rotate once, so that the previous key in its grace period must survive the restart too.
	fakeClock.Step(24*time.Hour + time.Second)
	// Status is written before the Secret (a rotation's two writes), so wait for both.
	var key string
	eventuallyStored(g, apiKey, func(g gomega.Gomega) {
		g.Expect(apiKey.Status.Digests).To(gomega.HaveLen(2))
		key = secretKey(g, ns, "survivor", keycapv1alpha1.ApiKeySecretKey)
		g.Expect(keys.Digest(key)).To(gomega.Equal(apiKey.Status.Digests[0]))
	})
	before := apiKey.Status.DeepCopy()

	stopManager()
	var err error
	stopManager, err = startManager()
	g.Expect(err).NotTo(gomega.HaveOccurred())

	// A spec change moves the generation: Ready for it proves the new manager reconciled.
	touchSpec(t, apiKey)
	getReady(t, g, apiKey, keycapv1alpha1.ReasonIssued)
	g.Expect(secretKey(g, ns, "survivor", keycapv1alpha1.ApiKeySecretKey)).To(gomega.Equal(key))
	g.Expect(apiKey.Status.Digests).To(gomega.Equal(before.Digests))
	g.Expect(apiKey.Status.KeyID).To(gomega.Equal(before.KeyID))
	g.Expect(apiKey.Status.LastRotatedAt.Time).To(gomega.BeTemporally("==", before.LastRotatedAt.Time))
	g.Expect(apiKey.Status.PreviousKeyValidUntil.Time).To(gomega.BeTemporally("==", before.PreviousKeyValidUntil.Time))
	g.Expect(eventReasons(g, ns, "survivor")).NotTo(gomega.ContainElement(EventReasonReissued))

	// The new manager still ends the grace period on time.
	fakeClock.Step(12*time.Hour + time.Second)
	eventuallyStored(g, apiKey, func(g gomega.Gomega) {
		g.Expect(apiKey.Status.Digests).To(gomega.Equal(before.Digests[:1]))
	})
}

func TestApiKeyKeyHash(t *testing.T) {
	g := gomega.NewWithT(t)
	ctx := context.Background()
	ns := newNamespace(t)
	userKey := "whatever-format-the-user-likes"
	digest := keys.Digest(userKey)
	apiKey := newApiKey(ns, "byo")
	apiKey.Spec.KeyHash = "sha256:" + digest
	createReady(t, g, apiKey, keycapv1alpha1.ReasonIssued)
	g.Expect(apiKey.Status.Digests).To(gomega.Equal([]string{digest}))
	g.Expect(apiKey.Status.KeyID).To(gomega.Equal(keys.KeyID(digest)))
	g.Expect(apiKey.Status.SecretName).To(gomega.BeEmpty())
	g.Expect(apiKey.Status.Hint).To(gomega.BeEmpty())

	// No Secret at all: keycap holds nothing secret for a bring-your-own key.
	var secret corev1.Secret
	err := k8sClient.Get(ctx, client.ObjectKeyFromObject(apiKey), &secret)
	g.Expect(apierrors.IsNotFound(err)).To(gomega.BeTrue(), "expected no Secret, got %v", err)

	// Changing the digest replaces it.
	other := keys.Digest("another key")
	patch(t, apiKey, func() { apiKey.Spec.KeyHash = "sha256:" + other })
	getReady(t, g, apiKey, keycapv1alpha1.ReasonIssued)
	g.Expect(apiKey.Status.Digests).To(gomega.Equal([]string{other}))
}

func TestApiKeySecretConflict(t *testing.T) {
	g := gomega.NewWithT(t)
	ctx := context.Background()
	ns := newNamespace(t)
	foreign := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "taken"},
		Data:       map[string][]byte{"password": []byte("hunter2")},
	}
	g.Expect(k8sClient.Create(ctx, foreign)).To(gomega.Succeed())
	apiKey := newApiKey(ns, "conflicted")
	apiKey.Spec.SecretName = "taken"
	createReady(t, g, apiKey, keycapv1alpha1.ReasonSecretConflict)
	g.Expect(apiKey.Status.Digests).To(gomega.BeEmpty())
	eventuallyEvents(g, ns, "conflicted", keycapv1alpha1.ReasonSecretConflict)

	after := getSecret(g, ns, "taken")
	g.Expect(after.ResourceVersion).To(gomega.Equal(foreign.ResourceVersion))
	g.Expect(after.Data).To(gomega.Equal(foreign.Data))
	g.Expect(after.OwnerReferences).To(gomega.BeEmpty())

	// Once the foreign Secret is gone, the ApiKey is issued without any further change to it.
	g.Expect(k8sClient.Delete(ctx, after)).To(gomega.Succeed())
	getReady(t, g, apiKey, keycapv1alpha1.ReasonIssued)
	g.Expect(apiKey.Status.Digests).To(gomega.Equal([]string{keys.Digest(secretKey(g, ns, "taken", keycapv1alpha1.ApiKeySecretKey))}))
}

func TestApiKeyStatusPatchKeepsLastUsedAt(t *testing.T) {
	g := gomega.NewWithT(t)
	ctx := context.Background()
	ns := newNamespace(t)
	apiKey := newApiKey(ns, "used")
	createReady(t, g, apiKey, keycapv1alpha1.ReasonIssued)

	// The data plane's write: a merge patch of lastUsedAt alone.
	used := metav1.NewTime(time.Now().Add(-time.Minute).Truncate(time.Second))
	raw := client.RawPatch("application/merge-patch+json", []byte(`{"status":{"lastUsedAt":"`+used.UTC().Format(time.RFC3339)+`"}}`))
	g.Expect(k8sClient.Status().Patch(ctx, apiKey, raw)).To(gomega.Succeed())

	// A status change by the controller (disable) leaves it.
	patch(t, apiKey, func() { apiKey.Spec.Disabled = true })
	getReady(t, g, apiKey, keycapv1alpha1.ReasonDisabled)
	g.Expect(apiKey.Status.LastUsedAt).NotTo(gomega.BeNil())
	g.Expect(apiKey.Status.LastUsedAt.Time).To(gomega.BeTemporally("==", used.Time))
}

func TestApiKeyDeletedForgetsMetrics(t *testing.T) {
	g := gomega.NewWithT(t)
	ctx := context.Background()
	ns := newNamespace(t)
	apiKey := newApiKey(ns, "short-lived")
	expiresAt := metav1.NewTime(fakeClock.Now().Add(100 * time.Hour))
	apiKey.Spec.ExpiresAt = &expiresAt
	createReady(t, g, apiKey, keycapv1alpha1.ReasonIssued)
	g.Expect(expiryGaugeValue(keycapv1alpha1.KindApiKey, ns, "short-lived")).To(gomega.Equal(float64(expiresAt.Unix())))

	g.Expect(k8sClient.Delete(ctx, apiKey)).To(gomega.Succeed())
	g.Eventually(func() bool { return expiryGaugeExists(keycapv1alpha1.KindApiKey, ns, "short-lived") }).
		WithTimeout(reconcileTimeout).Should(gomega.BeFalse())
}

// assertKeyNowhere fails if key appears in the status or events of the namespace.
func assertKeyNowhere(t *testing.T, g *gomega.WithT, namespace, key string) {
	t.Helper()
	var list keycapv1alpha1.ApiKeyList
	g.Expect(k8sClient.List(context.Background(), &list, client.InNamespace(namespace))).To(gomega.Succeed())
	for _, a := range list.Items {
		g.Expect(toJSON(t, a.Status)).NotTo(gomega.ContainSubstring(key))
	}
	var events corev1.EventList
	g.Expect(k8sClient.List(context.Background(), &events, client.InNamespace(namespace))).To(gomega.Succeed())
	g.Expect(toJSON(t, events)).NotTo(gomega.ContainSubstring(key))
	g.Expect(toJSON(t, eventsV1(g, namespace))).NotTo(gomega.ContainSubstring(key))
}

func TestApiKeySecretNameSetLaterMovesTheKey(t *testing.T) {
	g := gomega.NewWithT(t)
	ctx := context.Background()
	ns := newNamespace(t)
	apiKey := newApiKey(ns, "moving")
	createReady(t, g, apiKey, keycapv1alpha1.ReasonIssued)
	first := secretKey(g, ns, "moving", keycapv1alpha1.ApiKeySecretKey)

	// secretName may be set once when it was empty (CEL forbids only changing it).
	patch(t, apiKey, func() { apiKey.Spec.SecretName = "moved" })
	getReady(t, g, apiKey, keycapv1alpha1.ReasonIssued)
	second := secretKey(g, ns, "moved", keycapv1alpha1.ApiKeySecretKey)
	g.Expect(second).NotTo(gomega.Equal(first))
	g.Expect(apiKey.Status.SecretName).To(gomega.Equal("moved"))
	g.Expect(apiKey.Status.Digests).To(gomega.Equal([]string{keys.Digest(second)}))
	g.Eventually(func() bool {
		var old corev1.Secret
		return apierrors.IsNotFound(k8sClient.Get(ctx, client.ObjectKey{Namespace: ns, Name: "moving"}, &old))
	}).WithTimeout(reconcileTimeout).Should(gomega.BeTrue())
}

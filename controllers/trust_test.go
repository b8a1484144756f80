package controllers

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	keycapv1alpha1 "github.com/keycap-dev/keycap/api/v1alpha1"
	"github.com/keycap-dev/keycap/internal/keys"
)

// These tests run without the admission webhook (the suite installs none), as with the webhook
// down: the controller alone must not trust what a tenant wrote.

// forgedAnnotations are lifecycle annotations a tenant writes to extend a key's life and slip
// another tenant's digest into status.
func forgedAnnotations(key, otherDigest string) map[string]string {
	return map[string]string{
		keycapv1alpha1.AnnotationKeyID: keys.KeyID(keys.Digest(key)),
		annotationIssuedAt:             "2099-01-01T00:00:00Z",
		annotationPreviousDigest:       otherDigest,
		annotationPreviousValidUntil:   "2099-06-01T00:00:00Z",
	}
}

// otherTenantDigest issues an ApiKey in a namespace of its own and returns its digest.
func otherTenantDigest(t *testing.T, g *gomega.WithT) string {
	t.Helper()
	victim := newApiKey(newNamespace(t), "victim")
	createReady(t, g, victim, keycapv1alpha1.ReasonIssued)
	return victim.Status.Digests[0]
}

func TestPlantedSecretIsNotAdopted(t *testing.T) {
	g := gomega.NewWithT(t)
	ctx := context.Background()
	otherDigest := otherTenantDigest(t, g)
	ns := newNamespace(t)
	apiKey := newApiKey(ns, "mine")
	apiKey.Spec.Rotation = rotationEvery(720*time.Hour, time.Hour)
	createReady(t, g, apiKey, keycapv1alpha1.ReasonIssued)
	issued := apiKey.Status.DeepCopy()

	// A Secret that claims everything a managed Secret has: keycap's labels, a controller owner
	// reference to the ApiKey, a well-formed key of the tenant's choosing, forged annotations.
	chosen, err := keys.Generate(DefaultApiKeyPrefix)
	g.Expect(err).NotTo(gomega.HaveOccurred())
	planted := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: ns, Name: "planted",
			Labels: map[string]string{
				keycapv1alpha1.LabelManagedBy: keycapv1alpha1.ManagedByValue,
				keycapv1alpha1.LabelKind:      keycapv1alpha1.KindApiKey, keycapv1alpha1.LabelName: "mine",
			},
			Annotations: forgedAnnotations(chosen, otherDigest),
			OwnerReferences: []metav1.OwnerReference{{
				APIVersion: keycapv1alpha1.GroupVersion.String(), Kind: keycapv1alpha1.KindApiKey,
				Name: "mine", UID: apiKey.UID, Controller: ptr.To(true), BlockOwnerDeletion: ptr.To(true),
			}},
		},
		Data: map[string][]byte{keycapv1alpha1.ApiKeySecretKey: []byte(chosen)},
	}
	g.Expect(k8sClient.Create(ctx, planted)).To(gomega.Succeed())
	patch(t, apiKey, func() { apiKey.Spec.SecretName = "planted" })

	getReady(t, g, apiKey, keycapv1alpha1.ReasonSecretConflict)
	g.Expect(apiKey.Status.Digests).To(gomega.Equal(issued.Digests), "neither the planted key nor the forged previous digest reaches status")
	g.Expect(apiKey.Status.LastRotatedAt.Time).To(gomega.BeTemporally("==", issued.LastRotatedAt.Time))
	g.Expect(apiKey.Status.PreviousKeyValidUntil).To(gomega.BeNil())
	after := getSecret(g, ns, "planted")
	g.Expect(after.ResourceVersion).To(gomega.Equal(planted.ResourceVersion), "keycap does not overwrite a Secret it did not create")
}

func TestForgedLifecycleAnnotationsAreNotBelieved(t *testing.T) {
	g := gomega.NewWithT(t)
	ctx := context.Background()
	otherDigest := otherTenantDigest(t, g)
	ns := newNamespace(t)
	apiKey := newApiKey(ns, "annotated")
	apiKey.Spec.Rotation = rotationEvery(720*time.Hour, time.Hour)
	createReady(t, g, apiKey, keycapv1alpha1.ReasonIssued)
	issued := apiKey.Status.DeepCopy()

	// The managed Secret keeps its key; only its lifecycle annotations are forged.
	secret := getSecret(g, ns, "annotated")
	key := string(secret.Data[keycapv1alpha1.ApiKeySecretKey])
	secret.Annotations = forgedAnnotations(key, otherDigest)
	g.Expect(k8sClient.Update(ctx, secret)).To(gomega.Succeed())

	touchSpec(t, apiKey)
	getReady(t, g, apiKey, keycapv1alpha1.ReasonIssued)
	g.Expect(apiKey.Status.Digests).To(gomega.Equal([]string{keys.Digest(key)}), "the forged previous digest is not listed")
	g.Expect(apiKey.Status.LastRotatedAt.Time).To(gomega.BeTemporally("==", issued.LastRotatedAt.Time))
	g.Expect(apiKey.Status.PreviousKeyValidUntil).To(gomega.BeNil())
	eventuallyStored(g, secret, func(g gomega.Gomega) {
		g.Expect(secret.Annotations[annotationIssuedAt]).To(gomega.Equal(issued.LastRotatedAt.UTC().Format(time.RFC3339)), "the Secret's annotations are rewritten from status")
		g.Expect(secret.Annotations).NotTo(gomega.HaveKey(annotationPreviousDigest))
	})
}

func TestSecretThatLostItsOwnerReferenceKeepsRotating(t *testing.T) {
	g := gomega.NewWithT(t)
	ctx := context.Background()
	ns := newNamespace(t)
	apiKey := newApiKey(ns, "orphaned")
	apiKey.Spec.Rotation = rotationEvery(24*time.Hour, time.Hour)
	createReady(t, g, apiKey, keycapv1alpha1.ReasonIssued)
	first := secretKey(g, ns, "orphaned", keycapv1alpha1.ApiKeySecretKey)

	secret := getSecret(g, ns, "orphaned")
	secret.OwnerReferences = nil
	g.Expect(k8sClient.Update(ctx, secret)).To(gomega.Succeed())
	eventuallyStored(g, secret, func(g gomega.Gomega) {
		g.Expect(metav1.IsControlledBy(secret, apiKey)).To(gomega.BeTrue(), "keycap puts its owner reference back")
	})
	eventuallyEvents(g, ns, "orphaned", EventReasonSecretRestored)
	g.Expect(string(secret.Data[keycapv1alpha1.ApiKeySecretKey])).To(gomega.Equal(first))

	fakeClock.Step(24*time.Hour + time.Second)
	eventuallyStored(g, apiKey, func(g gomega.Gomega) {
		g.Expect(apiKey.Status.Digests).To(gomega.HaveLen(2))
		g.Expect(apiKey.Status.Digests[1]).To(gomega.Equal(keys.Digest(first)), "rotation goes on")
	})
}

func TestSecretTakenOverIsRevoked(t *testing.T) {
	g := gomega.NewWithT(t)
	ctx := context.Background()
	ns := newNamespace(t)
	apiKey := newApiKey(ns, "taken-over")
	createReady(t, g, apiKey, keycapv1alpha1.ReasonIssued)

	// The managed Secret loses its owner reference and gets another key: keycap can no longer
	// manage it, and the key status listed must not keep working unmanaged.
	chosen, err := keys.Generate(DefaultApiKeyPrefix)
	g.Expect(err).NotTo(gomega.HaveOccurred())
	secret := getSecret(g, ns, "taken-over")
	secret.OwnerReferences = nil
	secret.Data[keycapv1alpha1.ApiKeySecretKey] = []byte(chosen)
	g.Expect(k8sClient.Update(ctx, secret)).To(gomega.Succeed())

	eventuallyStored(g, apiKey, func(g gomega.Gomega) {
		g.Expect(readyReason(&apiKey.Status.CredentialStatus)).To(gomega.Equal(keycapv1alpha1.ReasonSecretConflict))
		g.Expect(apiKey.Status.Digests).To(gomega.BeEmpty())
	})
	g.Expect(secretKey(g, ns, "taken-over", keycapv1alpha1.ApiKeySecretKey)).To(gomega.Equal(chosen), "not overwritten")
}

func TestTamperedKeyIsTreatedAsCompromised(t *testing.T) {
	g := gomega.NewWithT(t)
	ctx := context.Background()
	ns := newNamespace(t)
	apiKey := newApiKey(ns, "compromised")
	apiKey.Spec.Rotation = rotationEvery(24*time.Hour, 24*time.Hour-time.Minute)
	createReady(t, g, apiKey, keycapv1alpha1.ReasonIssued)
	first := secretKey(g, ns, "compromised", keycapv1alpha1.ApiKeySecretKey)

	chosen, err := keys.Generate(DefaultApiKeyPrefix)
	g.Expect(err).NotTo(gomega.HaveOccurred())
	secret := getSecret(g, ns, "compromised")
	secret.Data[keycapv1alpha1.ApiKeySecretKey] = []byte(chosen)
	g.Expect(k8sClient.Update(ctx, secret)).To(gomega.Succeed())

	eventuallyStored(g, apiKey, func(g gomega.Gomega) {
		now := secretKey(g, ns, "compromised", keycapv1alpha1.ApiKeySecretKey)
		g.Expect(now).NotTo(gomega.Or(gomega.Equal(first), gomega.Equal(chosen)))
		g.Expect(apiKey.Status.Digests).To(gomega.Equal([]string{keys.Digest(now)}), "no grace period, despite spec.rotation.gracePeriod")
	})
	g.Eventually(func(g gomega.Gomega) {
		g.Expect(eventNotes(g, ns, "compromised", EventReasonReissued)).To(gomega.ContainElement(gomega.ContainSubstring("treated as compromised")))
	}).WithTimeout(reconcileTimeout).Should(gomega.Succeed())
}

// eventNotes lists the notes of the Events with reason about the object named name.
func eventNotes(g gomega.Gomega, namespace, name, reason string) []string {
	var notes []string
	for _, e := range eventsV1(g, namespace).Items {
		if e.Regarding.Name == name && e.Reason == reason {
			notes = append(notes, e.Note)
		}
	}
	return notes
}

func TestDuplicateKeyHashOldestWins(t *testing.T) {
	g := gomega.NewWithT(t)
	ctx := context.Background()
	digest := keys.Digest("a key two tenants raced for " + time.Now().String())
	var racers []*keycapv1alpha1.ApiKey
	for _, name := range []string{"first", "second", "third"} {
		a := newApiKey(newNamespace(t), name)
		a.Spec.KeyHash = "sha256:" + digest
		g.Expect(k8sClient.Create(ctx, a)).To(gomega.Succeed())
		racers = append(racers, a)
	}
	oldest := func(live []*keycapv1alpha1.ApiKey) (*keycapv1alpha1.ApiKey, []*keycapv1alpha1.ApiKey) {
		win := live[0]
		for _, a := range live[1:] {
			if olderThan(a, win) {
				win = a
			}
		}
		var rest []*keycapv1alpha1.ApiKey
		for _, a := range live {
			if a != win {
				rest = append(rest, a)
			}
		}
		return win, rest
	}
	check := func(live []*keycapv1alpha1.ApiKey) *keycapv1alpha1.ApiKey {
		win, losers := oldest(live)
		getReady(t, g, win, keycapv1alpha1.ReasonIssued)
		g.Expect(win.Status.Digests).To(gomega.Equal([]string{digest}))
		for _, l := range losers {
			getReady(t, g, l, keycapv1alpha1.ReasonDuplicateKey)
			g.Expect(l.Status.Digests).To(gomega.BeEmpty(), "the data plane serves only the oldest")
			cond := meta.FindStatusCondition(l.Status.Conditions, keycapv1alpha1.ConditionReady)
			for _, other := range live {
				if other != l {
					g.Expect(cond.Message).NotTo(gomega.ContainSubstring(other.Namespace), "names no other tenant's object")
				}
			}
		}
		return win
	}
	win := check(racers)

	// The oldest goes: the next one takes the key over.
	g.Expect(k8sClient.Delete(ctx, win)).To(gomega.Succeed())
	var live []*keycapv1alpha1.ApiKey
	for _, a := range racers {
		if a != win {
			live = append(live, a)
		}
	}
	check(live)
}

func TestAppTokenDeletedOrForgedSecretRevokesTokens(t *testing.T) {
	g := gomega.NewWithT(t)
	ctx := context.Background()
	ensureOperatorNamespace(t)
	ns := newNamespace(t)
	at := newAppToken(ns, "revocable", keycapv1alpha1.AppTokenSpec{Audiences: []string{"api"}})
	createReady(t, g, at, keycapv1alpha1.ReasonIssued)
	g.Expect(at.Status.TokensNotBefore).To(gomega.BeNil())
	v := publishedVerifier(t, g)

	for _, change := range []struct {
		what string
		do   func(*corev1.Secret)
	}{
		{"deleted", func(s *corev1.Secret) { g.Expect(k8sClient.Delete(ctx, s)).To(gomega.Succeed()) }},
		{"holding a token keycap did not issue", func(s *corev1.Secret) {
			s.Data[keycapv1alpha1.AppTokenSecretKey] = []byte("eyJhbGciOiJub25lIn0.eyJzdWIiOiJtZSJ9.")
			g.Expect(k8sClient.Update(ctx, s)).To(gomega.Succeed())
		}},
	} {
		old := tokenIn(g, ns, "revocable")
		oldClaims, err := v.Verify(old, "")
		g.Expect(err).NotTo(gomega.HaveOccurred())
		fakeClock.Step(5 * time.Second)
		change.do(getSecret(g, ns, "revocable"))

		// Status (tokensNotBefore) is written before the Secret, so for a moment the Secret can
		// still hold the forged token: wait for one keycap signed.
		eventuallyStored(g, at, func(g gomega.Gomega) {
			g.Expect(at.Status.TokensNotBefore).NotTo(gomega.BeNil(), change.what)
			g.Expect(at.Status.TokensNotBefore.Time).To(gomega.BeTemporally(">", oldClaims.IssuedAt), "the old token is refused")
			fresh := tokenIn(g, ns, "revocable")
			g.Expect(fresh).NotTo(gomega.Equal(old))
			claims, err := v.Verify(fresh, "")
			g.Expect(err).NotTo(gomega.HaveOccurred(), "the Secret holds a token keycap signed")
			g.Expect(claims.IssuedAt).NotTo(gomega.BeTemporally("<", at.Status.TokensNotBefore.Time), "the new token is not refused")
		})
		g.Eventually(func(g gomega.Gomega) {
			g.Expect(eventNotes(g, ns, "revocable", EventReasonReissued)).To(gomega.ContainElement(gomega.ContainSubstring("tokensNotBefore")))
		}).WithTimeout(reconcileTimeout).Should(gomega.Succeed())
	}
}

func TestSigningKeysUnavailableLeavesObservedGeneration(t *testing.T) {
	g := gomega.NewWithT(t)
	ns := newNamespace(t)
	// A manager whose signing key set lives in a namespace that does not exist cannot load it.
	stopManager()
	var err error
	stopManager, err = startManagerWith(Options{Clock: fakeClock, OperatorNamespace: "no-such-namespace"})
	g.Expect(err).NotTo(gomega.HaveOccurred())

	at := newAppToken(ns, "unsigned", keycapv1alpha1.AppTokenSpec{Audiences: []string{"api"}})
	createReady(t, g, at, keycapv1alpha1.ReasonSigningKeyUnavailable)
	g.Expect(at.Status.ObservedGeneration).NotTo(gomega.Equal(at.Generation), "a failure does not claim the spec was acted on")
	lic := newLicense(ns, "unsigned-licence", keycapv1alpha1.LicenseSpec{Product: "cap"})
	createReady(t, g, lic, keycapv1alpha1.ReasonSigningKeyUnavailable)
	g.Expect(lic.Status.ObservedGeneration).NotTo(gomega.Equal(lic.Generation))

	stopManager()
	stopManager, err = startManager()
	g.Expect(err).NotTo(gomega.HaveOccurred())
	ensureOperatorNamespace(t)
	touchSpec(t, at)
	getReady(t, g, at, keycapv1alpha1.ReasonIssued)
}

func TestNamespaceBeingDeletedIsNotAnError(t *testing.T) {
	g := gomega.NewWithT(t)
	ctx := context.Background()
	ns := newNamespace(t)
	apiKey := newApiKey(ns, "departing")
	createReady(t, g, apiKey, keycapv1alpha1.ReasonIssued)

	// envtest runs no namespace controller: the namespace stays Terminating, and the apiserver
	// refuses creates in it, as it does while a cluster's namespace controller empties it.
	var namespace corev1.Namespace
	g.Expect(k8sClient.Get(ctx, client.ObjectKey{Name: ns}, &namespace)).To(gomega.Succeed())
	g.Expect(k8sClient.Delete(ctx, &namespace)).To(gomega.Succeed())
	g.Eventually(func(g gomega.Gomega) {
		probe := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, GenerateName: "probe-"}}
		err := k8sClient.Create(ctx, probe)
		g.Expect(apierrors.HasStatusCause(err, corev1.NamespaceTerminatingCause)).To(gomega.BeTrue(), "%v", err)
	}).WithTimeout(reconcileTimeout).Should(gomega.Succeed())

	g.Expect(k8sClient.Delete(ctx, getSecret(g, ns, "departing"))).To(gomega.Succeed())
	eventuallyStored(g, apiKey, func(g gomega.Gomega) {
		g.Expect(readyReason(&apiKey.Status.CredentialStatus)).To(gomega.Equal(keycapv1alpha1.ReasonNamespaceTerminating))
		g.Expect(apiKey.Status.ObservedGeneration).To(gomega.Equal(apiKey.Generation), "expected, not a failure")
		g.Expect(apiKey.Status.Digests).To(gomega.BeEmpty(), "the deleted Secret's key stops being valid")
	})
	for _, e := range eventsV1(g, ns).Items {
		g.Expect(strings.ToLower(e.Type)).NotTo(gomega.Equal("warning"), "%s: %s", e.Reason, e.Note)
	}
}

package controllers

import (
	"context"
	"testing"
	"time"

	"github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	keycapv1alpha1 "github.com/keycap-dev/keycap/api/v1alpha1"
	"github.com/keycap-dev/keycap/internal/keys"
)

func newAgentKey(namespace, name, parent, agent string) *keycapv1alpha1.AgentKey {
	return &keycapv1alpha1.AgentKey{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name},
		Spec: keycapv1alpha1.AgentKeySpec{
			APIKeyRef: keycapv1alpha1.ApiKeyReference{Name: parent},
			Agent:     agent,
		},
	}
}

func TestAgentKeyFollowsItsParent(t *testing.T) {
	g := gomega.NewWithT(t)
	ns := newNamespace(t)
	parent := newApiKey(ns, "account")
	parent.Spec.Scopes = []string{"videos:read", "videos:write"}
	createReady(t, g, parent, keycapv1alpha1.ReasonIssued)

	agent := newAgentKey(ns, "bot-1", "account", "agent-42")
	agent.Spec.Scopes = []string{"videos:read"}
	createReady(t, g, agent, keycapv1alpha1.ReasonIssued)

	// Its own Secret, with agent-key, owned by the AgentKey.
	secret := getSecret(g, ns, "bot-1")
	key := string(secret.Data[keycapv1alpha1.AgentKeySecretKey])
	g.Expect(keys.Check(key)).To(gomega.Succeed())
	g.Expect(keys.Prefix(key)).To(gomega.Equal(keycapv1alpha1.AgentKeyPrefix))
	g.Expect(secret.Data).NotTo(gomega.HaveKey(keycapv1alpha1.ApiKeySecretKey))
	g.Expect(agent.Status.Digests).To(gomega.Equal([]string{keys.Digest(key)}))
	g.Expect(agent.Status.ParentKeyID).To(gomega.Equal(parent.Status.KeyID))
	g.Expect(secret.Labels).To(gomega.HaveKeyWithValue(keycapv1alpha1.LabelKind, "AgentKey"))
	g.Expect(secret.OwnerReferences).To(gomega.HaveLen(1))
	g.Expect(secret.OwnerReferences[0].UID).To(gomega.Equal(agent.UID))
	g.Expect(secret.OwnerReferences[0].Controller).To(gomega.Equal(ptr.To(true)))

	// Deleting the parent garbage-collects its agent keys: an owner reference, not a controller one.
	g.Expect(agent.OwnerReferences).To(gomega.HaveLen(1))
	ref := agent.OwnerReferences[0]
	g.Expect(ref.Kind).To(gomega.Equal("ApiKey"))
	g.Expect(ref.Name).To(gomega.Equal("account"))
	g.Expect(ref.UID).To(gomega.Equal(parent.UID))
	g.Expect(ptr.Deref(ref.Controller, false)).To(gomega.BeFalse())

	// Disabling the parent makes the agent key inactive; its key and Secret are kept.
	patch(t, parent, func() { parent.Spec.Disabled = true })
	eventuallyStored(g, agent, func(g gomega.Gomega) {
		g.Expect(readyReason(&agent.Status.CredentialStatus)).To(gomega.Equal(keycapv1alpha1.ReasonParentInactive))
	})
	g.Expect(agent.Status.Digests).To(gomega.Equal([]string{keys.Digest(key)}))
	g.Expect(secretKey(g, ns, "bot-1", keycapv1alpha1.AgentKeySecretKey)).To(gomega.Equal(key))

	// Enabling it again restores the same agent key.
	patch(t, parent, func() { parent.Spec.Disabled = false })
	eventuallyStored(g, agent, func(g gomega.Gomega) {
		g.Expect(readyReason(&agent.Status.CredentialStatus)).To(gomega.Equal(keycapv1alpha1.ReasonIssued))
	})
	g.Expect(agent.Status.Digests).To(gomega.Equal([]string{keys.Digest(key)}))
	g.Expect(secretKey(g, ns, "bot-1", keycapv1alpha1.AgentKeySecretKey)).To(gomega.Equal(key))
}

func TestAgentKeyWaitsForAMissingParent(t *testing.T) {
	g := gomega.NewWithT(t)
	ctx := context.Background()
	ns := newNamespace(t)
	agent := newAgentKey(ns, "early", "later", "agent-1")
	createReady(t, g, agent, keycapv1alpha1.ReasonParentInactive)
	// The key is issued all the same, so it works as soon as the parent is there.
	key := secretKey(g, ns, "early", keycapv1alpha1.AgentKeySecretKey)
	g.Expect(agent.Status.Digests).To(gomega.Equal([]string{keys.Digest(key)}))
	g.Expect(agent.OwnerReferences).To(gomega.BeEmpty())

	parent := newApiKey(ns, "later")
	g.Expect(k8sClient.Create(ctx, parent)).To(gomega.Succeed())
	eventuallyStored(g, agent, func(g gomega.Gomega) {
		g.Expect(readyReason(&agent.Status.CredentialStatus)).To(gomega.Equal(keycapv1alpha1.ReasonIssued))
		g.Expect(agent.OwnerReferences).To(gomega.HaveLen(1))
	})
	g.Expect(agent.Status.Digests).To(gomega.Equal([]string{keys.Digest(key)}))

	// Deleting the parent: in a cluster the garbage collector deletes the agent key through its
	// owner reference; envtest has none, so the agent key stays and reports its parent gone.
	g.Expect(k8sClient.Delete(ctx, parent)).To(gomega.Succeed())
	eventuallyStored(g, agent, func(g gomega.Gomega) {
		cond := meta.FindStatusCondition(agent.Status.Conditions, keycapv1alpha1.ConditionReady)
		g.Expect(cond).NotTo(gomega.BeNil())
		g.Expect(cond.Reason).To(gomega.Equal(keycapv1alpha1.ReasonParentInactive))
		g.Expect(cond.Message).To(gomega.ContainSubstring("does not exist"))
	})
}

func TestAgentKeyParentExpiresOnTime(t *testing.T) {
	g := gomega.NewWithT(t)
	ns := newNamespace(t)
	parent := newApiKey(ns, "expiring-parent")
	expiresAt := metav1.NewTime(fakeClock.Now().Add(time.Hour))
	parent.Spec.ExpiresAt = &expiresAt
	createReady(t, g, parent, keycapv1alpha1.ReasonIssued)
	agent := newAgentKey(ns, "agent-of-expiring", "expiring-parent", "agent-2")
	createReady(t, g, agent, keycapv1alpha1.ReasonIssued)

	fakeClock.Step(time.Hour + time.Second)
	getReady(t, g, parent, keycapv1alpha1.ReasonExpired)
	eventuallyStored(g, agent, func(g gomega.Gomega) {
		g.Expect(readyReason(&agent.Status.CredentialStatus)).To(gomega.Equal(keycapv1alpha1.ReasonParentInactive))
	})
}

func TestAgentKeySharesTheKeyLifecycle(t *testing.T) {
	g := gomega.NewWithT(t)
	ctx := context.Background()
	ns := newNamespace(t)
	parent := newApiKey(ns, "p")
	g.Expect(k8sClient.Create(ctx, parent)).To(gomega.Succeed())
	agent := newAgentKey(ns, "rotating-agent", "p", "agent-3")
	agent.Spec.SecretName = "agent-secret"
	agent.Spec.Rotation = rotationEvery(time.Hour, 10*time.Minute)
	createReady(t, g, agent, keycapv1alpha1.ReasonIssued)
	first := secretKey(g, ns, "agent-secret", keycapv1alpha1.AgentKeySecretKey)

	// Scheduled rotation with grace.
	fakeClock.Step(time.Hour + time.Second)
	var second string
	g.Eventually(func(g gomega.Gomega) {
		second = secretKey(g, ns, "agent-secret", keycapv1alpha1.AgentKeySecretKey)
		g.Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(agent), agent)).To(gomega.Succeed())
		g.Expect(agent.Status.Digests).To(gomega.Equal([]string{keys.Digest(second), keys.Digest(first)}))
	}).WithTimeout(reconcileTimeout).Should(gomega.Succeed())
	g.Expect(keys.Prefix(second)).To(gomega.Equal(keycapv1alpha1.AgentKeyPrefix))

	// A deleted Secret is re-issued, and the previous keys stop at once.
	g.Expect(k8sClient.Delete(ctx, getSecret(g, ns, "agent-secret"))).To(gomega.Succeed())
	g.Eventually(func(g gomega.Gomega) {
		third := secretKey(g, ns, "agent-secret", keycapv1alpha1.AgentKeySecretKey)
		g.Expect(third).NotTo(gomega.Or(gomega.Equal(first), gomega.Equal(second)))
		g.Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(agent), agent)).To(gomega.Succeed())
		g.Expect(agent.Status.Digests).To(gomega.Equal([]string{keys.Digest(third)}))
	}).WithTimeout(reconcileTimeout).Should(gomega.Succeed())

	// Disabled by its own spec: Disabled, which wins over the parent's state.
	patch(t, agent, func() { agent.Spec.Disabled = true })
	getReady(t, g, agent, keycapv1alpha1.ReasonDisabled)
}

func TestAgentKeyKeyHash(t *testing.T) {
	g := gomega.NewWithT(t)
	ctx := context.Background()
	ns := newNamespace(t)
	parent := newApiKey(ns, "p")
	g.Expect(k8sClient.Create(ctx, parent)).To(gomega.Succeed())
	agent := newAgentKey(ns, "byo-agent", "p", "agent-4")
	digest := keys.Digest("my own agent key")
	agent.Spec.KeyHash = "sha256:" + digest
	createReady(t, g, agent, keycapv1alpha1.ReasonIssued)
	g.Expect(agent.Status.Digests).To(gomega.Equal([]string{digest}))
	g.Expect(agent.Status.SecretName).To(gomega.BeEmpty())
}

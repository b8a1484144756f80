package controllers

import (
	"context"
	"testing"
	"time"

	"github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	keycapv1alpha1 "github.com/keycap-dev/keycap/api/v1alpha1"
	"github.com/keycap-dev/keycap/internal/keys"
	"github.com/keycap-dev/keycap/internal/licensefile"
	"github.com/keycap-dev/keycap/internal/signing"
)

// licenseFileOf verifies the licence file in the Secret with the published licence public key.
func licenseFileOf(g gomega.Gomega, namespace, name string) *licensefile.Payload {
	pub := signing.NewPublicKeys(k8sClient, signing.PublicKeysOptions{Namespace: operatorNamespace})
	g.Expect(pub.Refresh(context.Background())).To(gomega.Succeed())
	kid, key := pub.LicensePublicKey()
	file := getSecret(g, namespace, name).Data[keycapv1alpha1.LicenseFileSecretKey]
	fileKID, err := licensefile.KeyID(file)
	g.Expect(err).NotTo(gomega.HaveOccurred())
	g.Expect(fileKID).To(gomega.Equal(kid))
	p, err := licensefile.Verify(file, key, fakeClock.Now())
	g.Expect(err).NotTo(gomega.HaveOccurred())
	return p
}

func TestLicenseIssuesKeyAndSignedFile(t *testing.T) {
	g := gomega.NewWithT(t)
	ctx := context.Background()
	ensureOperatorNamespace(t)
	ns := newNamespace(t)
	lic := newLicense(ns, "acme-pro", keycapv1alpha1.LicenseSpec{
		Lifetime: keycapv1alpha1.Lifetime{Duration: &metav1.Duration{Duration: 8760 * time.Hour}},
		Product:  "capstudio", Customer: "Acme Corp", Plan: "pro",
		Entitlements: []string{"sso", "audit-log"}, MaxInstances: 3,
	})
	createReady(t, g, lic, keycapv1alpha1.ReasonIssued)

	secret := getSecret(g, ns, "acme-pro")
	key := string(secret.Data[keycapv1alpha1.LicenseKeySecretKey])
	g.Expect(keys.Check(key)).To(gomega.Succeed())
	g.Expect(keys.Prefix(key)).To(gomega.Equal(keycapv1alpha1.LicenseKeyPrefix))
	g.Expect(lic.Status.Digests).To(gomega.Equal([]string{keys.Digest(key)}))
	g.Expect(lic.Status.KeyID).To(gomega.Equal(keys.KeyID(keys.Digest(key))))
	g.Expect(lic.Status.Hint).To(gomega.Equal(keys.Hint(key)))
	g.Expect(lic.Status.ExpiresAt.Time).To(gomega.BeTemporally("==", lic.CreationTimestamp.Add(8760*time.Hour)))
	g.Expect(toJSON(t, lic.Status)).NotTo(gomega.ContainSubstring(key))

	p := licenseFileOf(g, ns, "acme-pro")
	g.Expect(p.Product).To(gomega.Equal("capstudio"))
	g.Expect(p.Plan).To(gomega.Equal("pro"))
	g.Expect(p.Entitlements).To(gomega.Equal([]string{"sso", "audit-log"}))
	g.Expect(p.MaxInstances).To(gomega.Equal(int32(3)))
	g.Expect(p.KeyDigest).To(gomega.Equal(keys.Digest(key)), "the file is bound to its key")
	g.Expect(p.LicenseID).To(gomega.Equal(lic.Status.KeyID))
	g.Expect(p.ExpiresAt.Equal(lic.Status.ExpiresAt.Time)).To(gomega.BeTrue())

	// A plan change re-signs the file and keeps the key.
	update(g, lic, func(l *keycapv1alpha1.License) { l.Spec.Plan = "enterprise" })
	g.Eventually(func(g gomega.Gomega) {
		g.Expect(licenseFileOf(g, ns, "acme-pro").Plan).To(gomega.Equal("enterprise"))
	}).WithTimeout(reconcileTimeout).Should(gomega.Succeed())
	g.Expect(secretKey(g, ns, "acme-pro", keycapv1alpha1.LicenseKeySecretKey)).To(gomega.Equal(key))

	// Deleting the Secret re-issues a new key.
	g.Expect(k8sClient.Delete(ctx, secret)).To(gomega.Succeed())
	eventuallyStored(g, lic, func(g gomega.Gomega) {
		g.Expect(lic.Status.Digests).To(gomega.HaveLen(1))
		g.Expect(lic.Status.Digests[0]).NotTo(gomega.Equal(keys.Digest(key)))
		g.Expect(licenseFileOf(g, ns, "acme-pro").KeyDigest).To(gomega.Equal(lic.Status.Digests[0]))
	})
}

func TestLicenseReleasesInstancesPastHeartbeatTimeout(t *testing.T) {
	g := gomega.NewWithT(t)
	ctx := context.Background()
	ensureOperatorNamespace(t)
	ns := newNamespace(t)
	lic := newLicense(ns, "seats", keycapv1alpha1.LicenseSpec{Product: "cap", MaxInstances: 2,
		RefreshInterval: &metav1.Duration{Duration: time.Hour}})
	createReady(t, g, lic, keycapv1alpha1.ReasonIssued)

	// Two instances, as the activation endpoint writes them: "old" last seen 2h ago, "new" now.
	// heartbeatTimeout defaults to 3 × refreshInterval = 3h.
	now := fakeClock.Now().Truncate(time.Second)
	updateStatus(g, lic, func(l *keycapv1alpha1.License) {
		l.Status.Activations = []keycapv1alpha1.LicenseActivation{
			{InstanceID: "old", ActivatedAt: metav1.NewTime(now.Add(-2 * time.Hour)), LastSeenAt: metav1.NewTime(now.Add(-2 * time.Hour))},
			{InstanceID: "new", ActivatedAt: metav1.NewTime(now), LastSeenAt: metav1.NewTime(now)},
		}
	})
	activations := func(g gomega.Gomega) []string {
		var ids []string
		g.Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(lic), lic)).To(gomega.Succeed())
		for _, a := range lic.Status.Activations {
			ids = append(ids, a.InstanceID)
		}
		return ids
	}
	// A reconcile that saw both activations (observedGeneration of a later spec proves it ran)
	// releases neither: nothing is stale yet.
	touchSpec(t, lic)
	getReady(t, g, lic, keycapv1alpha1.ReasonIssued)
	g.Expect(activations(g)).To(gomega.ConsistOf("old", "new"), "nothing is stale yet")

	fakeClock.Step(time.Hour)
	g.Eventually(activations).WithTimeout(reconcileTimeout).Should(gomega.ConsistOf("new"), "old was not seen for 3h")
	g.Expect(lic.Status.Digests).To(gomega.HaveLen(1), "releasing seats keeps the rest of the status")

	fakeClock.Step(2 * time.Hour)
	g.Eventually(activations).WithTimeout(reconcileTimeout).Should(gomega.BeEmpty())
	eventuallyEvents(g, ns, "seats", EventReasonReleased)
}

func TestLicenseExpiresAndDisables(t *testing.T) {
	g := gomega.NewWithT(t)
	ensureOperatorNamespace(t)
	ns := newNamespace(t)
	expires := metav1.NewTime(fakeClock.Now().Add(time.Hour).Truncate(time.Second))
	lic := newLicense(ns, "trial", keycapv1alpha1.LicenseSpec{Product: "cap",
		Lifetime: keycapv1alpha1.Lifetime{ExpiresAt: &expires}})
	createReady(t, g, lic, keycapv1alpha1.ReasonIssued)
	g.Expect(licenseFileOf(g, ns, "trial").ExpiresAt.Equal(expires.Time)).To(gomega.BeTrue())

	update(g, lic, func(l *keycapv1alpha1.License) { l.Spec.Disabled = true })
	getReady(t, g, lic, keycapv1alpha1.ReasonDisabled)
	update(g, lic, func(l *keycapv1alpha1.License) { l.Spec.Disabled = false })
	getReady(t, g, lic, keycapv1alpha1.ReasonIssued)

	fakeClock.Step(time.Hour)
	getReady(t, g, lic, keycapv1alpha1.ReasonExpired)
}

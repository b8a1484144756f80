package index_test

import (
	"testing"
	"time"

	"github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	keycapv1alpha1 "github.com/keycap-dev/keycap/api/v1alpha1"
	. "github.com/keycap-dev/keycap/internal/index"
	"github.com/keycap-dev/keycap/internal/keys"
	"github.com/keycap-dev/keycap/internal/registry"
)

func TestAppTokensAreFoundByKeyID(t *testing.T) {
	g := gomega.NewWithT(t)
	ix := New()
	at := &keycapv1alpha1.AppToken{ObjectMeta: metav1.ObjectMeta{Namespace: "acme", Name: "reports"}}
	at.Spec.Scopes = []string{"b", "a", "a"}
	at.Status.KeyID = "kat_1"
	ix.Upsert(registry.Project(at))
	c := ix.LookupKeyID("kat_1").Load()
	g.Expect(c).NotTo(gomega.BeNil())
	g.Expect(c.Kind).To(gomega.Equal(keycapv1alpha1.KindAppToken))
	g.Expect(c.Scopes).To(gomega.Equal([]string{"a", "b"}))
	g.Expect(ix.Len(keycapv1alpha1.KindAppToken)).To(gomega.Equal(1))

	// A new keyID replaces the old one; a deletion removes it.
	at.Status.KeyID = "kat_2"
	ix.Upsert(registry.Project(at))
	g.Expect(ix.LookupKeyID("kat_1")).To(gomega.BeNil())
	g.Expect(ix.LookupKeyID("kat_2").Load()).NotTo(gomega.BeNil())
	ix.Delete(ObjectKey{Kind: keycapv1alpha1.KindAppToken, Namespace: "acme", Name: "reports"})
	g.Expect(ix.LookupKeyID("kat_2")).To(gomega.BeNil())
	g.Expect(ix.Len(keycapv1alpha1.KindAppToken)).To(gomega.Equal(0))
}

func TestLicensesAreFoundByDigestWithTheirActivations(t *testing.T) {
	g := gomega.NewWithT(t)
	ix := New()
	key, err := keys.Generate(keycapv1alpha1.LicenseKeyPrefix)
	g.Expect(err).NotTo(gomega.HaveOccurred())
	now := time.Now()
	lic := &keycapv1alpha1.License{ObjectMeta: metav1.ObjectMeta{Namespace: "acme", Name: "pro"}}
	lic.Spec.Entitlements = []string{"sso", "audit"}
	lic.Spec.MaxInstances = 1
	lic.Spec.HeartbeatTimeout = &metav1.Duration{Duration: time.Hour}
	lic.Status.Digests = []string{keys.Digest(key)}
	lic.Status.Activations = []keycapv1alpha1.LicenseActivation{
		{InstanceID: "old", ActivatedAt: metav1.NewTime(now.Add(-2 * time.Hour)), LastSeenAt: metav1.NewTime(now.Add(-time.Minute))},
		{InstanceID: "young", ActivatedAt: metav1.NewTime(now.Add(-time.Hour)), LastSeenAt: metav1.NewTime(now.Add(-time.Minute))},
		{InstanceID: "stale", ActivatedAt: metav1.NewTime(now.Add(-3 * time.Hour)), LastSeenAt: metav1.NewTime(now.Add(-2 * time.Hour))},
	}
	ix.Upsert(registry.Project(lic))

	name, ok := ix.FindLicense(keys.Digest(key))
	g.Expect(ok).To(gomega.BeTrue())
	g.Expect(name).To(gomega.Equal(types.NamespacedName{Namespace: "acme", Name: "pro"}))
	_, ok = ix.FindLicense("not a digest")
	g.Expect(ok).To(gomega.BeFalse())

	ld, ok := lookup(ix, key).LicenseData()
	g.Expect(ok).To(gomega.BeTrue())
	g.Expect(ld.EntitlementsHeader).To(gomega.Equal("audit,sso"))
	cases := map[string]struct {
		instance       string
		active, seated bool
	}{
		"the oldest live instance holds the one seat":      {"old", true, true},
		"a younger live instance past the cap has no seat": {"young", true, false},
		"an instance not seen within the timeout is stale": {"stale", false, false},
		"an instance never activated is not active":        {"new", false, false},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			active, seated := ld.InstanceSeat(tc.instance, now)
			gomega.NewWithT(t).Expect([]bool{active, seated}).To(gomega.Equal([]bool{tc.active, tc.seated}))
		})
	}

	// An ApiKey's digest is not a licence.
	ak, _ := keys.Generate("kc")
	ix.Upsert(registry.Project(apiKey("web", keys.Digest(ak))))
	_, ok = ix.FindLicense(keys.Digest(ak))
	g.Expect(ok).To(gomega.BeFalse())
}

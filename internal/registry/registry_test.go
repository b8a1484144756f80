package registry

import (
	"testing"

	"github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/runtime"

	keycapv1alpha1 "github.com/keycap-dev/keycap/api/v1alpha1"
)

// TestEveryAPIKindHasAnEntry fails when a credential type is added to the API's scheme without a
// registry entry, or an entry's constructors disagree with its name.
func TestEveryAPIKindHasAnEntry(t *testing.T) {
	g := gomega.NewWithT(t)
	scheme := runtime.NewScheme()
	g.Expect(keycapv1alpha1.AddToScheme(scheme)).To(gomega.Succeed())
	for gvk, typ := range scheme.KnownTypes(keycapv1alpha1.GroupVersion) {
		obj, err := scheme.New(keycapv1alpha1.GroupVersion.WithKind(gvk))
		g.Expect(err).NotTo(gomega.HaveOccurred())
		if c, ok := obj.(keycapv1alpha1.Credential); ok {
			k, found := ByName(gvk)
			g.Expect(found).To(gomega.BeTrue(), "kind %s (%s) has no registry entry", gvk, typ)
			g.Expect(k.New().CredentialKind()).To(gomega.Equal(gvk))
			g.Expect(c.CredentialKind()).To(gomega.Equal(gvk))
		}
	}
	for _, k := range Kinds() {
		g.Expect(k.New().CredentialKind()).To(gomega.Equal(k.Name))
		g.Expect(k.NewList().Credentials()).To(gomega.BeEmpty())
		_, opaque := k.New().(keycapv1alpha1.OpaqueKeyCredential)
		g.Expect(opaque).To(gomega.Equal(k.OpaqueKey), "%s: OpaqueKey must match its API type", k.Name)
		g.Expect(k.GVK().Kind).To(gomega.Equal(k.Name))
	}
}

func TestLookup(t *testing.T) {
	cases := map[string]string{
		"ApiKey": keycapv1alpha1.KindApiKey, "apikeys": keycapv1alpha1.KindApiKey, "ak": keycapv1alpha1.KindApiKey,
		"apikey.keycap.dev": keycapv1alpha1.KindApiKey, "AGENTKEY": keycapv1alpha1.KindAgentKey,
		"at": keycapv1alpha1.KindAppToken, "licence": keycapv1alpha1.KindLicense, "licenses": keycapv1alpha1.KindLicense,
	}
	for typed, want := range cases {
		t.Run(typed, func(t *testing.T) {
			k, ok := Lookup(typed)
			g := gomega.NewWithT(t)
			g.Expect(ok).To(gomega.BeTrue())
			g.Expect(k.Name).To(gomega.Equal(want))
		})
	}
	_, ok := Lookup("secret")
	gomega.NewWithT(t).Expect(ok).To(gomega.BeFalse())
}

func TestDigests(t *testing.T) {
	g := gomega.NewWithT(t)
	byo := &keycapv1alpha1.ApiKey{}
	byo.Spec.KeyHash = "sha256:0000000000000000000000000000000000000000000000000000000000000001"
	byo.Status.Digests = []string{"00000000000000000000000000000000000000000000000000000000000000ff"}
	g.Expect(Digests(byo)).To(gomega.Equal([]string{
		"0000000000000000000000000000000000000000000000000000000000000001",
		"00000000000000000000000000000000000000000000000000000000000000ff",
	}))
	g.Expect(Digests(&keycapv1alpha1.AppToken{})).To(gomega.BeEmpty())
}

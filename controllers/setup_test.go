package controllers

import (
	"testing"
	"time"

	"github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	keycapv1alpha1 "github.com/keycap-dev/keycap/api/v1alpha1"
	"github.com/keycap-dev/keycap/internal/registry"
	"github.com/keycap-dev/keycap/internal/signing"
)

func rotationEvery(every, grace time.Duration) *keycapv1alpha1.RotationPolicy {
	p := &keycapv1alpha1.RotationPolicy{Every: metav1.Duration{Duration: every}}
	if grace > 0 {
		p.GracePeriod = &metav1.Duration{Duration: grace}
	}
	return p
}

// A new kind in the registry needs an issuer here, and a kind the data plane finds by digest an
// issuer the duplicate-key rule can edit.
func TestEveryKindHasAnIssuer(t *testing.T) {
	g := gomega.NewWithT(t)
	deps := issuerDeps{keys: signing.NewManager(nil, nil, signing.Options{}), clock: fakeClock}
	for _, kind := range registry.Kinds() {
		newIssuer, ok := issuers[kind.Name]
		g.Expect(ok).To(gomega.BeTrue(), "no issuer for %s", kind.Name)
		is := newIssuer(&credentialReconciler{Kind: kind.Name}, deps)
		_, digests := is.(digestIssuer)
		g.Expect(digests).To(gomega.Equal(kind.FoundByDigest), "%s: an issuer of a kind found by digest is a digestIssuer", kind.Name)
	}
	g.Expect(issuers).To(gomega.HaveLen(len(registry.Kinds())), "an issuer for a kind the registry does not have")
}

func TestSecretMetadataCannotBeForgedByTemplate(t *testing.T) {
	g := gomega.NewWithT(t)
	template := &keycapv1alpha1.SecretTemplate{
		Labels: map[string]string{
			"team": "a", keycapv1alpha1.LabelManagedBy: "someone", keycapv1alpha1.LabelKind: "License", "keycap.dev/other": "x",
		},
		Annotations: map[string]string{"note": "n", annotationPreviousDigest: "forged", keycapv1alpha1.AnnotationKeyID: "forged"},
	}
	g.Expect(secretLabels(keycapv1alpha1.KindApiKey, "k", template)).To(gomega.Equal(map[string]string{
		"team": "a", keycapv1alpha1.LabelManagedBy: keycapv1alpha1.ManagedByValue, keycapv1alpha1.LabelKind: keycapv1alpha1.KindApiKey, keycapv1alpha1.LabelName: "k",
	}))
	g.Expect(secretAnnotations(template, map[string]string{keycapv1alpha1.AnnotationKeyID: "kid_1"})).To(gomega.Equal(map[string]string{
		"note": "n", keycapv1alpha1.AnnotationKeyID: "kid_1",
	}))
}

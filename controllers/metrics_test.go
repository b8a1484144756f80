package controllers

import (
	"testing"

	"github.com/onsi/gomega"
	dto "github.com/prometheus/client_model/go"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	keycapv1alpha1 "github.com/keycap-dev/keycap/api/v1alpha1"
)

func TestCredentialMetricsFollowStateChanges(t *testing.T) {
	g := gomega.NewWithT(t)
	// A kind of its own, so the envtest managers of the suite do not move these series.
	const kind = "MetricsTestKind"
	count := func(state string) float64 {
		var m dto.Metric
		g.Expect(credentialsByState.WithLabelValues(kind, state).Write(&m)).To(gomega.Succeed())
		return m.GetGauge().GetValue()
	}
	expires := metav1.Unix(1_900_000_000, 0)

	recordCredential(kind, "ns", "a", keycapv1alpha1.ReasonIssued, &expires)
	recordCredential(kind, "ns", "b", keycapv1alpha1.ReasonIssued, nil)
	recordCredential(kind, "ns", "b", keycapv1alpha1.ReasonIssued, nil) // unchanged: counted once
	g.Expect(count(StateReady)).To(gomega.Equal(2.0))
	g.Expect(expiryGaugeValue(kind, "ns", "a")).To(gomega.Equal(1_900_000_000.0))
	g.Expect(expiryGaugeExists(kind, "ns", "b")).To(gomega.BeFalse())

	recordCredential(kind, "ns", "a", keycapv1alpha1.ReasonExpired, &expires)
	recordCredential(kind, "ns", "b", keycapv1alpha1.ReasonSecretConflict, nil)
	g.Expect(count(StateReady)).To(gomega.Equal(0.0))
	g.Expect(count(StateExpired)).To(gomega.Equal(1.0))
	g.Expect(count(StateError)).To(gomega.Equal(1.0))

	forgetCredential(kind, "ns", "a")
	g.Expect(count(StateExpired)).To(gomega.Equal(0.0))
	g.Expect(expiryGaugeExists(kind, "ns", "a")).To(gomega.BeFalse())
	forgetCredential(kind, "ns", "a") // twice is harmless
	g.Expect(count(StateExpired)).To(gomega.Equal(0.0))
}

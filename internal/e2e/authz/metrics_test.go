package authz_test

import (
	"testing"

	"github.com/onsi/gomega"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
)

// checksCounted returns keycap_authz_checks_total for the labels, from the registry the manager's
// metrics endpoint serves.
func checksCounted(t *testing.T, protocol, result, reason string) float64 {
	t.Helper()
	families, err := metrics.Registry.Gather()
	gomega.NewWithT(t).Expect(err).NotTo(gomega.HaveOccurred())
	for _, f := range families {
		if f.GetName() != "keycap_authz_checks_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["protocol"] == protocol && labels["result"] == result && labels["reason"] == reason {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

func TestChecksAreCountedByProtocolResultAndReason(t *testing.T) {
	g := gomega.NewWithT(t)
	c := grpcClient(t)
	before := checksCounted(t, "grpc", "denied", "MISSING")
	check(t, c, checkRequest(map[string]string{"accept": "*/*"}, nil))
	check(t, c, checkRequest(map[string]string{"accept": "*/*"}, nil))
	g.Expect(checksCounted(t, "grpc", "denied", "MISSING")).To(gomega.Equal(before + 2))

	beforeHTTP := checksCounted(t, "http", "denied", "AMBIGUOUS")
	getVia(t, "http://"+world.dp.HTTPAddr().String()+"/check", hdr("X-Api-Key", "a", "Authorization", "Bearer b"))
	g.Expect(checksCounted(t, "http", "denied", "AMBIGUOUS")).To(gomega.Equal(beforeHTTP + 1))
}

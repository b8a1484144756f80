package controllers

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/onsi/gomega"
	eventsv1 "k8s.io/api/events/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
)

// expiryGauge finds the expiry series of a credential in the controller-runtime registry.
func expiryGauge(kind, namespace, name string) (value float64, exists bool) {
	families, err := metrics.Registry.Gather()
	if err != nil {
		return 0, false
	}
	for _, f := range families {
		if f.GetName() != MetricExpiryTimestamp {
			continue
		}
		for _, m := range f.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["kind"] == kind && labels["namespace"] == namespace && labels["name"] == name {
				return m.GetGauge().GetValue(), true
			}
		}
	}
	return 0, false
}

func expiryGaugeValue(kind, namespace, name string) float64 {
	v, _ := expiryGauge(kind, namespace, name)
	return v
}

func expiryGaugeExists(kind, namespace, name string) bool {
	_, ok := expiryGauge(kind, namespace, name)
	return ok
}

func toJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func eventsV1(g gomega.Gomega, namespace string) *eventsv1.EventList {
	var list eventsv1.EventList
	g.Expect(k8sClient.List(context.Background(), &list, client.InNamespace(namespace))).To(gomega.Succeed())
	return &list
}

package controllers

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/onsi/gomega"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	keycapv1alpha1 "github.com/keycap-dev/keycap/api/v1alpha1"
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

// secretKey returns the value under dataKey in the Secret namespace/name.
func secretKey(g gomega.Gomega, namespace, name, dataKey string) string {
	return string(getSecret(g, namespace, name).Data[dataKey])
}

// createReady creates obj and waits until it is Ready with reason (see getReady).
func createReady(t *testing.T, g *gomega.WithT, obj client.Object, reason string) {
	t.Helper()
	g.Expect(k8sClient.Create(context.Background(), obj)).To(gomega.Succeed())
	getReady(t, g, obj, reason)
}

// eventuallyStored reads obj (name and namespace set) from the apiserver into obj until check
// passes on what it read.
func eventuallyStored(g *gomega.WithT, obj client.Object, check func(g gomega.Gomega)) {
	g.Eventually(func(g gomega.Gomega) {
		g.Expect(k8sClient.Get(context.Background(), client.ObjectKeyFromObject(obj), obj)).To(gomega.Succeed())
		check(g)
	}).WithTimeout(reconcileTimeout).Should(gomega.Succeed())
}

// eventuallyEvents waits until the Events about the object named name in namespace include each
// of reasons.
func eventuallyEvents(g *gomega.WithT, namespace, name string, reasons ...string) {
	g.Eventually(func(g gomega.Gomega) {
		g.Expect(eventReasons(g, namespace, name)).To(gomega.ContainElements(reasons))
	}).WithTimeout(reconcileTimeout).Should(gomega.Succeed())
}

// update applies mutate to the stored obj with an Update, retrying on conflicts with the
// controllers' status writes, and leaves the result in obj.
func update[T client.Object](g *gomega.WithT, obj T, mutate func(T)) {
	retryUpdate(g, obj, mutate, func(ctx context.Context) error { return k8sClient.Update(ctx, obj) })
}

// updateStatus is update for the status subresource.
func updateStatus[T client.Object](g *gomega.WithT, obj T, mutate func(T)) {
	retryUpdate(g, obj, mutate, func(ctx context.Context) error { return k8sClient.Status().Update(ctx, obj) })
}

func retryUpdate[T client.Object](g *gomega.WithT, obj T, mutate func(T), write func(context.Context) error) {
	g.Eventually(func() error {
		if err := k8sClient.Get(context.Background(), client.ObjectKeyFromObject(obj), obj); err != nil {
			return err
		}
		mutate(obj)
		return write(context.Background())
	}).WithTimeout(reconcileTimeout).Should(gomega.Succeed())
}

func newAppToken(namespace, name string, spec keycapv1alpha1.AppTokenSpec) *keycapv1alpha1.AppToken {
	return &keycapv1alpha1.AppToken{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name}, Spec: spec}
}

func newLicense(namespace, name string, spec keycapv1alpha1.LicenseSpec) *keycapv1alpha1.License {
	return &keycapv1alpha1.License{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name}, Spec: spec}
}

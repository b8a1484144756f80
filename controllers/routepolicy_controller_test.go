package controllers

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/onsi/gomega"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	keycapv1alpha1 "github.com/keycap-dev/keycap/api/v1alpha1"
	"github.com/keycap-dev/keycap/internal/routepolicy"
)

func newRoutePolicy(namespace, name string, hosts ...string) *keycapv1alpha1.RoutePolicy {
	return &keycapv1alpha1.RoutePolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name},
		Spec: keycapv1alpha1.RoutePolicySpec{
			Hosts: hosts,
			Rules: []keycapv1alpha1.RoutePolicyRule{
				{Paths: []string{"/admin"}, Methods: []string{"POST", "DELETE"}, Scopes: []string{"shop:admin"}, Namespaces: []string{namespace}},
				{Paths: []string{"/"}, Scopes: []string{"shop:read"}},
			},
		},
	}
}

// routePolicyReady waits until rp's Ready condition has status and reason for its generation.
func routePolicyReady(g *gomega.WithT, rp *keycapv1alpha1.RoutePolicy, status metav1.ConditionStatus, reason string) {
	eventuallyStored(g, rp, func(g gomega.Gomega) {
		cond := meta.FindStatusCondition(rp.Status.Conditions, keycapv1alpha1.ConditionReady)
		g.Expect(cond).NotTo(gomega.BeNil())
		g.Expect(cond.Status).To(gomega.Equal(status), "Ready message: %s", cond.Message)
		g.Expect(cond.Reason).To(gomega.Equal(reason))
		g.Expect(cond.ObservedGeneration).To(gomega.Equal(rp.Generation))
		g.Expect(rp.Status.ObservedGeneration).To(gomega.Equal(rp.Generation))
	})
}

func TestRoutePolicyHostConflictOldestWins(t *testing.T) {
	g := gomega.NewWithT(t)
	ctx := context.Background()
	host := fmt.Sprintf("shop-%d.example.com", time.Now().UnixNano())
	first := newRoutePolicy(newNamespace(t), "shop", host)
	g.Expect(k8sClient.Create(ctx, first)).To(gomega.Succeed())
	routePolicyReady(g, first, metav1.ConditionTrue, keycapv1alpha1.ReasonApplied)

	second := newRoutePolicy(newNamespace(t), "shop", host, "only-"+host)
	g.Expect(k8sClient.Create(ctx, second)).To(gomega.Succeed())
	g.Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(first), first)).To(gomega.Succeed())
	g.Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(second), second)).To(gomega.Succeed())
	older, newer := first, second
	if !routepolicy.Older(first, second) {
		// Created within the same second and ordered by namespace/name.
		older, newer = second, first
	}
	routePolicyReady(g, newer, metav1.ConditionFalse, keycapv1alpha1.ReasonHostConflict)
	g.Expect(newer.Status.ConflictingHosts).To(gomega.Equal([]string{host}))
	g.Expect(meta.FindStatusCondition(newer.Status.Conditions, keycapv1alpha1.ConditionReady).Message).
		To(gomega.ContainSubstring(older.Namespace + "/" + older.Name))
	routePolicyReady(g, older, metav1.ConditionTrue, keycapv1alpha1.ReasonApplied)
	eventuallyEvents(g, newer.Namespace, newer.Name, keycapv1alpha1.ReasonHostConflict)

	// The holder goes away: the other policy gets the host, without a change of its own.
	g.Expect(k8sClient.Delete(ctx, older)).To(gomega.Succeed())
	routePolicyReady(g, newer, metav1.ConditionTrue, keycapv1alpha1.ReasonApplied)
	g.Expect(newer.Status.ConflictingHosts).To(gomega.BeEmpty())
}

func TestRoutePolicyDroppingTheHostSettlesTheConflict(t *testing.T) {
	g := gomega.NewWithT(t)
	ctx := context.Background()
	host := fmt.Sprintf("api-%d.example.com", time.Now().UnixNano())
	holder := newRoutePolicy(newNamespace(t), "api", host)
	g.Expect(k8sClient.Create(ctx, holder)).To(gomega.Succeed())
	routePolicyReady(g, holder, metav1.ConditionTrue, keycapv1alpha1.ReasonApplied)
	// Created in a later second, so the holder is older whatever the names.
	g.Eventually(func() bool { return time.Since(holder.CreationTimestamp.Time) > time.Second }).Should(gomega.BeTrue())
	claimant := newRoutePolicy(newNamespace(t), "api", host)
	g.Expect(k8sClient.Create(ctx, claimant)).To(gomega.Succeed())
	routePolicyReady(g, claimant, metav1.ConditionFalse, keycapv1alpha1.ReasonHostConflict)

	update(g, holder, func(rp *keycapv1alpha1.RoutePolicy) { rp.Spec.Hosts = []string{"other-" + host} })
	routePolicyReady(g, claimant, metav1.ConditionTrue, keycapv1alpha1.ReasonApplied)
}

func TestRoutePolicySchemaRefusesMalformedFields(t *testing.T) {
	ns := newNamespace(t)
	cases := map[string]func(*keycapv1alpha1.RoutePolicy){
		"a host with a port":               func(rp *keycapv1alpha1.RoutePolicy) { rp.Spec.Hosts = []string{"shop.example.com:443"} },
		"an upper-case host":               func(rp *keycapv1alpha1.RoutePolicy) { rp.Spec.Hosts = []string{"Shop.example.com"} },
		"a wildcard inside a host":         func(rp *keycapv1alpha1.RoutePolicy) { rp.Spec.Hosts = []string{"shop.*.com"} },
		"no hosts":                         func(rp *keycapv1alpha1.RoutePolicy) { rp.Spec.Hosts = nil },
		"a prefix without a leading slash": func(rp *keycapv1alpha1.RoutePolicy) { rp.Spec.Rules[0].Paths = []string{"admin"} },
		"a prefix with a dot-dot segment":  func(rp *keycapv1alpha1.RoutePolicy) { rp.Spec.Rules[0].Paths = []string{"/public/../admin"} },
		"a prefix with an empty segment":   func(rp *keycapv1alpha1.RoutePolicy) { rp.Spec.Rules[0].Paths = []string{"//admin"} },
		"a prefix with a percent-encoding": func(rp *keycapv1alpha1.RoutePolicy) { rp.Spec.Rules[0].Paths = []string{"/%61dmin"} },
		"a prefix with a query":            func(rp *keycapv1alpha1.RoutePolicy) { rp.Spec.Rules[0].Paths = []string{"/admin?x=1"} },
		"a lower-case method":              func(rp *keycapv1alpha1.RoutePolicy) { rp.Spec.Rules[0].Methods = []string{"post"} },
		"a rule without paths":             func(rp *keycapv1alpha1.RoutePolicy) { rp.Spec.Rules[0].Paths = nil },
	}
	for name, mutate := range cases {
		t.Run(name, func(t *testing.T) {
			rp := newRoutePolicy(ns, "bad", "shop.example.com")
			mutate(rp)
			err := k8sClient.Create(context.Background(), rp)
			if !apierrors.IsInvalid(err) {
				t.Errorf("create = %v, want Invalid", err)
			}
		})
	}
}

package authz

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/runtime"
	toolscache "k8s.io/client-go/tools/cache"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	keycapv1alpha1 "github.com/keycap-dev/keycap/api/v1alpha1"
	"github.com/keycap-dev/keycap/internal/authz/wire"
	"github.com/keycap-dev/keycap/internal/index"
	"github.com/keycap-dev/keycap/internal/routepolicy"
)

// The data plane reads RoutePolicies (and writes nothing of them).
// +kubebuilder:rbac:groups=keycap.dev,resources=routepolicies,verbs=get;list;watch

var routePolicyChecks = prometheus.NewCounterVec(prometheus.CounterOpts{
	Name: "keycap_authz_routepolicy_checks_total",
	Help: "Checks of requests on a host a RoutePolicy holds, by policy (namespace/name) and result (allowed, denied).",
}, []string{"policy", "result"})

func init() { metrics.Registry.MustRegister(routePolicyChecks) }

// routePolicies is the data plane's view of the RoutePolicies: an immutable routepolicy.Index,
// rebuilt from the policies of every source on every change (policies are few; requests only load
// a pointer), and the request attribute source the deployment trusts. The policies are listed and
// watched like the credentials (index.Reflect: its short retry backoff, one source per namespace
// of a shard), not through the manager's cache.
type routePolicies struct {
	src   routepolicy.Source
	index atomic.Pointer[routepolicy.Index]

	// mu orders the sources' changes and rebuilds (their reflectors run concurrently), so an
	// older rebuild never replaces a newer one.
	mu      sync.Mutex
	sources []*policySource
}

// policySource is the policies of one namespace (or all), as its reflector's store.
type policySource struct {
	rp     *routePolicies
	ns     string
	lw     toolscache.ListerWatcher
	store  toolscache.Store
	synced atomic.Bool
}

// newRoutePolicies returns the policies of namespaces (none: all); run starts following them.
func newRoutePolicies(mgr ctrl.Manager, src routepolicy.Source, namespaces []string) (*routePolicies, error) {
	if src == "" {
		src = routepolicy.SourceEnvoy
	}
	rp := &routePolicies{src: src}
	rp.index.Store(routepolicy.Build(nil))
	lws, err := listWatches(mgr, keycapv1alpha1.GroupVersion.WithKind("RoutePolicy"), "routepolicies",
		func() runtime.Object { return &keycapv1alpha1.RoutePolicy{} }, namespaces)
	if err != nil {
		return nil, err
	}
	for ns, lw := range lws {
		rp.sources = append(rp.sources, &policySource{rp: rp, ns: ns, lw: lw, store: toolscache.NewStore(toolscache.MetaNamespaceKeyFunc)})
	}
	return rp, nil
}

// run follows every source until ctx ends.
func (rp *routePolicies) run(ctx context.Context) {
	var wg sync.WaitGroup
	for _, ps := range rp.sources {
		wg.Go(func() {
			index.Reflect(ctx, fmt.Sprintf("RoutePolicy %q", ps.ns), ps.lw, &keycapv1alpha1.RoutePolicy{}, ps)
		})
	}
	wg.Wait()
}

// synced reports whether every source has delivered its initial list.
func (rp *routePolicies) synced() bool {
	for _, ps := range rp.sources {
		if !ps.synced.Load() {
			return false
		}
	}
	return true
}

// change applies one change of a source and rebuilds the index from every source.
func (rp *routePolicies) change(apply func() error) error {
	rp.mu.Lock()
	defer rp.mu.Unlock()
	if err := apply(); err != nil {
		return err
	}
	var policies []*keycapv1alpha1.RoutePolicy
	for _, ps := range rp.sources {
		for _, o := range ps.store.List() {
			if p, ok := o.(*keycapv1alpha1.RoutePolicy); ok {
				policies = append(policies, p)
			}
		}
	}
	rp.index.Store(routepolicy.Build(policies))
	return nil
}

func (ps *policySource) Add(o any) error {
	return ps.rp.change(func() error { return ps.store.Add(o) })
}
func (ps *policySource) Update(o any) error {
	return ps.rp.change(func() error { return ps.store.Update(o) })
}
func (ps *policySource) Delete(o any) error {
	return ps.rp.change(func() error { return ps.store.Delete(o) })
}
func (ps *policySource) Resync() error { return nil }

func (ps *policySource) Replace(list []any, rv string) error {
	err := ps.rp.change(func() error { return ps.store.Replace(list, rv) })
	if err == nil {
		ps.synced.Store(true)
	}
	return err
}

// routeCheck is what the policies add to one request: the rules it must also meet, or a
// refusal. Rules point into the immutable index, so a check holds them safely.
type routeCheck struct {
	policy  *routepolicy.Policy
	rules   []*routepolicy.Rule
	refusal wire.Reason
}

// route matches a request to the policies; buf is the caller's stack array.
func (rp *routePolicies) route(v *routepolicy.View, buf []*routepolicy.Rule) routeCheck {
	if rp == nil {
		return routeCheck{}
	}
	r := rp.index.Load().Route(rp.src, v, buf)
	rc := routeCheck{policy: r.Policy, rules: r.Rules}
	switch r.Refusal {
	case routepolicy.RefusalRouteUnknown:
		rc.refusal = wire.ReasonRouteUnknown
	case routepolicy.RefusalAmbiguousPath:
		rc.refusal = wire.ReasonAmbiguousPath
	}
	return rc
}

// addTo adds the rules' scopes and entitlements (both must all be held) to the proxy's
// requirements, and their audiences to the proxy's audience: an AppToken is checked for one
// audience, so a route that asks for two different ones no token meets. scopes and entitlements
// are built only for a request a policy matched (they cost two allocations there): stack arrays
// in the caller would escape through the requirements and cost every request those allocations.
func (rc *routeCheck) addTo(req *Requirements, aud *Audience) {
	if len(rc.rules) == 0 {
		return
	}
	n, m := len(req.Scopes), len(req.Entitlements)
	for _, r := range rc.rules {
		n, m = n+len(r.Scopes), m+len(r.Entitlements)
	}
	scopes := append(make([]string, 0, n), req.Scopes...)
	entitlements := append(make([]string, 0, m), req.Entitlements...)
	for _, r := range rc.rules {
		scopes = append(scopes, r.Scopes...)
		entitlements = append(entitlements, r.Entitlements...)
		for _, a := range r.Audiences {
			switch {
			case aud.Name == "":
				aud.Name = a
			case aud.Name != a:
				aud.Unmeetable = true
			}
		}
	}
	req.Scopes, req.Entitlements = scopes, entitlements
}

// judge applies what addTo could not state in the proxy's requirements (the rules' namespaces:
// the credential's must be in every rule's list, as in every one of the proxy's lists) to
// a decision, and counts the decision by policy.
//
// A request whose route is unknown or whose path is ambiguous is refused with the policy's
// reason once its credential has been judged (an invalid credential is still a 401).
func (rc *routeCheck) judge(d *Decision) {
	if rc.policy == nil && rc.refusal == wire.ReasonOK {
		return
	}
	if d.Allowed() && rc.refusal != wire.ReasonOK {
		d.Reason = rc.refusal
	}
	if d.Allowed() {
		for _, r := range rc.rules {
			if len(r.Namespaces) > 0 && !slices.Contains(r.Namespaces, d.Credential.Namespace) {
				d.Reason = wire.ReasonWrongNamespace
				break
			}
		}
	}
	result := "denied"
	if d.Allowed() {
		result = "allowed"
	}
	policy := "" // refused before a policy was found: the request named no host
	if rc.policy != nil {
		policy = rc.policy.Label
	}
	routePolicyChecks.WithLabelValues(policy, result).Inc()
}

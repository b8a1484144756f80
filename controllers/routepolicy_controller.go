package controllers

import (
	"context"
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"k8s.io/client-go/util/workqueue"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrlevent "sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	keycapv1alpha1 "github.com/keycap-dev/keycap/api/v1alpha1"
	"github.com/keycap-dev/keycap/internal/routepolicy"
)

// indexRoutePolicyHost is the field index of RoutePolicies by the hosts they claim (lower case),
// so that a change to one policy reaches every policy sharing a host with it.
const indexRoutePolicyHost = "keycap.dev/routePolicyHost"

// +kubebuilder:rbac:groups=keycap.dev,resources=routepolicies,verbs=get;list;watch
// +kubebuilder:rbac:groups=keycap.dev,resources=routepolicies/status,verbs=get;update;patch

// RoutePolicyReconciler reports whether each RoutePolicy's hosts are applied: Ready=True
// (Applied), or Ready=False (HostConflict) naming the hosts an older policy holds. It resolves
// conflicts with the data plane's own rule (routepolicy.Build), so status says what the data
// plane does.
type RoutePolicyReconciler struct {
	client.Client
	Recorder events.EventRecorder
}

// SetupRoutePolicyWithManager registers the RoutePolicy reconciler and its host index with mgr.
func SetupRoutePolicyWithManager(mgr ctrl.Manager) error {
	if err := mgr.GetFieldIndexer().IndexField(context.Background(), &keycapv1alpha1.RoutePolicy{}, indexRoutePolicyHost, func(o client.Object) []string {
		return lowerHosts(o.(*keycapv1alpha1.RoutePolicy))
	}); err != nil {
		return fmt.Errorf("indexing RoutePolicies by host: %w", err)
	}
	r := &RoutePolicyReconciler{Client: mgr.GetClient(), Recorder: mgr.GetEventRecorder(EventRecorderName)}
	return ctrl.NewControllerManagedBy(mgr).
		Named("routepolicy").
		For(&keycapv1alpha1.RoutePolicy{}).
		// Creating, changing or deleting a policy can settle the conflicts of the others that
		// claim (or claimed) one of its hosts.
		Watches(&keycapv1alpha1.RoutePolicy{}, r.sharingHosts()).
		Complete(r)
}

func lowerHosts(rp *keycapv1alpha1.RoutePolicy) []string {
	out := make([]string, 0, len(rp.Spec.Hosts))
	for _, h := range rp.Spec.Hosts {
		out = append(out, strings.ToLower(h))
	}
	return out
}

// Reconcile sets the Ready condition of one RoutePolicy.
func (r *RoutePolicyReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	var rp keycapv1alpha1.RoutePolicy
	if err := r.Get(ctx, req.NamespacedName, &rp); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if rp.DeletionTimestamp != nil {
		return ctrl.Result{}, nil
	}
	before := rp.DeepCopy()
	if err := r.reconcile(ctx, &rp); err != nil {
		return ctrl.Result{}, err
	}
	if equality.Semantic.DeepEqual(before.Status, rp.Status) {
		return ctrl.Result{}, nil
	}
	if err := r.Status().Patch(ctx, &rp, client.MergeFrom(before)); err != nil && !apierrors.IsNotFound(err) {
		return ctrl.Result{}, fmt.Errorf("patching RoutePolicy status: %w", err)
	}
	return ctrl.Result{}, nil
}

// reconcile computes rp's status from the policies that share a host with it.
func (r *RoutePolicyReconciler) reconcile(ctx context.Context, rp *keycapv1alpha1.RoutePolicy) error {
	rivals, err := r.policiesClaiming(ctx, lowerHosts(rp))
	if err != nil {
		return err
	}
	ix := routepolicy.Build(rivals)
	conflicts := ix.Conflicts[types.NamespacedName{Namespace: rp.Namespace, Name: rp.Name}]
	cond := metav1.Condition{
		Type:               keycapv1alpha1.ConditionReady,
		Status:             metav1.ConditionTrue,
		Reason:             keycapv1alpha1.ReasonApplied,
		Message:            "every host of the policy is applied",
		ObservedGeneration: rp.Generation,
	}
	rp.Status.ConflictingHosts = nil
	if len(conflicts) > 0 {
		parts := make([]string, 0, len(conflicts))
		for _, c := range conflicts {
			rp.Status.ConflictingHosts = append(rp.Status.ConflictingHosts, c.Host)
			parts = append(parts, fmt.Sprintf("%s is held by the older RoutePolicy %s", c.Host, c.Holder))
		}
		slices.Sort(rp.Status.ConflictingHosts)
		cond.Status = metav1.ConditionFalse
		cond.Reason = keycapv1alpha1.ReasonHostConflict
		cond.Message = strings.Join(parts, "; ") + "; the policy's other hosts apply"
		if old := meta.FindStatusCondition(rp.Status.Conditions, keycapv1alpha1.ConditionReady); old == nil || old.Message != cond.Message {
			r.Recorder.Eventf(rp, nil, corev1.EventTypeWarning, keycapv1alpha1.ReasonHostConflict, "Reconcile", "%s", cond.Message)
		}
	}
	meta.SetStatusCondition(&rp.Status.Conditions, cond)
	rp.Status.ObservedGeneration = rp.Generation
	return nil
}

// policiesClaiming lists, in every namespace, the policies that claim any of hosts.
func (r *RoutePolicyReconciler) policiesClaiming(ctx context.Context, hosts []string) ([]*keycapv1alpha1.RoutePolicy, error) {
	seen := map[types.NamespacedName]bool{}
	var out []*keycapv1alpha1.RoutePolicy
	for _, h := range hosts {
		var list keycapv1alpha1.RoutePolicyList
		if err := r.List(ctx, &list, client.MatchingFields{indexRoutePolicyHost: h}); err != nil {
			return nil, fmt.Errorf("listing RoutePolicies claiming %s: %w", h, err)
		}
		for i := range list.Items {
			p := &list.Items[i]
			key := types.NamespacedName{Namespace: p.Namespace, Name: p.Name}
			if !seen[key] {
				seen[key] = true
				out = append(out, p)
			}
		}
	}
	return out, nil
}

// sharingHosts enqueues the policies that claim a host the changed policy claims or claimed.
func (r *RoutePolicyReconciler) sharingHosts() handler.TypedEventHandler[client.Object, reconcile.Request] {
	enqueue := func(ctx context.Context, q workqueue.TypedRateLimitingInterface[reconcile.Request], objs ...client.Object) {
		var hosts []string
		for _, o := range objs {
			if rp, ok := o.(*keycapv1alpha1.RoutePolicy); ok {
				hosts = append(hosts, lowerHosts(rp)...)
			}
		}
		rivals, err := r.policiesClaiming(ctx, hosts)
		if err != nil {
			logf.FromContext(ctx).Error(err, "finding the RoutePolicies that share hosts")
			return
		}
		for _, p := range rivals {
			q.Add(reconcile.Request{NamespacedName: types.NamespacedName{Namespace: p.Namespace, Name: p.Name}})
		}
	}
	return handler.Funcs{
		CreateFunc: func(ctx context.Context, e ctrlevent.CreateEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			enqueue(ctx, q, e.Object)
		},
		UpdateFunc: func(ctx context.Context, e ctrlevent.UpdateEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			if e.ObjectOld.GetGeneration() != e.ObjectNew.GetGeneration() || e.ObjectNew.GetDeletionTimestamp() != nil {
				enqueue(ctx, q, e.ObjectOld, e.ObjectNew)
			}
		},
		DeleteFunc: func(ctx context.Context, e ctrlevent.DeleteEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			enqueue(ctx, q, e.Object)
		},
	}
}

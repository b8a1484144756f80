package controllers

import (
	"context"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	keycapv1alpha1 "github.com/keycap-dev/keycap/api/v1alpha1"
)

// indexAgentKeyParent is the field index of AgentKeys by spec.apiKeyRef.name.
const indexAgentKeyParent = "spec.apiKeyRef.name"

// AgentKeyReconciler reconciles AgentKeys into their Secret (data key agent-key) and status. The
// key lifecycle is the ApiKey's (opaquekey.go); on top of it an agent key is Ready only while its
// parent ApiKey is active.
//
// Deleting the parent deletes its agent keys: each AgentKey gets an owner reference (not a
// controller reference) to its parent ApiKey, so Kubernetes' garbage collector removes the agent
// keys, and through their own owner references their Secrets, with the parent. The data plane
// refuses an agent key whose parent is missing at once, without waiting for the collector.
// While the parent is disabled, expired or not Ready, the agent key keeps its key and Secret and
// is Ready=False with reason ParentInactive; re-activating the parent restores it.
type AgentKeyReconciler struct {
	credentialReconciler
}

// +kubebuilder:rbac:groups=keycap.dev,resources=agentkeys,verbs=get;list;watch;update;patch

// Reconcile does the plumbing (get, parent owner reference, status patch); reconcile holds the logic.
func (r *AgentKeyReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	var agentKey keycapv1alpha1.AgentKey
	if live, err := r.getLive(ctx, req, &agentKey); !live {
		return ctrl.Result{}, err
	}
	parent, err := r.getParent(ctx, &agentKey)
	if err != nil {
		return ctrl.Result{}, err
	}
	if err := r.ensureParentOwner(ctx, &agentKey, parent); err != nil {
		return ctrl.Result{}, err
	}
	return r.withStatusPatch(ctx, &agentKey, func() (ctrl.Result, error) { return r.reconcile(ctx, &agentKey, parent) })
}

func (r *AgentKeyReconciler) reconcile(ctx context.Context, agentKey *keycapv1alpha1.AgentKey, parent *keycapv1alpha1.ApiKey) (ctrl.Result, error) {
	out, err := r.reconcileOpaqueKey(ctx, opaqueKey{
		obj:       agentKey,
		spec:      &agentKey.Spec.CredentialSpec,
		lifetime:  agentKey.Spec.Lifetime,
		opaque:    agentKey.Spec.OpaqueKeySpec,
		prefix:    keycapv1alpha1.AgentKeyPrefix,
		dataKey:   keycapv1alpha1.AgentKeySecretKey,
		status:    &agentKey.Status.CredentialStatus,
		keyStatus: &agentKey.Status.OpaqueKeyStatus,
	})
	if err != nil {
		return ctrl.Result{}, err
	}
	next := out.next
	if out.reason == keycapv1alpha1.ReasonIssued {
		now := r.Clock.Now()
		if active, why := parentState(now, agentKey.Spec.APIKeyRef.Name, parent); !active {
			out.reason, out.message = keycapv1alpha1.ReasonParentInactive, why
		} else {
			agentKey.Status.ParentKeyID = parent.Status.KeyID
			// The parent's expiry is read from its spec; wake up when it passes.
			if exp := expiryTime(parent.CreationTimestamp, parent.Spec.Lifetime); exp != nil {
				next = nextDeadline(now, next, &exp.Time)
			}
		}
	}
	r.markReady(agentKey, out.reason, out.message)
	return r.requeueAt(agentKey, next), nil
}

// getParent returns the parent ApiKey, or nil when it does not exist.
func (r *AgentKeyReconciler) getParent(ctx context.Context, agentKey *keycapv1alpha1.AgentKey) (*keycapv1alpha1.ApiKey, error) {
	var parent keycapv1alpha1.ApiKey
	err := r.Get(ctx, types.NamespacedName{Namespace: agentKey.Namespace, Name: agentKey.Spec.APIKeyRef.Name}, &parent)
	switch {
	case apierrors.IsNotFound(err):
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("reading parent ApiKey %s: %w", agentKey.Spec.APIKeyRef.Name, err)
	}
	return &parent, nil
}

// ensureParentOwner adds an owner reference to the parent ApiKey (see AgentKeyReconciler).
func (r *AgentKeyReconciler) ensureParentOwner(ctx context.Context, agentKey *keycapv1alpha1.AgentKey, parent *keycapv1alpha1.ApiKey) error {
	if parent == nil || parent.DeletionTimestamp != nil {
		return nil
	}
	for _, ref := range agentKey.OwnerReferences {
		if ref.UID == parent.UID {
			return nil
		}
	}
	patch := client.MergeFromWithOptions(agentKey.DeepCopy(), client.MergeFromWithOptimisticLock{})
	if err := controllerutil.SetOwnerReference(parent, agentKey, r.Scheme); err != nil {
		return err
	}
	if err := r.Patch(ctx, agentKey, patch); err != nil {
		return fmt.Errorf("adding the owner reference to parent ApiKey %s: %w", parent.Name, err)
	}
	return nil
}

// agentKeysOf maps an ApiKey to the AgentKeys under it.
func (r *AgentKeyReconciler) agentKeysOf(ctx context.Context, apiKey client.Object) []reconcile.Request {
	var list keycapv1alpha1.AgentKeyList
	if err := r.List(ctx, &list, client.InNamespace(apiKey.GetNamespace()), client.MatchingFields{indexAgentKeyParent: apiKey.GetName()}); err != nil {
		return nil
	}
	reqs := make([]reconcile.Request, 0, len(list.Items))
	for _, a := range list.Items {
		reqs = append(reqs, reconcile.Request{NamespacedName: types.NamespacedName{Namespace: a.Namespace, Name: a.Name}})
	}
	return reqs
}

package controllers

import (
	"context"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	keycapv1alpha1 "github.com/keycap-dev/keycap/api/v1alpha1"
	"github.com/keycap-dev/keycap/internal/lifecycle"
	"github.com/keycap-dev/keycap/internal/registry"
)

// agentKeyIssuer issues AgentKeys into their Secret (data key agent-key). The key lifecycle is
// the ApiKey's (opaquekey.go); on top of it an agent key is Ready only while its parent ApiKey is
// active.
//
// Deleting the parent deletes its agent keys: each AgentKey gets an owner reference (not a
// controller reference) to its parent ApiKey, so Kubernetes' garbage collector removes the agent
// keys, and through their own owner references their Secrets, with the parent. The data plane
// refuses an agent key whose parent is missing at once, without waiting for the collector.
// While the parent is disabled, expired or not Ready, the agent key keeps its key and Secret and
// is Ready=False with reason ParentInactive; re-activating the parent restores it.
type agentKeyIssuer struct {
	opaqueKeyIssuer
}

// +kubebuilder:rbac:groups=keycap.dev,resources=agentkeys,verbs=get;list;watch;update;patch

func newAgentKeyIssuer(r *credentialReconciler, _ issuerDeps) issuer {
	return &agentKeyIssuer{opaqueKeyIssuer{r: r, dataKey: keycapv1alpha1.AgentKeySecretKey,
		prefix: func(keycapv1alpha1.OpaqueKeyCredential) string { return keycapv1alpha1.AgentKeyPrefix }}}
}

func (i *agentKeyIssuer) issue(ctx context.Context, in issueInput) (issueResult, error) {
	agentKey := in.obj.(*keycapv1alpha1.AgentKey)
	parent, err := i.getParent(ctx, agentKey)
	if err != nil {
		return issueResult{}, err
	}
	out, err := i.opaqueKeyIssuer.issue(ctx, in)
	if err != nil {
		return issueResult{}, err
	}
	if active, why := lifecycle.ParentState(in.now, agentKey.Spec.APIKeyRef.Name, parent); !active {
		out.parentInactive = why
	} else {
		agentKey.Status.ParentKeyID = parent.Status.KeyID
		// The parent's expiry is read from its spec; wake up when it passes.
		if exp := lifecycle.Expiry(parent.CreationTimestamp, parent.Spec.Lifetime, nil); !exp.IsZero() {
			out.deadlines = append(out.deadlines, &exp)
		}
	}
	return out, nil
}

// prepare adds an owner reference to the parent ApiKey (see agentKeyIssuer).
func (i *agentKeyIssuer) prepare(ctx context.Context, obj keycapv1alpha1.Credential) error {
	agentKey := obj.(*keycapv1alpha1.AgentKey)
	parent, err := i.getParent(ctx, agentKey)
	if err != nil || parent == nil || parent.DeletionTimestamp != nil {
		return err
	}
	for _, ref := range agentKey.OwnerReferences {
		if ref.UID == parent.UID {
			return nil
		}
	}
	patch := client.MergeFromWithOptions(agentKey.DeepCopy(), client.MergeFromWithOptimisticLock{})
	if err := controllerutil.SetOwnerReference(parent, agentKey, i.r.Scheme); err != nil {
		return err
	}
	if err := i.r.Patch(ctx, agentKey, patch); err != nil {
		return fmt.Errorf("adding the owner reference to parent ApiKey %s: %w", parent.Name, err)
	}
	return nil
}

// watch reconciles the AgentKeys under an ApiKey when it changes.
func (i *agentKeyIssuer) watch(b *builder.Builder) *builder.Builder {
	return b.Watches(&keycapv1alpha1.ApiKey{}, handler.EnqueueRequestsFromMapFunc(i.agentKeysOf),
		builder.WithPredicates(ignoreLastUsedAt))
}

// getParent returns the parent ApiKey, or nil when it does not exist.
func (i *agentKeyIssuer) getParent(ctx context.Context, agentKey *keycapv1alpha1.AgentKey) (*keycapv1alpha1.ApiKey, error) {
	var parent keycapv1alpha1.ApiKey
	err := i.r.Get(ctx, types.NamespacedName{Namespace: agentKey.Namespace, Name: agentKey.Spec.APIKeyRef.Name}, &parent)
	switch {
	case apierrors.IsNotFound(err):
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("reading parent ApiKey %s: %w", agentKey.Spec.APIKeyRef.Name, err)
	}
	return &parent, nil
}

// agentKeysOf maps an ApiKey to the AgentKeys under it.
func (i *agentKeyIssuer) agentKeysOf(ctx context.Context, apiKey client.Object) []reconcile.Request {
	var list keycapv1alpha1.AgentKeyList
	if err := i.r.List(ctx, &list, client.InNamespace(apiKey.GetNamespace()), client.MatchingFields{registry.IndexParent: apiKey.GetName()}); err != nil {
		return nil
	}
	reqs := make([]reconcile.Request, 0, len(list.Items))
	for _, a := range list.Items {
		reqs = append(reqs, reconcile.Request{NamespacedName: types.NamespacedName{Namespace: a.Namespace, Name: a.Name}})
	}
	return reqs
}

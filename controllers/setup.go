package controllers

import (
	"context"
	"fmt"
	"sync"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	keycapv1alpha1 "github.com/keycap-dev/keycap/api/v1alpha1"
)

// Options configure the credential controllers.
type Options struct {
	// Clock is the time source of every time-based decision (expiry, rotation, renewal); tests
	// inject a fake one. With a clock other than clock.RealClock, a reconcile's RequeueAfter also
	// waits on this clock (see clockQueue), so stepping a fake clock fires timed work.
	Clock clock.WithTicker
	// OperatorNamespace holds the operator's own Secrets (e.g. AppToken signing keys).
	OperatorNamespace string
	// Issuer is the iss of AppTokens (default signing.DefaultIssuer); the data plane's verifier
	// must use the same.
	Issuer string
}

// EventRecorderName is the reporting controller of keycap's Events.
const EventRecorderName = "keycap-controller"

// indexSecretName is the field index of credentials by the name of their Secret (spec.secretName
// or their own name), so that a Secret event reaches the credential that wants that name even
// when keycap does not own the Secret (a SecretConflict resolves once it is deleted).
const indexSecretName = "keycap.dev/secretName"

// Leader election of the controllers (--leader-elect) uses a Lease in the operator's namespace.
// +kubebuilder:rbac:groups=coordination.k8s.io,resources=leases,verbs=get;list;watch;create;update;patch;delete

// SetupWithManager registers every credential reconciler with mgr.
func SetupWithManager(mgr ctrl.Manager, opts Options) error {
	if opts.Clock == nil {
		opts.Clock = clock.RealClock{}
	}
	ctx := context.Background()
	indexer := mgr.GetFieldIndexer()
	if err := indexer.IndexField(ctx, &keycapv1alpha1.ApiKey{}, indexSecretName, func(o client.Object) []string {
		a := o.(*keycapv1alpha1.ApiKey)
		return []string{secretName(a, &a.Spec.CredentialSpec)}
	}); err != nil {
		return fmt.Errorf("indexing ApiKeys by Secret: %w", err)
	}
	if err := indexer.IndexField(ctx, &keycapv1alpha1.AgentKey{}, indexSecretName, func(o client.Object) []string {
		a := o.(*keycapv1alpha1.AgentKey)
		return []string{secretName(a, &a.Spec.CredentialSpec)}
	}); err != nil {
		return fmt.Errorf("indexing AgentKeys by Secret: %w", err)
	}
	if err := indexer.IndexField(ctx, &keycapv1alpha1.AgentKey{}, indexAgentKeyParent, func(o client.Object) []string {
		return []string{o.(*keycapv1alpha1.AgentKey).Spec.APIKeyRef.Name}
	}); err != nil {
		return fmt.Errorf("indexing AgentKeys by parent: %w", err)
	}

	apiKeys := &ApiKeyReconciler{credentialReconciler: newCredentialReconciler(mgr, opts, KindApiKey)}
	if err := ctrl.NewControllerManagedBy(mgr).
		Named("apikey").
		For(&keycapv1alpha1.ApiKey{}, builder.WithPredicates(ignoreLastUsedAt)).
		Owns(&corev1.Secret{}).
		Watches(&corev1.Secret{}, handler.EnqueueRequestsFromMapFunc(
			apiKeys.credentialsUsingSecret(func() client.ObjectList { return &keycapv1alpha1.ApiKeyList{} }))).
		WithOptions(controllerOptions(opts, &apiKeys.credentialReconciler)).
		Complete(apiKeys); err != nil {
		return fmt.Errorf("setting up the ApiKey controller: %w", err)
	}

	agentKeys := &AgentKeyReconciler{credentialReconciler: newCredentialReconciler(mgr, opts, KindAgentKey)}
	if err := ctrl.NewControllerManagedBy(mgr).
		Named("agentkey").
		For(&keycapv1alpha1.AgentKey{}, builder.WithPredicates(ignoreLastUsedAt)).
		Owns(&corev1.Secret{}).
		Watches(&corev1.Secret{}, handler.EnqueueRequestsFromMapFunc(
			agentKeys.credentialsUsingSecret(func() client.ObjectList { return &keycapv1alpha1.AgentKeyList{} }))).
		Watches(&keycapv1alpha1.ApiKey{}, handler.EnqueueRequestsFromMapFunc(agentKeys.agentKeysOf),
			builder.WithPredicates(ignoreLastUsedAt)).
		WithOptions(controllerOptions(opts, &agentKeys.credentialReconciler)).
		Complete(agentKeys); err != nil {
		return fmt.Errorf("setting up the AgentKey controller: %w", err)
	}
	if _, err := setupSigningKinds(mgr, opts); err != nil {
		return err
	}
	return SetupRoutePolicyWithManager(mgr)
}

// newCredentialReconciler returns the shared part of a reconciler for kind.
func newCredentialReconciler(mgr ctrl.Manager, opts Options, kind string) credentialReconciler {
	return credentialReconciler{
		Client:    mgr.GetClient(),
		APIReader: mgr.GetAPIReader(),
		Scheme:    mgr.GetScheme(),
		Recorder:  mgr.GetEventRecorder(EventRecorderName),
		Clock:     opts.Clock,
		Kind:      kind,
	}
}

// controllerOptions are the options of the controller of r: with an injected clock other than the
// real one, RequeueAfter waits on that clock (clockQueue).
func controllerOptions(opts Options, r *credentialReconciler) controller.Options {
	if _, real := opts.Clock.(clock.RealClock); real {
		return controller.Options{}
	}
	r.deadlines = &sync.Map{}
	return controller.Options{
		NewQueue: func(name string, rateLimiter workqueue.TypedRateLimiter[reconcile.Request]) workqueue.TypedRateLimitingInterface[reconcile.Request] {
			return newClockQueue(opts.Clock, r.deadlines, name, rateLimiter)
		},
	}
}

// credentialsUsingSecret maps a Secret to the credentials (listed with newList, indexed by
// indexSecretName) whose Secret has its name.
func (r *credentialReconciler) credentialsUsingSecret(newList func() client.ObjectList) handler.MapFunc {
	return func(ctx context.Context, secret client.Object) []reconcile.Request {
		list := newList()
		if err := r.List(ctx, list, client.InNamespace(secret.GetNamespace()), client.MatchingFields{indexSecretName: secret.GetName()}); err != nil {
			logf.FromContext(ctx).Error(err, "listing credentials by Secret", "kind", r.Kind)
			return nil
		}
		items, err := meta.ExtractList(list)
		if err != nil {
			return nil
		}
		reqs := make([]reconcile.Request, 0, len(items))
		for _, item := range items {
			if o, ok := item.(client.Object); ok {
				reqs = append(reqs, reconcile.Request{NamespacedName: types.NamespacedName{Namespace: o.GetNamespace(), Name: o.GetName()}})
			}
		}
		return reqs
	}
}

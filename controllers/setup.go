package controllers

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
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
	"github.com/keycap-dev/keycap/internal/registry"
	"github.com/keycap-dev/keycap/internal/signing"
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
	// SigningKeyRotation is how long each AppToken signing key signs before its successor takes
	// over (default signing.DefaultRotateEvery).
	SigningKeyRotation time.Duration
}

// EventRecorderName is the reporting controller of keycap's Events.
const EventRecorderName = "keycap-controller"

// issuerDeps is what the issuers share beyond their reconciler.
type issuerDeps struct {
	// keys is the signing key set (AppToken JWTs, licence files).
	keys  *signing.Manager
	clock clock.PassiveClock
}

// issuers is each kind's issuer, by registry kind name. A kind in the registry without an
// issuer fails SetupWithManager (and TestEveryKindHasAnIssuer).
var issuers = map[string]func(*credentialReconciler, issuerDeps) issuer{
	keycapv1alpha1.KindApiKey:   newApiKeyIssuer,
	keycapv1alpha1.KindAgentKey: newAgentKeyIssuer,
	keycapv1alpha1.KindAppToken: newAppTokenIssuer,
	keycapv1alpha1.KindLicense:  newLicenseIssuer,
}

// Leader election of the controllers (--leader-elect) uses a Lease in the operator's namespace.
// +kubebuilder:rbac:groups=coordination.k8s.io,resources=leases,verbs=get;list;watch;create;update;patch;delete

// SetupWithManager registers a reconciler for every kind of the registry with mgr, and the
// signing key set (a leader-elected Runnable in opts.OperatorNamespace) the signed kinds share.
func SetupWithManager(mgr ctrl.Manager, opts Options) error {
	if opts.Clock == nil {
		opts.Clock = clock.RealClock{}
	}
	if err := registry.AddFieldIndexes(context.Background(), mgr.GetFieldIndexer()); err != nil {
		return err
	}
	keySet := signing.NewManager(mgr.GetClient(), mgr.GetAPIReader(), signing.Options{
		Namespace: opts.OperatorNamespace,
		Issuer:    opts.Issuer,
		Clock:     opts.Clock,
		Policy:    signing.Policy{RotateEvery: opts.SigningKeyRotation},
	})
	if err := mgr.Add(keySet); err != nil {
		return fmt.Errorf("adding the signing key set: %w", err)
	}
	if err := addSessions(mgr, opts); err != nil {
		return err
	}
	deps := issuerDeps{keys: keySet, clock: opts.Clock}

	for _, kind := range registry.Kinds() {
		newIssuer, ok := issuers[kind.Name]
		if !ok {
			return fmt.Errorf("the registry kind %s has no issuer in controllers", kind.Name)
		}
		base := &credentialReconciler{
			Client:    mgr.GetClient(),
			APIReader: mgr.GetAPIReader(),
			Scheme:    mgr.GetScheme(),
			Recorder:  mgr.GetEventRecorder(EventRecorderName),
			Clock:     opts.Clock,
			Kind:      kind.Name,
		}
		r := &kindReconciler{credentialReconciler: base, kind: kind, issuer: newIssuer(base, deps)}
		b := ctrl.NewControllerManagedBy(mgr).
			Named(strings.ToLower(kind.Name)).
			For(kind.New(), builder.WithPredicates(ignoreLastUsedAt)).
			// Secrets are watched by their metadata only: the controllers read a Secret's content
			// from the apiserver (getSecret), so the cache need not hold every Secret of the cluster.
			Owns(&corev1.Secret{}, builder.OnlyMetadata).
			Watches(&corev1.Secret{}, handler.EnqueueRequestsFromMapFunc(r.credentialsUsingSecret), builder.OnlyMetadata)
		if kind.FoundByDigest {
			// A credential holding a digest another one holds too: see duplicates.go.
			for _, other := range registry.Kinds() {
				if other.FoundByDigest {
					b = b.Watches(other.New(), handler.EnqueueRequestsFromMapFunc(r.credentialsSharingDigests),
						builder.WithPredicates(ignoreLastUsedAt))
				}
			}
		}
		if w, ok := r.issuer.(watcher); ok {
			b = w.watch(b)
		}
		if err := b.WithOptions(controllerOptions(opts, base)).Complete(r); err != nil {
			return fmt.Errorf("setting up the %s controller: %w", kind.Name, err)
		}
	}
	return SetupRoutePolicyWithManager(mgr)
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

// credentialsUsingSecret maps a Secret to the credentials of this kind whose Secret has its name
// (registry's UsingSecretName), so that a Secret event reaches the credential that wants that
// name even when keycap does not own the Secret (a SecretConflict resolves once it is deleted).
func (r *kindReconciler) credentialsUsingSecret(ctx context.Context, secret client.Object) []reconcile.Request {
	using, err := r.kind.UsingSecretName(ctx, r.Client, secret.GetNamespace(), secret.GetName())
	if err != nil {
		logf.FromContext(ctx).Error(err, "finding credentials by Secret", "kind", r.Kind)
		return nil
	}
	var reqs []reconcile.Request
	for _, c := range using {
		reqs = append(reqs, reconcile.Request{NamespacedName: types.NamespacedName{Namespace: c.GetNamespace(), Name: c.GetName()}})
	}
	return reqs
}

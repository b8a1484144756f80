package controllers

import (
	"context"

	ctrl "sigs.k8s.io/controller-runtime"

	keycapv1alpha1 "github.com/keycap-dev/keycap/api/v1alpha1"
)

// DefaultApiKeyPrefix starts the keys of an ApiKey without spec.prefix.
const DefaultApiKeyPrefix = "kc"

// ApiKeyReconciler reconciles ApiKeys into their Secret (data key api-key) and status.
type ApiKeyReconciler struct {
	credentialReconciler
}

// +kubebuilder:rbac:groups=keycap.dev,resources=apikeys;agentkeys;apptokens;licenses,verbs=get;list;watch
// +kubebuilder:rbac:groups=keycap.dev,resources=apikeys/status;agentkeys/status;apptokens/status;licenses/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=keycap.dev,resources=apikeys/finalizers;agentkeys/finalizers;apptokens/finalizers;licenses/finalizers,verbs=update
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups="",resources=events,verbs=create;patch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// Reconcile does the plumbing (get, status patch); reconcile holds the logic.
func (r *ApiKeyReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	var apiKey keycapv1alpha1.ApiKey
	if live, err := r.getLive(ctx, req, &apiKey); !live {
		return ctrl.Result{}, err
	}
	return r.withStatusPatch(ctx, &apiKey, func() (ctrl.Result, error) { return r.reconcile(ctx, &apiKey) })
}

func (r *ApiKeyReconciler) reconcile(ctx context.Context, apiKey *keycapv1alpha1.ApiKey) (ctrl.Result, error) {
	prefix := apiKey.Spec.Prefix
	if prefix == "" {
		prefix = DefaultApiKeyPrefix
	}
	out, err := r.reconcileOpaqueKey(ctx, opaqueKey{
		obj:       apiKey,
		spec:      &apiKey.Spec.CredentialSpec,
		lifetime:  apiKey.Spec.Lifetime,
		opaque:    apiKey.Spec.OpaqueKeySpec,
		prefix:    prefix,
		dataKey:   keycapv1alpha1.ApiKeySecretKey,
		status:    &apiKey.Status.CredentialStatus,
		keyStatus: &apiKey.Status.OpaqueKeyStatus,
	})
	if err != nil {
		return ctrl.Result{}, err
	}
	r.markReady(apiKey, out.reason, out.message)
	return r.requeueAt(apiKey, out.next), nil
}

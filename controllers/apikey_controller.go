package controllers

import (
	keycapv1alpha1 "github.com/keycap-dev/keycap/api/v1alpha1"
)

// DefaultApiKeyPrefix starts the keys of an ApiKey without spec.prefix.
const DefaultApiKeyPrefix = "kc"

// The ApiKey's story is the opaque-key issuer's (opaquekey.go) with the key type prefix from
// spec.prefix, into the Secret's api-key.

// +kubebuilder:rbac:groups=keycap.dev,resources=apikeys;agentkeys;apptokens;licenses,verbs=get;list;watch
// +kubebuilder:rbac:groups=keycap.dev,resources=apikeys/status;agentkeys/status;apptokens/status;licenses/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=keycap.dev,resources=apikeys/finalizers;agentkeys/finalizers;apptokens/finalizers;licenses/finalizers,verbs=update
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups="",resources=events,verbs=create;patch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

func newApiKeyIssuer(r *credentialReconciler, _ issuerDeps) issuer {
	return &opaqueKeyIssuer{r: r, dataKey: keycapv1alpha1.ApiKeySecretKey, prefix: func(obj keycapv1alpha1.OpaqueKeyCredential) string {
		if p := obj.(*keycapv1alpha1.ApiKey).Spec.Prefix; p != "" {
			return p
		}
		return DefaultApiKeyPrefix
	}}
}

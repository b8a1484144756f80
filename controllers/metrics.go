package controllers

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	keycapv1alpha1 "github.com/keycap-dev/keycap/api/v1alpha1"
)

// Metric names. They are part of the operator's interface: dashboards and alerts use them.
const (
	// MetricExpiryTimestamp is the expiry of each credential, in Unix seconds, labelled kind,
	// namespace and name. A credential without expiry has no series; a deleted one loses its series.
	MetricExpiryTimestamp = "keycap_credential_expiry_timestamp_seconds"
	// MetricCredentials counts credentials by kind and state.
	MetricCredentials = "keycap_credentials"
	// MetricReconcileErrors counts failed reconciles by kind and Ready reason.
	MetricReconcileErrors = "keycap_reconcile_errors_total"
)

// States of MetricCredentials.
const (
	StateReady          = "ready"
	StateDisabled       = "disabled"
	StateExpired        = "expired"
	StateParentInactive = "parent_inactive"
	StateError          = "error"
)

var (
	expiryTimestamp = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: MetricExpiryTimestamp,
		Help: "When each credential expires, in Unix seconds; absent for credentials that do not expire.",
	}, []string{"kind", "namespace", "name"})

	credentialsByState = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: MetricCredentials,
		Help: "Number of credentials by kind and state (ready, disabled, expired, parent_inactive, error).",
	}, []string{"kind", "state"})

	reconcileErrors = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: MetricReconcileErrors,
		Help: "Reconciles that ended with the credential not usable because of an error, by kind and Ready reason.",
	}, []string{"kind", "reason"})

	// states remembers each credential's last state so credentialsByState can be kept as counts.
	states = credentialStates{byObject: map[credentialRef]string{}}
)

func init() {
	metrics.Registry.MustRegister(expiryTimestamp, credentialsByState, reconcileErrors)
}

// credentialRef names one credential in the metrics.
type credentialRef struct{ kind, namespace, name string }

type credentialStates struct {
	mu       sync.Mutex
	byObject map[credentialRef]string
}

// stateOf maps a Ready reason to a state of MetricCredentials.
func stateOf(reason string) string {
	switch reason {
	case keycapv1alpha1.ReasonIssued:
		return StateReady
	case keycapv1alpha1.ReasonDisabled:
		return StateDisabled
	case keycapv1alpha1.ReasonExpired:
		return StateExpired
	case keycapv1alpha1.ReasonParentInactive:
		return StateParentInactive
	default:
		return StateError
	}
}

// recordCredential records a credential's state (from its Ready reason) and expiry.
func recordCredential(kind, namespace, name, readyReason string, expiresAt *metav1.Time) {
	ref := credentialRef{kind, namespace, name}
	if expiresAt != nil {
		expiryTimestamp.WithLabelValues(kind, namespace, name).Set(float64(expiresAt.Unix()))
	} else {
		expiryTimestamp.DeleteLabelValues(kind, namespace, name)
	}
	state := stateOf(readyReason)
	states.mu.Lock()
	defer states.mu.Unlock()
	old, known := states.byObject[ref]
	if known && old == state {
		return
	}
	if known {
		credentialsByState.WithLabelValues(kind, old).Dec()
	}
	credentialsByState.WithLabelValues(kind, state).Inc()
	states.byObject[ref] = state
}

// forgetCredential removes a deleted credential from the metrics.
func forgetCredential(kind, namespace, name string) {
	ref := credentialRef{kind, namespace, name}
	expiryTimestamp.DeleteLabelValues(kind, namespace, name)
	states.mu.Lock()
	defer states.mu.Unlock()
	if old, known := states.byObject[ref]; known {
		credentialsByState.WithLabelValues(kind, old).Dec()
		delete(states.byObject, ref)
	}
}

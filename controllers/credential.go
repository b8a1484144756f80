package controllers

import (
	"errors"
	"fmt"
	"sync"

	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/recorder"

	keycapv1alpha1 "github.com/keycap-dev/keycap/api/v1alpha1"
)

// Kinds as they appear in labels, events and metrics.
const (
	KindApiKey   = "ApiKey"
	KindAgentKey = "AgentKey"
	KindAppToken = "AppToken"
	KindLicense  = "License"
)

// Event reasons besides the Ready reasons of api/v1alpha1/conditions.go (which are used as event
// reasons for failures). Events never contain a key; they name keys by keyID.
const (
	// EventReasonIssued: a first key was issued into the Secret.
	EventReasonIssued = "Issued"
	// EventReasonReissued: the Secret was missing or did not hold a valid key; a new key was
	// issued and the old one stopped being valid at once.
	EventReasonReissued = "Reissued"
	// EventReasonRotated: the key was rotated; the previous key stays valid for the grace period.
	EventReasonRotated = "Rotated"
	// EventReasonGracePeriodEnded: the previous key stopped being valid.
	EventReasonGracePeriodEnded = "GracePeriodEnded"
	// EventReasonExpired: the credential expired.
	EventReasonExpired = "Expired"
)

// credentialReconciler holds what every credential reconciler needs; the per-kind reconcilers embed
// it and use its helpers (status.go, secret.go, opaquekey.go).
type credentialReconciler struct {
	// Client reads the credentials from the manager's cache and writes.
	client.Client
	// APIReader reads Secrets directly from the apiserver, so that a key is never derived from a
	// stale cached Secret (and foreign Secrets need not be cached to detect a conflict).
	APIReader client.Reader
	Scheme    *runtime.Scheme
	Recorder  recorder.EventRecorder
	// Clock is the time source of every time-based decision.
	Clock clock.PassiveClock
	// Kind is the credential kind this reconciler handles (KindApiKey, ...).
	Kind string

	// deadlines, with a fake clock only, passes the absolute deadline of each RequeueAfter to the
	// clockQueue; nil in production.
	deadlines *sync.Map
}

// credentialError is a failure that retrying cannot fix; the credential waits, Ready=False with the
// given reason, until something it watches changes.
type credentialError struct {
	reason, message string
}

func (e *credentialError) Error() string { return e.reason + ": " + e.message }

// failf returns a credentialError: Ready=False with reason, no retry.
func failf(reason, format string, args ...any) error {
	return &credentialError{reason: reason, message: fmt.Sprintf(format, args...)}
}

// asCredentialError unwraps a credentialError.
func asCredentialError(err error) (*credentialError, bool) {
	var ce *credentialError
	ok := errors.As(err, &ce)
	return ce, ok
}

// credentialStatus returns the status every credential kind shares, or nil for other objects.
func credentialStatus(obj client.Object) *keycapv1alpha1.CredentialStatus {
	switch o := obj.(type) {
	case *keycapv1alpha1.ApiKey:
		return &o.Status.CredentialStatus
	case *keycapv1alpha1.AgentKey:
		return &o.Status.CredentialStatus
	case *keycapv1alpha1.AppToken:
		return &o.Status.CredentialStatus
	case *keycapv1alpha1.License:
		return &o.Status.CredentialStatus
	}
	return nil
}

// ignoreLastUsedAt filters out updates of a credential that change nothing but status.lastUsedAt
// (which the data plane writes as keys are used) and bookkeeping metadata: they need no reconcile.
// Status changes the controllers make themselves still pass, so a reconcile that read a stale
// object runs again on the fresh one, and AgentKeys see their parent's Ready condition change.
var ignoreLastUsedAt = predicate.Funcs{
	UpdateFunc: func(e event.UpdateEvent) bool {
		if e.ObjectOld == nil || e.ObjectNew == nil {
			return true
		}
		return !equality.Semantic.DeepEqual(withoutNoise(e.ObjectOld), withoutNoise(e.ObjectNew))
	},
}

func withoutNoise(obj client.Object) client.Object {
	c := obj.DeepCopyObject().(client.Object)
	c.SetResourceVersion("")
	c.SetManagedFields(nil)
	if s := credentialStatus(c); s != nil {
		s.LastUsedAt = nil
	}
	return c
}

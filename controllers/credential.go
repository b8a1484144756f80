package controllers

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrlevent "sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/recorder"

	keycapv1alpha1 "github.com/keycap-dev/keycap/api/v1alpha1"
)

// Event reasons besides the Ready reasons of api/v1alpha1/conditions.go (which are used as event
// reasons for failures). Events never contain a key; they name keys by keyID.
const (
	// EventReasonIssued: a first key was issued into the Secret.
	EventReasonIssued = "Issued"
	// EventReasonReissued: the Secret was missing or did not hold the key keycap issued; a new key
	// was issued and the old one stopped being valid at once.
	EventReasonReissued = "Reissued"
	// EventReasonRotated: the key was rotated; the previous key stays valid for the grace period.
	EventReasonRotated = "Rotated"
	// EventReasonGracePeriodEnded: the previous key stopped being valid.
	EventReasonGracePeriodEnded = "GracePeriodEnded"
	// EventReasonExpired: the credential expired.
	EventReasonExpired = "Expired"
	// EventReasonSecretRestored: the Secret keycap issued had lost its owner reference (or its
	// labels); keycap put them back, so rotation and garbage collection go on.
	EventReasonSecretRestored = "SecretRestored"
)

// credentialReconciler holds what every credential reconciler needs: the plumbing helpers of
// status.go, secret.go and queue.go hang off it, and each kind's issuer reaches the cluster
// through it.
type credentialReconciler struct {
	// Client reads the credentials from the manager's cache and writes.
	client.Client
	// APIReader reads Secrets (and a credential whose cached status disagrees with its Secret)
	// directly from the apiserver, so that nothing is derived from a stale cache (and foreign
	// Secrets need not be cached to detect a conflict).
	APIReader client.Reader
	Scheme    *runtime.Scheme
	Recorder  recorder.EventRecorder
	// Clock is the time source of every time-based decision.
	Clock clock.PassiveClock
	// Kind is the name of the credential kind this reconciler handles (keycapv1alpha1.KindApiKey, ...).
	Kind string

	// deadlines, with a fake clock only, passes the absolute deadline of each RequeueAfter to the
	// clockQueue; nil in production.
	deadlines *sync.Map
}

// credentialError is a failure that retrying at once cannot fix; the credential waits, Ready=False
// with the given reason, until something it watches changes (or retryAfter passes).
type credentialError struct {
	reason, message string
	// retryAfter, when set, runs the reconcile again after it (e.g. a signing key set that could
	// not be loaded yet).
	retryAfter time.Duration
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

// errNamespaceTerminating says the credential's namespace is being deleted, so its Secret cannot
// be written again: expected when a tenant goes away, neither an error nor worth a retry.
var errNamespaceTerminating = errors.New("the namespace is being terminated")

// ignoreLastUsedAt filters out updates of a credential that change nothing but status.lastUsedAt
// (which the data plane writes as keys are used) and bookkeeping metadata: they need no reconcile.
// Status changes the controllers make themselves still pass, so a reconcile that read a stale
// object runs again on the fresh one, and AgentKeys see their parent's Ready condition change.
var ignoreLastUsedAt = predicate.Funcs{
	UpdateFunc: func(e ctrlevent.UpdateEvent) bool {
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
	if cred, ok := c.(keycapv1alpha1.Credential); ok {
		cred.GetCredentialStatus().LastUsedAt = nil
	}
	return c
}

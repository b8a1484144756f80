package controllers

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	keycapv1alpha1 "github.com/keycap-dev/keycap/api/v1alpha1"
)

// getLive reads the credential of req into obj and says whether there is anything to reconcile:
// not when it is gone (its metrics are forgotten) or being deleted (its Secret goes with it through
// the owner reference), nor on an error, which it returns.
func (r *credentialReconciler) getLive(ctx context.Context, req ctrl.Request, obj client.Object) (bool, error) {
	if err := r.Get(ctx, req.NamespacedName, obj); err != nil {
		if apierrors.IsNotFound(err) {
			forgetCredential(r.Kind, req.Namespace, req.Name)
			return false, nil
		}
		return false, err
	}
	return obj.GetDeletionTimestamp() == nil, nil
}

// statusPatch is the base a reconcile's status patch is computed against. rebase moves it when
// the reconcile replaced the object with a fresher copy read from the apiserver.
type statusPatch struct {
	obj    keycapv1alpha1.Credential
	before keycapv1alpha1.Credential
}

// rebase makes the object as it is now the base of the status patch.
func (p *statusPatch) rebase() {
	p.before = p.obj.DeepCopyObject().(keycapv1alpha1.Credential)
}

// withStatusPatch runs reconcile on obj (a credential read from the cache) and then patches obj's
// status if reconcile changed it. This is the plumbing every credential reconciler shares, and the
// one way a reconcile fails:
//   - an error reconcile returns is turned into Ready=False (markFailed: condition, Warning Event,
//     metric); a credentialError is not retried (or only after its retryAfter), any other error is
//     (conflicts are retried quietly, without touching the condition);
//   - status.observedGeneration is set only when reconcile succeeded;
//   - the status is patched with a JSON merge patch computed against a copy taken before reconcile,
//     so only fields keycap changed are sent: status.lastUsedAt, which the data plane writes, is
//     never cleared or overwritten;
//   - nothing is written when nothing changed.
//
// reconcile must change only the status of obj (or replace obj by a fresh read and rebase).
func (r *credentialReconciler) withStatusPatch(ctx context.Context, obj keycapv1alpha1.Credential, reconcile func(*statusPatch) (ctrl.Result, error)) (ctrl.Result, error) {
	p := &statusPatch{obj: obj}
	p.rebase()
	status := obj.GetCredentialStatus()

	result, err := reconcile(p)
	switch ce, terminal := asCredentialError(err); {
	case err == nil:
		status.ObservedGeneration = obj.GetGeneration()
	case terminal:
		r.markFailed(ctx, obj, ce.reason, ce.message)
		result, err = ctrl.Result{RequeueAfter: ce.retryAfter}, nil
	case apierrors.IsConflict(err):
		// Someone wrote the Secret or the credential meanwhile; retry on the fresh object.
	default:
		r.markFailed(ctx, obj, keycapv1alpha1.ReasonError, err.Error())
	}

	if equality.Semantic.DeepEqual(p.before, obj) {
		return result, err
	}
	if patchErr := r.Status().Patch(ctx, obj, client.MergeFrom(p.before)); patchErr != nil && !apierrors.IsNotFound(patchErr) {
		if err == nil {
			err = fmt.Errorf("patching status: %w", patchErr)
		}
	}
	return result, err
}

// markReady sets the Ready condition from a Ready reason (True for Issued, False otherwise) and
// records the credential's state and expiry in the metrics.
func (r *credentialReconciler) markReady(obj keycapv1alpha1.Credential, reason, message string) {
	status := obj.GetCredentialStatus()
	cond := metav1.ConditionFalse
	if reason == keycapv1alpha1.ReasonIssued {
		cond = metav1.ConditionTrue
	}
	r.setReady(obj, cond, reason, message)
	recordCredential(r.Kind, obj.GetNamespace(), obj.GetName(), reason, status.ExpiresAt)
}

// markFailed is the one failure helper: Ready=False with reason and message, a Warning Event when
// the condition changes (not on every retry), and the error metric. message must never hold a key.
func (r *credentialReconciler) markFailed(ctx context.Context, obj keycapv1alpha1.Credential, reason, message string) {
	status := obj.GetCredentialStatus()
	old := meta.FindStatusCondition(status.Conditions, keycapv1alpha1.ConditionReady)
	changed := old == nil || old.Reason != reason || old.Message != message || old.Status != metav1.ConditionFalse
	r.setReady(obj, metav1.ConditionFalse, reason, message)
	reconcileErrors.WithLabelValues(r.Kind, reason).Inc()
	recordCredential(r.Kind, obj.GetNamespace(), obj.GetName(), reason, status.ExpiresAt)
	if changed {
		r.Recorder.Eventf(obj, nil, corev1.EventTypeWarning, reason, "Reconcile", "%s", message)
	}
	logf.FromContext(ctx).Info("credential not ready", "reason", reason, "message", message)
}

// event emits a Normal Event about obj. note must never hold a key.
func (r *credentialReconciler) event(obj client.Object, reason, note string) {
	r.Recorder.Eventf(obj, nil, corev1.EventTypeNormal, reason, "Reconcile", "%s", note)
}

// setReady sets the Ready condition; its lastTransitionTime comes from the injected clock.
// message must be stable between reconciles of an unchanged credential (no "expires in ..."),
// or every reconcile would write the status again.
func (r *credentialReconciler) setReady(obj keycapv1alpha1.Credential, cond metav1.ConditionStatus, reason, message string) {
	meta.SetStatusCondition(&obj.GetCredentialStatus().Conditions, metav1.Condition{
		Type:               keycapv1alpha1.ConditionReady,
		Status:             cond,
		Reason:             reason,
		Message:            message,
		ObservedGeneration: obj.GetGeneration(),
		LastTransitionTime: metav1.NewTime(r.Clock.Now()),
	})
}

// readyReason returns the reason of obj's Ready condition, or "".
func readyReason(status *keycapv1alpha1.CredentialStatus) string {
	if c := meta.FindStatusCondition(status.Conditions, keycapv1alpha1.ConditionReady); c != nil {
		return c.Reason
	}
	return ""
}

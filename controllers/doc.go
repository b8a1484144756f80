// Package controllers reconciles keycap's credential kinds into Secrets and status.
//
// One reconciler per kind (<kind>_controller.go); what they share lives in files of its own:
//
//   - credential.go: credentialReconciler, embedded by every reconciler (cached client, an
//     uncached APIReader for Secrets, scheme, event recorder, injected clock, kind); failf for
//     failures that retrying cannot fix; the ignoreLastUsedAt predicate (status.lastUsedAt is
//     written by the data plane and needs no reconcile).
//   - status.go: withStatusPatch, the plumbing around a kind's reconcile (Ready=False and a
//     Warning Event on error, observedGeneration only on success, a merge patch of the status
//     against a copy so status.lastUsedAt is never touched, no write when nothing changed);
//     markReady (Ready from a reason in api/v1alpha1/conditions.go, plus metrics) and markFailed
//     (the one failure helper: condition, Warning Event, error metric).
//   - secret.go: getOwnedSecret (uncached read; SecretConflict when keycap does not own the
//     Secret) and writeOwnedSecret (keycap's labels, the secretTemplate without keycap.dev/*
//     keys, controller owner reference, optimistic update only when something differs).
//   - metrics.go: keycap_credential_expiry_timestamp_seconds{kind,namespace,name},
//     keycap_credentials{kind,state}, keycap_reconcile_errors_total{kind,reason}.
//   - policy.go: the time-based decisions as pure functions of "now" (rotate? previous key still
//     valid? expired? next deadline?), unit-tested with a fake clock.
//   - queue.go: requeueAt, the way to schedule timed work; with a fake clock (tests) RequeueAfter
//     waits on that clock, so stepping it fires expiry, rotation and renewal.
//   - opaquekey.go: the opaque-key lifecycle of ApiKey and AgentKey, written once.
//
// A new kind's reconciler: embed credentialReconciler (newCredentialReconciler), Get the object
// (NotFound: forgetCredential), return r.withStatusPatch(ctx, obj, func() { ... }), end the inner
// reconcile with r.markReady(obj, reason, message) and r.requeueAt(obj, nextDeadline(now, ...)),
// and register it in SetupWithManager with WithOptions(controllerOptions(opts, &r.credentialReconciler)).
package controllers

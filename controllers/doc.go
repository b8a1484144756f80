// Package controllers reconciles keycap's credential kinds into Secrets and status.
//
// One reconciler, kindReconciler (issuer.go), serves every kind of internal/registry; what is
// particular to a kind is its issuer, in <kind>_controller.go: given the time, the object and the
// Secret it holds, what the Secret and the status should be. SetupWithManager (setup.go) iterates
// registry.Kinds() with the table issuers (kind name → issuer).
//
//   - issuer.go: the issuer interface, the reconcile every kind shares (trusted Secret, issuer,
//     Secret write, Events, duplicate keys, the Ready reason order of lifecycle.ReadyReason,
//     timed work) and the Events of a first issue and a re-issue, written once.
//   - opaquekey.go: the issuer of the opaque-key kinds (ApiKey, AgentKey): generation, rotation
//     with grace, bring-your-own keyHash. apikey_controller.go and agentkey_controller.go add the
//     key prefix, and the parent rule of AgentKeys. apptoken_controller.go issues and renews
//     signed JWTs; license_controller.go issues licence keys and signed licence files.
//   - secret.go: which Secret keycap trusts (only at the name status records, only holding what
//     status records: a tenant can forge a Secret's labels, annotations and owner references, not
//     a credential's status) and writing it (keycap's labels, the secretTemplate without reserved
//     keys, controller owner reference, optimistic update only when something differs).
//   - duplicates.go: two credentials holding the same key digest (a raced keyHash): the oldest
//     keeps it, the others are DuplicateKey and list nothing.
//   - status.go: withStatusPatch, the plumbing around a reconcile and its one way to fail
//     (Ready=False, Warning Event, error metric; observedGeneration only on success; a merge patch
//     of the status so status.lastUsedAt is never touched; no write when nothing changed).
//   - credential.go: credentialReconciler (cached client, an uncached APIReader for Secrets,
//     scheme, event recorder, injected clock, kind), credentialError, ignoreLastUsedAt.
//   - metrics.go: keycap_credential_expiry_timestamp_seconds{kind,namespace,name},
//     keycap_credentials{kind,state}, keycap_reconcile_errors_total{kind,reason}.
//   - queue.go: requeueAt, the way to schedule timed work; with a fake clock (tests) RequeueAfter
//     waits on that clock, so stepping it fires expiry, rotation and renewal.
//
// The rules over time (expiry, Ready reason order, rotation, grace, renewal, seats) are not here:
// they are internal/lifecycle's pure functions, which the webhook and the data plane use too.
//
// A new kind needs, in this package, only its issuer (a <kind>_controller.go implementing issuer,
// plus digestIssuer when the data plane finds it by digest, preparer/preflighter/watcher when it
// needs them) and its line in the issuers table.
package controllers

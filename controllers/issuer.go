package controllers

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"

	keycapv1alpha1 "github.com/keycap-dev/keycap/api/v1alpha1"
	"github.com/keycap-dev/keycap/internal/lifecycle"
	"github.com/keycap-dev/keycap/internal/registry"
)

// issuer is a kind's whole story in the controller: given the time, the object and the Secret it
// holds, what the Secret and the status should be. The plumbing around it (reading the object,
// which Secret is trusted, writing the Secret, Events, duplicate keys, the Ready reason order,
// the status patch, timed work) is the same for every kind and lives in kindReconciler.
type issuer interface {
	// usesSecret says whether obj is issued into a Secret at all (a bring-your-own key is not).
	usesSecret(obj keycapv1alpha1.Credential) bool
	// vouches says whether secret holds exactly what obj's status records (see secret.go): only
	// then is its content believed.
	vouches(obj keycapv1alpha1.Credential, secret *corev1.Secret) bool
	// issue decides at in.now what obj's Secret must hold, issuing a new key when the Secret held
	// nothing status vouches for, and fills obj's status except its Ready condition.
	issue(ctx context.Context, in issueInput) (issueResult, error)
	// revoke makes what obj's Secret held stop being valid (the Secret is gone and cannot be
	// written again, or it is no longer keycap's).
	revoke(obj keycapv1alpha1.Credential, now time.Time)
}

// digestIssuer is implemented by the issuers of the kinds the data plane finds by digest
// (registry.Kind.FoundByDigest): the duplicate-key rule edits the digests status lists.
type digestIssuer interface {
	issuer
	// statusDigests points at the digests obj's status lists.
	statusDigests(obj keycapv1alpha1.Credential) *[]string
}

// preparer is implemented by issuers that change the object itself, or status fields others
// write, before the reconcile (their writes are not part of the reconcile's status patch).
type preparer interface {
	prepare(ctx context.Context, obj keycapv1alpha1.Credential) error
}

// preflighter is implemented by issuers that need something before any Secret is judged (the
// signing key set); its error fails the reconcile like any other.
type preflighter interface {
	preflight(ctx context.Context) error
}

// watcher is implemented by issuers whose objects depend on other objects than their Secret.
type watcher interface {
	watch(b *builder.Builder) *builder.Builder
}

// issueInput is what an issuer decides on.
type issueInput struct {
	now time.Time
	obj keycapv1alpha1.Credential
	// expired says obj's own lifetime has ended.
	expired bool
	// name is the Secret's name ("" when the kind issues no Secret for obj).
	name string
	// secret is the Secret held at name, already judged keycap's (nil: none). Its content is
	// believed only when vouches says so.
	secret *corev1.Secret
}

// issueResult is what an issuer decided.
type issueResult struct {
	// content is what the Secret must hold; nil leaves the Secret as it is (or writes none).
	content *secretContent
	// events are emitted once the Secret is written.
	events []event
	// deadlines are when timed decisions are due (rotation, end of grace, renewal, release).
	deadlines []*time.Time
	// issued says what is issued, for the message of a Ready credential.
	issued string
	// parentInactive is non-empty, and says why, when an AgentKey's parent is not active.
	parentInactive string
}

type event struct{ reason, note string }

// issueCause is why a new key or token is issued.
type issueCause int

const (
	// causeFirst: nothing was issued yet.
	causeFirst issueCause = iota
	// causeDeleted: the Secret keycap issued was deleted.
	causeDeleted
	// causeMoved: the credential is now issued into another Secret (spec.secretName set later,
	// spec.keyHash removed).
	causeMoved
	// causeCompromised: the Secret held something keycap did not issue (tampered with).
	causeCompromised
)

// causeOf says why a new key is issued into in.name when status does not vouch for what the
// Secret held there (in.secret, nil: none); issuedBefore says whether status records an earlier
// issue.
func causeOf(in issueInput, issuedBefore bool) issueCause {
	switch {
	case in.secret != nil:
		return causeCompromised
	case !issuedBefore:
		return causeFirst
	case in.obj.GetCredentialStatus().SecretName != in.name:
		return causeMoved
	}
	return causeDeleted
}

// issueEvent is the Event of a first issue or a re-issue, for every kind: noun is what was
// issued ("key", "licence key", "token"), id names it (a keyID or jti, never the secret itself).
func issueEvent(cause issueCause, noun, id, secretName string) event {
	what := noun
	if id != "" {
		what += " " + id
	}
	switch cause {
	case causeMoved:
		return event{EventReasonReissued, fmt.Sprintf("the credential is now issued into Secret %s: issued a new %s; the previous %s stopped being valid at once",
			secretName, what, noun)}
	case causeDeleted:
		return event{EventReasonReissued, fmt.Sprintf("Secret %s was deleted: issued a new %s; the previous %s stopped being valid at once",
			secretName, what, noun)}
	case causeCompromised:
		return event{EventReasonReissued, fmt.Sprintf("Secret %s did not hold the %s keycap issued: the %s it held is treated as compromised and stopped being valid at once, with no grace period; issued a new %s",
			secretName, noun, noun, what)}
	}
	return event{EventReasonIssued, fmt.Sprintf("issued %s into Secret %s", what, secretName)}
}

// kindReconciler reconciles one credential kind: the registry entry says what the kind is, the
// issuer what its Secret and status should be.
type kindReconciler struct {
	*credentialReconciler
	kind   *registry.Kind
	issuer issuer
}

// Reconcile does the plumbing (get, the issuer's preparation, status patch); reconcile holds the
// logic.
func (r *kindReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	obj := r.kind.New()
	if live, err := r.getLive(ctx, req, obj); !live {
		return ctrl.Result{}, err
	}
	if p, ok := r.issuer.(preparer); ok {
		if err := p.prepare(ctx, obj); err != nil {
			return ctrl.Result{}, err
		}
	}
	return r.withStatusPatch(ctx, obj, func(p *statusPatch) (ctrl.Result, error) { return r.reconcile(ctx, p) })
}

func (r *kindReconciler) reconcile(ctx context.Context, p *statusPatch) (ctrl.Result, error) {
	now := r.Clock.Now()
	if pf, ok := r.issuer.(preflighter); ok {
		if err := pf.preflight(ctx); err != nil {
			return ctrl.Result{}, err
		}
	}
	var held heldSecret
	name := ""
	if r.issuer.usesSecret(p.obj) {
		name = keycapv1alpha1.SecretNameOf(p.obj)
		var revoke bool
		var err error
		held, revoke, err = r.readSecret(ctx, p, name, func(s *corev1.Secret) bool { return r.issuer.vouches(p.obj, s) })
		if err != nil {
			if revoke {
				r.issuer.revoke(p.obj, now)
			}
			return ctrl.Result{}, err
		}
	}
	obj := p.obj // after readSecret, which may have read it fresh
	status := obj.GetCredentialStatus()
	status.ExpiresAt = lifecycle.SpecExpiry(obj.GetCreationTimestamp(), obj.GetLifetime())
	// The controller writes status.expiresAt from the spec, so the spec alone is its expiry.
	expiry := lifecycle.Expiry(obj.GetCreationTimestamp(), obj.GetLifetime(), nil)
	oldName := status.SecretName

	out, err := r.issuer.issue(ctx, issueInput{now: now, obj: obj, expired: lifecycle.Expired(now, expiry), name: name, secret: held.secret})
	if err != nil {
		return ctrl.Result{}, err
	}
	if out.content != nil {
		if held.secret != nil && !maps.EqualFunc(held.secret.Data, out.content.data, bytes.Equal) {
			// A new key or token into an existing Secret (a rotation, a renewal): status first.
			// If the operator stops between the two writes, status already names the new one and
			// still vouches for the Secret's (a rotated key's grace period, an earlier token not
			// revoked), so the next reconcile completes the change (rotationInterrupted,
			// renewalInterrupted). The other order would leave a Secret holding something no
			// status vouches for: treated as compromised, the old key's grace period lost and
			// the earlier tokens revoked.
			if err := r.Status().Patch(ctx, obj, client.MergeFrom(p.before)); err != nil {
				return ctrl.Result{}, fmt.Errorf("recording the new key in status before writing Secret %s: %w", name, err)
			}
			p.rebase()
		}
		if err := r.writeOwnedSecret(ctx, obj, oldName, name, held.secret, *out.content); err != nil {
			if errors.Is(err, errNamespaceTerminating) {
				return r.namespaceTerminating(obj, now, name), nil
			}
			return ctrl.Result{}, err
		}
		if held.restored {
			r.event(obj, EventReasonSecretRestored, fmt.Sprintf("Secret %s had lost its owner reference; it holds the key keycap issued, so keycap manages it again", name))
		}
	}
	if oldName != "" && oldName != name && (out.content != nil || name == "") {
		// spec.secretName was set after the key was issued under the default name (or a
		// bring-your-own key replaced it): the old Secret holds a key no longer valid, so it goes.
		if err := r.deleteOwnedSecret(ctx, obj, oldName); err != nil {
			return ctrl.Result{}, err
		}
	}
	for _, e := range out.events {
		r.event(obj, e.reason, e.note)
	}
	if r.kind.FoundByDigest {
		if err := r.settleDuplicates(ctx, obj); err != nil {
			return ctrl.Result{}, err
		}
	}

	reason, message := lifecycle.ReadyReason(lifecycle.ReadyInput{
		Disabled: obj.GetCredentialSpec().Disabled, Expiry: expiry, Now: now,
		ParentInactive: out.parentInactive, Issued: out.issued,
	})
	if reason == keycapv1alpha1.ReasonExpired && readyReason(status) != keycapv1alpha1.ReasonExpired {
		r.event(obj, EventReasonExpired, message)
	}
	r.markReady(obj, reason, message)
	deadlines := out.deadlines
	if !expiry.IsZero() {
		deadlines = append(deadlines, &expiry)
	}
	return r.requeueAt(obj, lifecycle.NextDeadline(now, deadlines...)), nil
}

// namespaceTerminating ends a reconcile whose Secret cannot be written because the namespace is
// being deleted (its Secrets go first): expected when a tenant goes away, so no error, no retry
// and no Event (none can be created there). What the deleted Secret held stops being valid, as a
// deleted Secret's key always does.
func (r *kindReconciler) namespaceTerminating(obj keycapv1alpha1.Credential, now time.Time, name string) ctrl.Result {
	r.issuer.revoke(obj, now)
	r.setReady(obj, metav1.ConditionFalse, keycapv1alpha1.ReasonNamespaceTerminating,
		fmt.Sprintf("namespace %s is being deleted: Secret %s is not written again", obj.GetNamespace(), name))
	return ctrl.Result{}
}

package controllers

import (
	"context"
	"fmt"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/handler"

	keycapv1alpha1 "github.com/keycap-dev/keycap/api/v1alpha1"
	"github.com/keycap-dev/keycap/internal/apptoken"
	"github.com/keycap-dev/keycap/internal/signing"
)

// AppToken defaults.
const (
	// DefaultAppTokenDuration is a token's lifetime without spec.duration.
	DefaultAppTokenDuration = time.Hour
	// EventReasonRenewed: a new token replaced one that was due for renewal.
	EventReasonRenewed = "Renewed"
	// signingKeyRetry is how long an AppToken waits before trying again to load the signing keys.
	signingKeyRetry = 10 * time.Second
)

// AppTokenReconciler reconciles AppTokens: it issues a JWT signed by the current key of the
// signing key set into the Secret (data key token) and writes a new one renewBefore the current
// one expires, so a consumer that re-reads the mounted Secret always holds a valid token.
//
// status.keyID is stable for the AppToken object (derived from its UID) and is the prefix of every
// token's jti ("<keyID>.<random>"); the data plane refuses tokens whose keyID belongs to no active
// AppToken, so disabling or deleting an AppToken refuses its tokens at once. Tokens replaced by a
// renewal stay valid until their own exp.
type AppTokenReconciler struct {
	credentialReconciler
	// Keys is the signing key set.
	Keys *signing.Manager
	// verifier checks the token already in the Secret before it is kept.
	verifier *apptoken.Verifier
}

// +kubebuilder:rbac:groups="",resources=configmaps,verbs=get;create;update

// Reconcile does the plumbing (get, status patch); reconcile holds the logic.
func (r *AppTokenReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	var at keycapv1alpha1.AppToken
	if live, err := r.getLive(ctx, req, &at); !live {
		return ctrl.Result{}, err
	}
	return r.withStatusPatch(ctx, &at, func() (ctrl.Result, error) { return r.reconcile(ctx, &at) })
}

// appTokenWant is what the token in the Secret must say for the current spec.
type appTokenWant struct {
	keyID, issuer, subject, org string
	audiences, scopes           []string
	lifetime                    time.Duration
	// notAfter is spec.expiresAt: no token outlives the AppToken.
	notAfter *time.Time
}

func wantFor(at *keycapv1alpha1.AppToken, issuer string) appTokenWant {
	w := appTokenWant{
		keyID:     apptoken.KeyIDForUID(string(at.UID)),
		issuer:    issuer,
		subject:   at.Spec.Subject,
		org:       at.Namespace,
		audiences: at.Spec.Audiences,
		scopes:    at.Spec.Scopes,
		lifetime:  DefaultAppTokenDuration,
	}
	if w.subject == "" {
		w.subject = at.Namespace + "/" + at.Name
	}
	if at.Spec.Duration != nil && at.Spec.Duration.Duration > 0 {
		w.lifetime = at.Spec.Duration.Duration
	}
	if at.Spec.ExpiresAt != nil {
		t := at.Spec.ExpiresAt.Time
		w.notAfter = &t
	}
	return w
}

// expiry is the exp of a token issued at iat: iat + lifetime, capped by spec.expiresAt.
func (w appTokenWant) expiry(iat time.Time) time.Time {
	exp := iat.Add(w.lifetime)
	if w.notAfter != nil && w.notAfter.Before(exp) {
		exp = *w.notAfter
	}
	return exp
}

// matches reports whether a verified token says what w wants, so a spec change re-issues.
func (w appTokenWant) matches(v *apptoken.Verified) bool {
	return v.KeyID == w.keyID && v.Subject == w.subject && v.Org == w.org &&
		slices.Equal(v.Audiences, w.audiences) && slices.Equal(v.Scopes, w.scopes) &&
		v.ExpiresAt.Equal(w.expiry(v.IssuedAt))
}

// renewAt is when a token issued at iat and expiring at exp must be replaced: renewBefore (default
// a third of its lifetime) before exp. A token cut short by spec.expiresAt is never renewed: its
// successor could not live longer. nil means no renewal.
func renewAt(iat, exp time.Time, renewBefore *metav1.Duration, w appTokenWant) *time.Time {
	if w.notAfter != nil && !exp.Before(*w.notAfter) {
		return nil
	}
	before := exp.Sub(iat) / 3
	if renewBefore != nil && renewBefore.Duration > 0 {
		before = renewBefore.Duration
	}
	t := exp.Add(-before)
	if t.Before(iat) {
		t = iat
	}
	return &t
}

// tokenDecision says whether the token held in the Secret must be replaced, and why (for the
// Event). held is nil when the Secret holds no token that verifies.
func tokenDecision(now time.Time, held *apptoken.Verified, w appTokenWant, renewBefore *metav1.Duration) (reason, note string, issue bool) {
	switch {
	case held == nil:
		return EventReasonIssued, "issued a token", true
	case !w.matches(held):
		return EventReasonReissued, "the spec changed: issued a new token", true
	}
	if at := renewAt(held.IssuedAt, held.ExpiresAt, renewBefore, w); at != nil && !now.Before(*at) {
		return EventReasonRenewed, "renewed the token before it expires", true
	}
	return "", "", false
}

func (r *AppTokenReconciler) reconcile(ctx context.Context, at *keycapv1alpha1.AppToken) (ctrl.Result, error) {
	now := r.Clock.Now()
	w := wantFor(at, r.Keys.Issuer())
	at.Status.KeyID = w.keyID
	at.Status.ExpiresAt = at.Spec.ExpiresAt.DeepCopy()
	expired := isExpired(now, at.Status.ExpiresAt)

	if kid, _ := r.Keys.Current(); kid == "" {
		if err := r.Keys.Ensure(ctx); err != nil {
			r.markFailed(ctx, at, keycapv1alpha1.ReasonSigningKeyUnavailable,
				"the AppToken signing key set cannot be loaded: "+err.Error())
			return ctrl.Result{RequeueAfter: signingKeyRetry}, nil
		}
	}

	name := secretName(at, &at.Spec.CredentialSpec)
	secret, err := r.getOwnedSecret(ctx, at, name)
	if err != nil {
		return ctrl.Result{}, err
	}
	held := r.heldToken(secret)
	token := string(secretToken(secret))

	switch {
	case at.Spec.Disabled:
		// The token is kept and not renewed; the data plane refuses it by keyID.
		r.markReady(at, keycapv1alpha1.ReasonDisabled, "spec.disabled is true; tokens of this AppToken are refused and not renewed")
		return ctrl.Result{}, nil
	case expired:
		msg := "the AppToken expired at " + at.Status.ExpiresAt.UTC().Format(time.RFC3339)
		if readyReason(&at.Status.CredentialStatus) != keycapv1alpha1.ReasonExpired {
			r.event(at, EventReasonExpired, msg)
		}
		r.markReady(at, keycapv1alpha1.ReasonExpired, msg)
		return ctrl.Result{}, nil
	}

	reason, note, issue := tokenDecision(now, held, w, at.Spec.RenewBefore)
	if reason == EventReasonIssued && at.Status.IssuedAt != nil {
		reason, note = EventReasonReissued, "Secret "+name+" held no valid token: issued a new one"
	}
	if issue {
		issued, err := apptoken.Issue(r.Keys, apptoken.Input{
			Issuer: w.issuer, KeyID: w.keyID, Subject: w.subject, Audiences: w.audiences,
			Org: w.org, Scopes: w.scopes, IssuedAt: now, Lifetime: w.expiry(now.Truncate(time.Second)).Sub(now.Truncate(time.Second)),
		})
		if err != nil {
			return ctrl.Result{}, fmt.Errorf("issuing a token: %w", err)
		}
		if _, err := r.writeOwnedSecret(ctx, at, name, secret, secretContent{
			template:    at.Spec.SecretTemplate,
			annotations: map[string]string{keycapv1alpha1.AnnotationKeyID: w.keyID},
			data:        map[string][]byte{keycapv1alpha1.AppTokenSecretKey: []byte(issued.Token)},
		}); err != nil {
			return ctrl.Result{}, err
		}
		held = &apptoken.Verified{ID: issued.Claims.ID, KeyID: w.keyID, IssuedAt: issued.Claims.IssuedAt.Time,
			ExpiresAt: issued.Claims.ExpiresAt.Time, SigningKeyID: issued.SigningKeyID}
		token = issued.Token
		r.event(at, reason, fmt.Sprintf("%s %s signed by key %s, expiring at %s", note, issued.Claims.ID,
			issued.SigningKeyID, held.ExpiresAt.UTC().Format(time.RFC3339)))
	}

	issuedAt, tokenExpiresAt := metav1.NewTime(held.IssuedAt), metav1.NewTime(held.ExpiresAt)
	at.Status.IssuedAt, at.Status.TokenExpiresAt = &issuedAt, &tokenExpiresAt
	at.Status.LastRotatedAt = issuedAt.DeepCopy()
	at.Status.SigningKeyID = held.SigningKeyID
	at.Status.SecretName = name
	at.Status.Hint = tokenHint(token)
	renew := renewAt(held.IssuedAt, held.ExpiresAt, at.Spec.RenewBefore, w)
	if renew != nil {
		t := metav1.NewTime(*renew)
		at.Status.RenewAt = &t
	} else {
		at.Status.RenewAt = nil
	}
	r.markReady(at, keycapv1alpha1.ReasonIssued, "a token is issued into Secret "+name)

	deadlines := []*time.Time{renew, &held.ExpiresAt}
	if at.Status.ExpiresAt != nil {
		deadlines = append(deadlines, &at.Status.ExpiresAt.Time)
	}
	return r.requeueAt(at, nextDeadline(now, deadlines...)), nil
}

// heldToken returns the claims of the token in the Secret if it verifies with the published keys
// and keycap's issuer; nil when there is none or it does not verify (re-issue).
func (r *AppTokenReconciler) heldToken(secret *corev1.Secret) *apptoken.Verified {
	token := secretToken(secret)
	if len(token) == 0 {
		return nil
	}
	v, err := r.verifier.Verify(string(token), "")
	if err != nil {
		return nil
	}
	return v
}

func secretToken(secret *corev1.Secret) []byte {
	if secret == nil {
		return nil
	}
	return secret.Data[keycapv1alpha1.AppTokenSecretKey]
}

// tokenHint shows what a human may see of a JWT: its start and its last 4 characters.
func tokenHint(token string) string {
	if len(token) < 16 {
		return ""
	}
	return token[:3] + "..." + token[len(token)-4:]
}

// setupSigningKinds registers the signing key set (a leader-elected Runnable in
// opts.OperatorNamespace) and the AppToken and License reconcilers, which share it.
func setupSigningKinds(mgr ctrl.Manager, opts Options) (*signing.Manager, error) {
	keySet := signing.NewManager(mgr.GetClient(), mgr.GetAPIReader(), signing.Options{
		Namespace: opts.OperatorNamespace,
		Issuer:    opts.Issuer,
		Clock:     opts.Clock,
	})
	if err := mgr.Add(keySet); err != nil {
		return nil, fmt.Errorf("adding the signing key set: %w", err)
	}
	ctx := context.Background()
	indexer := mgr.GetFieldIndexer()
	if err := indexer.IndexField(ctx, &keycapv1alpha1.AppToken{}, indexSecretName, func(o client.Object) []string {
		a := o.(*keycapv1alpha1.AppToken)
		return []string{secretName(a, &a.Spec.CredentialSpec)}
	}); err != nil {
		return nil, fmt.Errorf("indexing AppTokens by Secret: %w", err)
	}
	if err := indexer.IndexField(ctx, &keycapv1alpha1.License{}, indexSecretName, func(o client.Object) []string {
		l := o.(*keycapv1alpha1.License)
		return []string{secretName(l, &l.Spec.CredentialSpec)}
	}); err != nil {
		return nil, fmt.Errorf("indexing Licenses by Secret: %w", err)
	}

	appTokens := &AppTokenReconciler{
		credentialReconciler: newCredentialReconciler(mgr, opts, KindAppToken),
		Keys:                 keySet,
		verifier:             apptoken.NewVerifier(keySet, apptoken.VerifierOptions{Issuer: keySet.Issuer(), Clock: opts.Clock, Leeway: time.Second, CacheSize: 10_000}),
	}
	if err := ctrl.NewControllerManagedBy(mgr).
		Named("apptoken").
		For(&keycapv1alpha1.AppToken{}, builder.WithPredicates(ignoreLastUsedAt)).
		Owns(&corev1.Secret{}).
		Watches(&corev1.Secret{}, handler.EnqueueRequestsFromMapFunc(
			appTokens.credentialsUsingSecret(func() client.ObjectList { return &keycapv1alpha1.AppTokenList{} }))).
		WithOptions(controllerOptions(opts, &appTokens.credentialReconciler)).
		Complete(appTokens); err != nil {
		return nil, fmt.Errorf("setting up the AppToken controller: %w", err)
	}

	licenses := &LicenseReconciler{credentialReconciler: newCredentialReconciler(mgr, opts, KindLicense), Keys: keySet}
	if err := ctrl.NewControllerManagedBy(mgr).
		Named("license").
		For(&keycapv1alpha1.License{}, builder.WithPredicates(ignoreLastUsedAt)).
		Owns(&corev1.Secret{}).
		Watches(&corev1.Secret{}, handler.EnqueueRequestsFromMapFunc(
			licenses.credentialsUsingSecret(func() client.ObjectList { return &keycapv1alpha1.LicenseList{} }))).
		WithOptions(controllerOptions(opts, &licenses.credentialReconciler)).
		Complete(licenses); err != nil {
		return nil, fmt.Errorf("setting up the License controller: %w", err)
	}
	return keySet, nil
}

package controllers

import (
	"context"
	"fmt"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	keycapv1alpha1 "github.com/keycap-dev/keycap/api/v1alpha1"
	"github.com/keycap-dev/keycap/internal/apptoken"
	"github.com/keycap-dev/keycap/internal/lifecycle"
	"github.com/keycap-dev/keycap/internal/signing"
)

const (
	// EventReasonRenewed is the Event reason of a new token that replaced one due for renewal.
	EventReasonRenewed = "Renewed"
	// signingKeyRetry is how long a kind signed by keycap waits before trying again to load the
	// signing keys.
	signingKeyRetry = 10 * time.Second
)

// appTokenIssuer issues AppTokens: a JWT signed by the current key of the signing key set into
// the Secret (data key token), and a new one renewBefore the current one expires, so a consumer
// that re-reads the mounted Secret always holds a valid token.
//
// status.keyID is stable for the AppToken object (derived from its UID) and is the prefix of every
// token's jti ("<keyID>.<random>"); the data plane refuses tokens whose keyID belongs to no active
// AppToken, so disabling or deleting an AppToken refuses its tokens at once. Tokens replaced by a
// renewal stay valid until their own exp. Deleting the Secret, or a Secret found holding a token
// keycap did not issue (not the one status.issuedAt records), revokes every token issued so far
// through status.tokensNotBefore, as deleting an ApiKey's Secret revokes its key.
type appTokenIssuer struct {
	r *credentialReconciler
	// keys is the signing key set.
	keys *signing.Manager
	// verifier checks the token already in the Secret before it is kept.
	verifier *apptoken.Verifier
}

// +kubebuilder:rbac:groups="",resources=configmaps,verbs=get;create;update

func newAppTokenIssuer(r *credentialReconciler, deps issuerDeps) issuer {
	return &appTokenIssuer{r: r, keys: deps.keys, verifier: apptoken.NewVerifier(deps.keys, apptoken.VerifierOptions{
		Issuer: deps.keys.Issuer(), Clock: deps.clock, Leeway: time.Second, CacheSize: 10_000})}
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
		lifetime:  lifecycle.TokenLifetime(&at.Spec),
	}
	if w.subject == "" {
		w.subject = at.Namespace + "/" + at.Name
	}
	if at.Spec.ExpiresAt != nil {
		t := at.Spec.ExpiresAt.Time
		w.notAfter = &t
	}
	return w
}

// expiry is the exp of a token issued at iat.
func (w appTokenWant) expiry(iat time.Time) time.Time {
	return lifecycle.TokenExpiry(iat, w.lifetime, w.notAfter)
}

// renewAt is when a token issued at iat and expiring at exp must be replaced.
func (w appTokenWant) renewAt(iat, exp time.Time, renewBefore *metav1.Duration) *time.Time {
	var before time.Duration
	if renewBefore != nil {
		before = renewBefore.Duration
	}
	return lifecycle.RenewAt(iat, exp, before, w.notAfter)
}

// matches reports whether a verified token says what w wants, so a spec change re-issues.
func (w appTokenWant) matches(v *apptoken.Verified) bool {
	return v.KeyID == w.keyID && v.Subject == w.subject && v.Org == w.org &&
		slices.Equal(v.Audiences, w.audiences) && slices.Equal(v.Scopes, w.scopes) &&
		v.ExpiresAt.Equal(w.expiry(v.IssuedAt))
}

func (i *appTokenIssuer) usesSecret(keycapv1alpha1.Credential) bool { return true }

// preflight loads the signing key set; until it can, the AppToken waits SigningKeyUnavailable.
func (i *appTokenIssuer) preflight(ctx context.Context) error {
	if kid, _ := i.keys.Current(); kid != "" {
		return nil
	}
	if err := i.keys.Ensure(ctx); err != nil {
		return &credentialError{reason: keycapv1alpha1.ReasonSigningKeyUnavailable, retryAfter: signingKeyRetry,
			message: "the AppToken signing key set cannot be loaded: " + err.Error()}
	}
	return nil
}

// vouches: the Secret holds a token keycap signed for this AppToken, the one status.issuedAt
// records, and not revoked by tokensNotBefore.
func (i *appTokenIssuer) vouches(obj keycapv1alpha1.Credential, secret *corev1.Secret) bool {
	v, _ := i.verify(secret)
	return v != nil && i.vouched(obj.(*keycapv1alpha1.AppToken), v)
}

func (i *appTokenIssuer) vouched(at *keycapv1alpha1.AppToken, v *apptoken.Verified) bool {
	s := &at.Status
	return v.KeyID == apptoken.KeyIDForUID(string(at.UID)) && s.IssuedAt != nil && v.IssuedAt.Equal(s.IssuedAt.Time) &&
		(s.TokensNotBefore == nil || !v.IssuedAt.Before(s.TokensNotBefore.Time))
}

// renewalInterrupted reports whether v, a token keycap signed for at, is older than the one
// status.issuedAt records and not revoked: the token a renewal whose Secret write never happened
// was to replace.
func renewalInterrupted(at *keycapv1alpha1.AppToken, v *apptoken.Verified) bool {
	s := &at.Status
	return v.KeyID == apptoken.KeyIDForUID(string(at.UID)) && s.IssuedAt != nil && v.IssuedAt.Before(s.IssuedAt.Time) &&
		(s.TokensNotBefore == nil || !v.IssuedAt.Before(s.TokensNotBefore.Time))
}

// revoke refuses every token issued so far.
func (i *appTokenIssuer) revoke(obj keycapv1alpha1.Credential, now time.Time) {
	s := &obj.(*keycapv1alpha1.AppToken).Status
	t := metav1.NewTime(tokensNotBefore(now, s))
	s.TokensNotBefore = &t
}

// tokensNotBefore is the tokensNotBefore that refuses every token issued up to now: now in whole
// seconds (a token's iat has no finer grain), but past the current token's iat when that was
// issued within the same second, and never earlier than before. The next token is issued at it,
// so it is not refused.
func tokensNotBefore(now time.Time, s *keycapv1alpha1.AppTokenStatus) time.Time {
	t := now.UTC().Truncate(time.Second)
	if s.IssuedAt != nil && !s.IssuedAt.Time.Before(t) {
		t = s.IssuedAt.Time.UTC().Truncate(time.Second).Add(time.Second)
	}
	if s.TokensNotBefore != nil && s.TokensNotBefore.After(t) {
		t = s.TokensNotBefore.UTC()
	}
	return t
}

// verify returns the claims of the token in the Secret if it verifies with the published keys and
// keycap's issuer, else the reason it does not.
func (i *appTokenIssuer) verify(secret *corev1.Secret) (*apptoken.Verified, apptoken.Reason) {
	token := secretToken(secret)
	if len(token) == 0 {
		return nil, apptoken.ReasonMalformed
	}
	v, err := i.verifier.Verify(string(token), "")
	if err != nil {
		return nil, apptoken.ReasonOf(err)
	}
	return v, ""
}

func (i *appTokenIssuer) issue(_ context.Context, in issueInput) (issueResult, error) {
	at := in.obj.(*keycapv1alpha1.AppToken)
	w := wantFor(at, i.keys.Issuer())
	at.Status.KeyID = w.keyID
	if at.Spec.Disabled || in.expired {
		// The token is kept and not renewed; the data plane refuses it by keyID.
		return issueResult{}, nil
	}

	var held *apptoken.Verified
	var heldReason apptoken.Reason
	interrupted := false
	if in.secret != nil {
		held, heldReason = i.verify(in.secret)
		if held != nil && !i.vouched(at, held) {
			interrupted = renewalInterrupted(at, held)
			held, heldReason = nil, apptoken.ReasonMalformed
		}
	}
	iat := in.now
	var reason, note string
	switch {
	case interrupted:
		// The renewal's status was written (status first: see kindReconciler.reconcile) and the
		// operator stopped before its token reached the Secret, which still holds the token
		// before it: keycap's, not revoked, so nothing is revoked; the renewal is done again.
		reason, note = EventReasonRenewed, fmt.Sprintf("the renewal was interrupted before its token reached Secret %s: issued a new token", in.name)
	case held == nil && in.secret != nil && heldReason == apptoken.ReasonExpired:
		// Signed by keycap and past its exp (a disabled AppToken enabled again): nothing to revoke.
		reason, note = EventReasonReissued, fmt.Sprintf("the token in Secret %s had expired: issued a new token", in.name)
	case held == nil:
		cause := causeOf(in, at.Status.IssuedAt != nil)
		if cause != causeFirst {
			i.revoke(at, in.now)
			iat = at.Status.TokensNotBefore.Time
		}
		e := issueEvent(cause, "token", "", in.name)
		reason, note = e.reason, e.note
		if cause != causeFirst {
			note += fmt.Sprintf("; every token issued before %s is refused (status.tokensNotBefore)", iat.UTC().Format(time.RFC3339))
		}
	case !w.matches(held):
		reason, note = EventReasonReissued, "the spec changed: issued a new token"
	default:
		if at := w.renewAt(held.IssuedAt, held.ExpiresAt, at.Spec.RenewBefore); at != nil && !in.now.Before(*at) {
			reason, note = EventReasonRenewed, "renewed the token before it expires"
		}
	}

	var out issueResult
	token := string(secretToken(in.secret))
	if reason != "" {
		iat = iat.Truncate(time.Second)
		issued, err := apptoken.Issue(i.keys, apptoken.Input{
			Issuer: w.issuer, KeyID: w.keyID, Subject: w.subject, Audiences: w.audiences,
			Org: w.org, Scopes: w.scopes, IssuedAt: iat, Lifetime: w.expiry(iat).Sub(iat),
		})
		if err != nil {
			return issueResult{}, fmt.Errorf("issuing a token: %w", err)
		}
		out.content = &secretContent{
			template:    at.Spec.SecretTemplate,
			annotations: map[string]string{keycapv1alpha1.AnnotationKeyID: w.keyID},
			data:        map[string][]byte{keycapv1alpha1.AppTokenSecretKey: []byte(issued.Token)},
		}
		held = &apptoken.Verified{ID: issued.Claims.ID, KeyID: w.keyID, IssuedAt: issued.Claims.IssuedAt.Time,
			ExpiresAt: issued.Claims.ExpiresAt.Time, SigningKeyID: issued.SigningKeyID}
		token = issued.Token
		out.events = []event{{reason, fmt.Sprintf("%s (%s, signed by key %s, expiring at %s)", note, issued.Claims.ID,
			issued.SigningKeyID, held.ExpiresAt.UTC().Format(time.RFC3339))}}
	}

	issuedAt, tokenExpiresAt := metav1.NewTime(held.IssuedAt), metav1.NewTime(held.ExpiresAt)
	at.Status.IssuedAt, at.Status.TokenExpiresAt = &issuedAt, &tokenExpiresAt
	at.Status.LastRotatedAt = issuedAt.DeepCopy()
	at.Status.SigningKeyID = held.SigningKeyID
	at.Status.SecretName = in.name
	at.Status.Hint = tokenHint(token)
	renew := w.renewAt(held.IssuedAt, held.ExpiresAt, at.Spec.RenewBefore)
	at.Status.RenewAt = nil
	if renew != nil {
		t := metav1.NewTime(*renew)
		at.Status.RenewAt = &t
	}
	out.deadlines = []*time.Time{renew, &held.ExpiresAt}
	out.issued = "a token is issued into Secret " + in.name
	return out, nil
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

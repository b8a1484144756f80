package authz

import (
	"crypto/sha256"
	"errors"
	"slices"
	"sync/atomic"
	"time"

	"k8s.io/utils/clock"

	keycapv1alpha1 "github.com/keycap-dev/keycap/api/v1alpha1"
	"github.com/keycap-dev/keycap/internal/apptoken"
	"github.com/keycap-dev/keycap/internal/authz/wire"
	"github.com/keycap-dev/keycap/internal/index"
	"github.com/keycap-dev/keycap/internal/keys"
	"github.com/keycap-dev/keycap/internal/lifecycle"
	"github.com/keycap-dev/keycap/internal/registry"
)

var (
	_ verifier = opaqueKeys{}
	_ verifier = appTokens{}
	_ verifier = licenses{}
	_ verifier = sessionVerifier{}
	_ verifier = claimsVerifier{}
)

// Reason is the stable, machine-readable code of a decision (wire.Reason).
type Reason = wire.Reason

// Requirements are what a route asks of a credential (wire.Requirements).
type Requirements = wire.Requirements

// Decision is the outcome of a check.
type Decision struct {
	Reason Reason
	// Credential is the matched credential (allowed, or denied for scope or namespace).
	Credential *index.Credential
	// Identity is what an allowed answer tells the upstream.
	Identity wire.Identity
	// slot is where the lastUsedAt throttle lives.
	slot *index.Slot

	// What a verifier found, for the rules the authorizer applies to every form: the form's own
	// refusal once the credential is known to be enabled and unexpired (a previous key past its
	// grace, a licence instance without a seat, a revoked token), and what the credential holds
	// for the route.
	admit        Reason
	scopes       []string
	entitlements []string
}

// Allowed reports whether the request may pass.
func (d *Decision) Allowed() bool { return d.Reason == wire.ReasonOK }

// verifier judges one form of presented credential. The data plane has one per form: opaque keys
// (ApiKey, AgentKey: by digest), AppToken JWTs (signature, then by key ID) and licences (licence
// headers: by digest, then the seat). Each finds the credential and says what is particular to its
// form; the authorizer applies what every credential shares (disabled, expired, its parent, the
// route) once. Arguments and result are values, so that a request's form and route stay on the
// caller's stack.
type verifier interface {
	// verify finds the credential p presents. Reason OK means found: the decision carries the
	// credential, its slot, the identity fields particular to the form, the form's own refusal
	// (admit) and the scopes and entitlements it holds. Otherwise Reason says why not.
	verify(a *authorizer, p wire.Presented, audience Audience, now time.Time) Decision
}

// Audience is a route's audience requirement (wire.Audience).
type Audience = wire.Audience

// authorizer makes request-time decisions from the index.
type authorizer struct {
	index    *index.Index
	clock    clock.PassiveClock
	ready    func() bool
	verifier *apptoken.Verifier
	// sessions opens session cookies; nil when the data plane serves no sessions.
	sessions *sessions
}

// verifiers, one per form of presented credential.
var (
	keysVerifier     verifier = opaqueKeys{}
	tokensVerifier   verifier = appTokens{}
	licensesVerifier verifier = licenses{}
	sessionsVerifier verifier = sessionVerifier{}
)

// verifierFor returns the verifier of a presented credential's form.
func verifierFor(p *wire.Presented) verifier {
	switch {
	case p.Session:
		return sessionsVerifier
	case p.License:
		return licensesVerifier
	case wire.LooksLikeJWT(p.Key):
		return tokensVerifier
	}
	return keysVerifier
}

// decide judges a presented credential against a route's requirements, at the clock's now: so a
// key is refused the instant it expires. The order of the refusals is the same for every form:
// not ready, the verifier's (malformed, bad signature, not found, ...), disabled, expired, the
// form's own (grace, seat, revocation), an inactive parent, then the route's namespaces, scopes
// and entitlements.
func (a *authorizer) decide(p *wire.Presented, req *Requirements, aud Audience) Decision {
	return a.decideWith(verifierFor(p), p, req, aud)
}

// decideWith is decide with the given verifier (the SSO endpoints judge a login link's claims).
func (a *authorizer) decideWith(v verifier, p *wire.Presented, req *Requirements, aud Audience) Decision {
	if !a.ready() {
		return Decision{Reason: wire.ReasonNotReady}
	}
	now := a.clock.Now()
	d := v.verify(a, *p, aud, now)
	if d.Reason != wire.ReasonOK {
		return Decision{Reason: d.Reason}
	}
	c := d.Credential
	switch {
	case c.Disabled:
		return Decision{Reason: wire.ReasonDisabled}
	case lifecycle.Expired(now, c.ExpiresAt.Time()):
		return Decision{Reason: wire.ReasonExpired}
	case d.admit != wire.ReasonOK:
		return Decision{Reason: d.admit}
	}
	scopes, header := d.scopes, d.Identity.Scopes
	if c.Parent != nil {
		parent := c.Parent.Load()
		if !parent.Active(now) {
			return Decision{Reason: wire.ReasonParentInactive}
		}
		scopes, header = narrowToParent(c, parent, scopes, header)
	}
	d.Identity.Kind, d.Identity.Namespace, d.Identity.Name, d.Identity.KeyID = c.Kind, c.Namespace, c.Name, c.KeyID
	d.Identity.Scopes = header
	switch {
	case !req.NamespaceAllowed(c.Namespace):
		d.Reason = wire.ReasonWrongNamespace
	case !req.ScopesHeld(scopes):
		d.Reason = wire.ReasonInsufficientScope
	case !req.EntitlementsHeld(d.entitlements):
		d.Reason = wire.ReasonMissingEntitlement
	}
	return d
}

// opaqueKeys verifies opaque keys (ApiKeys, AgentKeys) by the digest of the presented key.
type opaqueKeys struct{}

func (opaqueKeys) verify(a *authorizer, p wire.Presented, _ Audience, now time.Time) Decision {
	// A key in keycap's format whose checksum is wrong is refused before any lookup. Anything
	// else (a bring-your-own key in another format) is looked up by digest.
	if len(p.Key) > wire.MaxCredentialLength || errors.Is(keys.Check(p.Key), keys.ErrChecksum) {
		return Decision{Reason: wire.ReasonMalformed}
	}
	d := digestOf(p.Key)
	entry, ok := a.index.Lookup(&d)
	if !ok || entry.Conflict {
		return Decision{Reason: wire.ReasonNotFound}
	}
	cred := entry.Credential
	// A licence key is not an API key: it is presented in the licensekey header with an instance.
	if _, isLicense := cred.LicenseData(); cred == nil || isLicense || cred.FoundByKeyID {
		return Decision{Reason: wire.ReasonNotFound}
	}
	out := Decision{Credential: cred, slot: entry.Slot, scopes: cred.Scopes}
	out.Identity.Scopes = cred.ScopesHeader
	// A previous key is valid through its rotation's grace period only.
	if lifecycle.Expired(now, entry.NotAfter.Time()) {
		out.admit = wire.ReasonExpired
	}
	if ad, ok := cred.AgentData(); ok {
		out.Identity.Fields = wire.FieldAgent | wire.FieldParent
		out.Identity.Agent, out.Identity.Parent = ad.Agent, cred.ParentKey.Name
	}
	return out
}

// appTokens verifies AppToken JWTs: the verifier checks the signature (pinned EdDSA, a published
// kid), issuer, exp/nbf/iat with leeway and the route's audience; then the AppToken the token
// names by its key ID must exist now in the namespace its org claims. So a token of a disabled or
// deleted AppToken is refused at once although its signature still verifies. Tokens issued
// before the AppToken's status.tokensNotBefore are revoked.
type appTokens struct{}

// tokenReasons maps the verifier's reasons to the data plane's.
var tokenReasons = map[apptoken.Reason]Reason{
	apptoken.ReasonMalformed:           wire.ReasonMalformed,
	apptoken.ReasonAlgorithmNotAllowed: wire.ReasonAlgorithmNotAllowed,
	apptoken.ReasonInvalidSignature:    wire.ReasonInvalidSignature,
	apptoken.ReasonUnknownKey:          wire.ReasonUnknownKey,
	apptoken.ReasonExpired:             wire.ReasonExpired,
	apptoken.ReasonNotYetValid:         wire.ReasonNotYetValid,
	apptoken.ReasonWrongIssuer:         wire.ReasonWrongIssuer,
	apptoken.ReasonWrongAudience:       wire.ReasonWrongAudience,
}

func (appTokens) verify(a *authorizer, p wire.Presented, audience Audience, _ time.Time) Decision {
	if a.verifier == nil {
		return Decision{Reason: wire.ReasonNotFound}
	}
	v, err := a.verifier.Verify(p.Key, audience.Name)
	if err == nil && audience.Unmeetable {
		return Decision{Reason: wire.ReasonWrongAudience}
	}
	if err != nil {
		r, ok := tokenReasons[apptoken.ReasonOf(err)]
		if !ok {
			r = wire.ReasonMalformed
		}
		return Decision{Reason: r}
	}
	slot := a.index.LookupKeyID(v.KeyID)
	cred := slot.Load()
	if cred == nil || !cred.FoundByKeyID || cred.Namespace != v.Org {
		return Decision{Reason: wire.ReasonNotFound}
	}
	d := Decision{Credential: cred, slot: slot}
	if td, ok := cred.Data.(*index.AppTokenData); ok && v.IssuedAt.Before(td.TokensNotBefore) {
		d.admit = wire.ReasonRevoked
	}
	// Its scopes are the token's that the AppToken still grants.
	held := make([]string, 0, len(v.Scopes))
	for _, s := range v.Scopes {
		if _, ok := slices.BinarySearch(cred.Scopes, s); ok && !slices.Contains(held, s) {
			held = append(held, s)
		}
	}
	slices.Sort(held)
	d.scopes = held
	d.Identity.Scopes = index.JoinScopes(held)
	d.Identity.Fields = wire.FieldSubject
	d.Identity.Subject = v.Subject
	return d
}

// licenses verifies a licence key presented with an instance ID (the licensekey and instanceid
// headers): the licence must exist, and the instance must hold a live activation within the seat
// cap (lifecycle.Seat).
type licenses struct{}

func (licenses) verify(a *authorizer, p wire.Presented, _ Audience, now time.Time) Decision {
	if p.LicenseConflict || !wire.ValidCredential(p.Key) || len(p.Key) > wire.MaxCredentialLength ||
		keys.Check(p.Key) != nil || keys.Prefix(p.Key) != keycapv1alpha1.LicenseKeyPrefix {
		return Decision{Reason: wire.ReasonMalformed}
	}
	digest := digestOf(p.Key)
	entry, ok := a.index.Lookup(&digest)
	if !ok || entry.Conflict {
		return Decision{Reason: wire.ReasonNotFound}
	}
	cred := entry.Credential
	ld, isLicense := cred.LicenseData()
	if !isLicense {
		return Decision{Reason: wire.ReasonNotFound}
	}
	d := Decision{Credential: cred, slot: entry.Slot, scopes: cred.Scopes, entitlements: ld.Entitlements}
	d.Identity.Scopes = cred.ScopesHeader
	d.Identity.Fields = wire.FieldEntitlements
	d.Identity.Entitlements = ld.EntitlementsHeader
	if p.Instance == "" || p.InstanceConflict || !wire.ValidCredential(p.Instance) {
		d.admit = wire.ReasonNotActivated
		return d
	}
	switch active, seated := ld.InstanceSeat(p.Instance, now); {
	case !active:
		d.admit = wire.ReasonNotActivated
	case !seated:
		d.admit = wire.ReasonTooManyInstances
	}
	return d
}

// derived is what the data plane derives from one version of a credential with a parent or a
// session policy: its scopes narrowed to the parent's, computed once per version of the parent,
// and its spec.sessions. It is set once when the credential is projected (project) and lives and
// dies with that version; a credential with neither (most ApiKeys) has none.
type derived struct {
	narrowed atomic.Pointer[narrowed]
	// sessions is spec.sessions: what the session rule needs besides the credential (session.go).
	sessions *sessionPolicy
}

type narrowed struct {
	parent *index.Credential
	scopes []string
	header string
}

// narrowToParent returns a credential's scopes narrowed to its parent's: no scopes of its own
// means the parent's; otherwise only those both hold.
func narrowToParent(c, parent *index.Credential, scopes []string, header string) ([]string, string) {
	if len(scopes) == 0 {
		return parent.Scopes, parent.ScopesHeader
	}
	dv, _ := c.Derived.(*derived)
	if dv != nil {
		if n := dv.narrowed.Load(); n != nil && n.parent == parent {
			return n.scopes, n.header
		}
	}
	both := index.IntersectScopes(scopes, parent.Scopes)
	n := &narrowed{parent: parent, scopes: both, header: index.JoinScopes(both)}
	if dv != nil {
		dv.narrowed.Store(n)
	}
	return n.scopes, n.header
}

// project is the data plane's index.Projection: the kind's registry projection, plus what the
// data plane derives per version of the credential.
func project(obj keycapv1alpha1.Credential) (*index.Credential, []index.KeyDigest) {
	c, digests := registry.Project(obj)
	if sessions := sessionPolicyOf(obj); c.ParentKey != nil || sessions != nil {
		c.Derived = &derived{sessions: sessions}
	}
	return c, digests
}

// digestOf hashes a presented key (at most MaxCredentialLength bytes) through a stack buffer, so
// the conversion to bytes does not allocate.
func digestOf(key string) index.Digest {
	var buf [wire.MaxCredentialLength]byte
	return index.Digest(sha256.Sum256(buf[:copy(buf[:], key)]))
}

// now is the authorizer's clock.
func (a *authorizer) now() time.Time { return a.clock.Now() }

package authz

import (
	"crypto/sha256"
	"errors"
	"slices"
	"strings"
	"time"

	"k8s.io/utils/clock"

	keycapv1alpha1 "github.com/keycap-dev/keycap/api/v1alpha1"
	"github.com/keycap-dev/keycap/internal/apptoken"
	"github.com/keycap-dev/keycap/internal/index"
	"github.com/keycap-dev/keycap/internal/keys"
)

// Requirements are what a route asks of a credential, stated in the proxy's configuration.
// Every element of both lists may itself be a comma-separated list (as context extensions and
// query parameters give them); blanks are ignored.
type Requirements struct {
	// Scopes must all be held by the credential.
	Scopes []string
	// Namespaces, when they name any, are the namespaces (tenants) the credential must belong to.
	Namespaces []string
	// Audience, when set, must be in an AppToken's aud. It constrains AppTokens only: opaque keys
	// and licences have no audience.
	Audience string
	// Entitlements must all be held by the credential; only licences hold entitlements, so a
	// route requiring any refuses every other kind (MISSING_ENTITLEMENT).
	Entitlements []string
}

// nextPart returns the next non-blank part of a comma-separated list and the rest of the list.
func nextPart(s string) (part, rest string, ok bool) {
	for s != "" {
		part, s, _ = strings.Cut(s, ",")
		if part = strings.TrimSpace(part); part != "" {
			return part, s, true
		}
	}
	return "", "", false
}

// namespaceAllowed reports whether ns is allowed by the lists (any namespace when they name none).
func namespaceAllowed(lists []string, ns string) bool {
	restricted := false
	for _, l := range lists {
		for part, rest, ok := nextPart(l); ok; part, rest, ok = nextPart(rest) {
			if part == ns {
				return true
			}
			restricted = true
		}
	}
	return !restricted
}

// scopesHeld reports whether the sorted held scopes contain every scope the lists name.
func scopesHeld(lists []string, held []string) bool {
	for _, l := range lists {
		for part, rest, ok := nextPart(l); ok; part, rest, ok = nextPart(rest) {
			if _, found := slices.BinarySearch(held, part); !found {
				return false
			}
		}
	}
	return true
}

// Decision is the outcome of a check.
type Decision struct {
	Reason Reason
	// Credential is the matched credential (allowed, or denied for scope or namespace).
	Credential *index.Credential
	// Parent is an agent key's parent at decision time.
	Parent *index.Credential
	// Scopes is the credential's effective scopes header value: an agent key's scopes intersected
	// with its parent's.
	Scopes string
	// Subject is an AppToken's sub.
	Subject string
	// slot is where the lastUsedAt throttle lives.
	slot *index.Slot
}

// Allowed reports whether the request may pass.
func (d *Decision) Allowed() bool { return d.Reason == ReasonOK }

// authorizer makes request-time decisions from the index.
type authorizer struct {
	index    *index.Index
	clock    clock.PassiveClock
	ready    func() bool
	verifier *apptoken.Verifier
}

// decide judges a presented credential against a route's requirements. Expiry is judged against
// the clock now, so a key is refused the instant it expires.
func (a *authorizer) decide(key string, req Requirements) Decision {
	if !a.ready() {
		return Decision{Reason: ReasonNotReady}
	}
	// A key in keycap's format whose checksum is wrong is refused before any lookup. Anything
	// else (a bring-your-own key in another format) is looked up by digest.
	if apptoken.LooksLikeJWT(key) {
		return a.decideToken(key, req)
	}
	if len(key) > MaxCredentialLength {
		return Decision{Reason: ReasonMalformed}
	}
	if errors.Is(keys.Check(key), keys.ErrChecksum) {
		return Decision{Reason: ReasonMalformed}
	}
	d := digestOf(key)
	entry, ok := a.index.Lookup(&d)
	if !ok {
		return Decision{Reason: ReasonNotFound}
	}
	if entry.Conflict {
		return Decision{Reason: ReasonNotFound}
	}
	cred := entry.Slot.Load()
	// A licence key is not an API key: it is presented in the licensekey header with an instance.
	if cred == nil || cred.Kind == index.KindLicense {
		return Decision{Reason: ReasonNotFound}
	}
	now := a.clock.Now()
	if cred.Disabled {
		return Decision{Reason: ReasonDisabled}
	}
	if !cred.ExpiresAt.IsZero() && !now.Before(cred.ExpiresAt) ||
		!entry.NotAfter.IsZero() && !now.Before(entry.NotAfter) {
		return Decision{Reason: ReasonExpired}
	}
	out := Decision{Credential: cred, Scopes: cred.ScopesHeader, slot: entry.Slot}
	scopes := cred.Scopes
	if cred.Kind == index.KindAgentKey {
		parent := cred.Parent.Load()
		if !parent.Active(now) {
			return Decision{Reason: ReasonParentInactive}
		}
		out.Parent = parent
		// No scopes on the agent key means the parent's; otherwise only those both hold.
		if len(scopes) == 0 {
			scopes = parent.Scopes
			out.Scopes = parent.ScopesHeader
		} else {
			scopes, out.Scopes = agentScopes(cred, parent)
		}
	}
	return out.judgeRoute(req, scopes, nil)
}

// judgeRoute sets the reason of a decision for a credential that is itself valid: the route's
// namespaces, scopes and entitlements, in that order. Only licences hold entitlements, so for
// other kinds any required entitlement is missing.
func (d Decision) judgeRoute(req Requirements, scopes, entitlements []string) Decision {
	switch {
	case !namespaceAllowed(req.Namespaces, d.Credential.Namespace):
		d.Reason = ReasonWrongNamespace
	case !scopesHeld(req.Scopes, scopes):
		d.Reason = ReasonInsufficientScope
	case !scopesHeld(req.Entitlements, entitlements):
		d.Reason = ReasonMissingEntitlement
	default:
		d.Reason = ReasonOK
	}
	return d
}

// tokenReasons maps the verifier's reasons to the data plane's.
var tokenReasons = map[apptoken.Reason]Reason{
	apptoken.ReasonMalformed:           ReasonMalformed,
	apptoken.ReasonAlgorithmNotAllowed: ReasonAlgorithmNotAllowed,
	apptoken.ReasonInvalidSignature:    ReasonInvalidSignature,
	apptoken.ReasonUnknownKey:          ReasonUnknownKey,
	apptoken.ReasonExpired:             ReasonExpired,
	apptoken.ReasonNotYetValid:         ReasonNotYetValid,
	apptoken.ReasonWrongIssuer:         ReasonWrongIssuer,
	apptoken.ReasonWrongAudience:       ReasonWrongAudience,
}

// decideToken judges a bearer JWT: the verifier checks its signature (pinned EdDSA, a published
// kid), issuer, exp/nbf/iat with leeway and the route's audience; then the AppToken it names by
// its key ID must exist now, be neither disabled nor expired, and be in the namespace the token's
// org claims. So a token of a disabled or deleted AppToken is refused at once although its
// signature still verifies. Its scopes are the token's intersected with the AppToken's current
// spec.scopes.
func (a *authorizer) decideToken(token string, req Requirements) Decision {
	if a.verifier == nil {
		return Decision{Reason: ReasonNotFound}
	}
	v, err := a.verifier.Verify(token, req.Audience)
	if err != nil {
		r, ok := tokenReasons[apptoken.ReasonOf(err)]
		if !ok {
			r = ReasonMalformed
		}
		return Decision{Reason: r}
	}
	slot := a.index.LookupKeyID(v.KeyID)
	cred := slot.Load()
	if cred == nil || cred.Kind != index.KindAppToken || cred.Namespace != v.Org {
		return Decision{Reason: ReasonNotFound}
	}
	if cred.Disabled {
		return Decision{Reason: ReasonDisabled}
	}
	now := a.clock.Now()
	if !cred.ExpiresAt.IsZero() && !now.Before(cred.ExpiresAt) {
		return Decision{Reason: ReasonExpired}
	}
	out := Decision{Credential: cred, Subject: v.Subject, slot: slot}
	scopes := tokenScopes(cred, v)
	out.Scopes = index.JoinScopes(scopes)
	return out.judgeRoute(req, scopes, nil)
}

// tokenScopes returns the token's scopes that its AppToken still grants.
func tokenScopes(cred *index.Credential, v *apptoken.Verified) []string {
	held := make([]string, 0, len(v.Scopes))
	for _, s := range v.Scopes {
		if _, ok := slices.BinarySearch(cred.Scopes, s); ok && !slices.Contains(held, s) {
			held = append(held, s)
		}
	}
	slices.Sort(held)
	return held
}

// decideLicense judges a licence key presented with an instance ID (the licensekey and
// instanceid headers): the licence must exist, be neither disabled nor expired, and the instance
// must hold a live activation (activated and seen within the heartbeat timeout) within the seat
// cap. The route's namespaces, scopes and entitlements apply.
func (a *authorizer) decideLicense(key, instanceID string, req Requirements) Decision {
	if !a.ready() {
		return Decision{Reason: ReasonNotReady}
	}
	if !validCredential(key) || len(key) > MaxCredentialLength || keys.Check(key) != nil ||
		keys.Prefix(key) != keycapv1alpha1.LicenseKeyPrefix {
		return Decision{Reason: ReasonMalformed}
	}
	d := digestOf(key)
	entry, ok := a.index.Lookup(&d)
	if !ok || entry.Conflict {
		return Decision{Reason: ReasonNotFound}
	}
	cred := entry.Slot.Load()
	if cred == nil || cred.Kind != index.KindLicense || cred.License == nil {
		return Decision{Reason: ReasonNotFound}
	}
	if cred.Disabled {
		return Decision{Reason: ReasonDisabled}
	}
	now := a.clock.Now()
	if !cred.ExpiresAt.IsZero() && !now.Before(cred.ExpiresAt) {
		return Decision{Reason: ReasonExpired}
	}
	if instanceID == "" || !validCredential(instanceID) {
		return Decision{Reason: ReasonNotActivated}
	}
	active, seated := cred.License.InstanceSeat(instanceID, now)
	switch {
	case !active:
		return Decision{Reason: ReasonNotActivated}
	case !seated:
		return Decision{Reason: ReasonTooManyInstances}
	}
	out := Decision{Credential: cred, Scopes: cred.ScopesHeader, slot: entry.Slot}
	return out.judgeRoute(req, cred.Scopes, cred.License.Entitlements)
}

// agentScopes returns an agent key's effective scopes (its own intersected with its parent's)
// and their header value, computed once per version of the agent key and of its parent.
func agentScopes(agent, parent *index.Credential) ([]string, string) {
	type effective struct {
		parent *index.Credential
		scopes []string
		header string
	}
	if e, ok := agent.Answer().(*effective); ok && e.parent == parent {
		return e.scopes, e.header
	}
	scopes := index.IntersectScopes(agent.Scopes, parent.Scopes)
	e := &effective{parent: parent, scopes: scopes, header: index.JoinScopes(scopes)}
	agent.SetAnswer(e)
	return e.scopes, e.header
}

// digestOf hashes a presented key (at most MaxCredentialLength bytes) through a stack buffer, so
// the conversion to bytes does not allocate.
func digestOf(key string) index.Digest {
	var buf [MaxCredentialLength]byte
	return index.Digest(sha256.Sum256(buf[:copy(buf[:], key)]))
}

// now is the authorizer's clock.
func (a *authorizer) now() time.Time { return a.clock.Now() }

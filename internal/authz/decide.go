package authz

import (
	"crypto/sha256"
	"errors"
	"slices"
	"strings"
	"time"

	"k8s.io/utils/clock"

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
	// slot is where the lastUsedAt throttle lives.
	slot *index.Slot
}

// Allowed reports whether the request may pass.
func (d *Decision) Allowed() bool { return d.Reason == ReasonOK }

// authorizer makes request-time decisions from the index.
type authorizer struct {
	index *index.Index
	clock clock.PassiveClock
	ready func() bool
}

// decide judges a presented credential against a route's requirements. Expiry is judged against
// the clock now, so a key is refused the instant it expires.
func (a *authorizer) decide(key string, req Requirements) Decision {
	if !a.ready() {
		return Decision{Reason: ReasonNotReady}
	}
	// A key in keycap's format whose checksum is wrong is refused before any lookup. Anything
	// else (a bring-your-own key in another format) is looked up by digest.
	if errors.Is(keys.Check(key), keys.ErrChecksum) {
		return Decision{Reason: ReasonMalformed}
	}
	d := index.Digest(sha256.Sum256([]byte(key)))
	entry, ok := a.index.Lookup(&d)
	if !ok {
		return Decision{Reason: ReasonNotFound}
	}
	if entry.Conflict {
		return Decision{Reason: ReasonNotFound}
	}
	cred := entry.Slot.Load()
	if cred == nil {
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
	if !namespaceAllowed(req.Namespaces, cred.Namespace) {
		out.Reason = ReasonWrongNamespace
		return out
	}
	if !scopesHeld(req.Scopes, scopes) {
		out.Reason = ReasonInsufficientScope
		return out
	}
	out.Reason = ReasonOK
	return out
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

// now is the authorizer's clock.
func (a *authorizer) now() time.Time { return a.clock.Now() }

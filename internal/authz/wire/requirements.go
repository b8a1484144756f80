package wire

import (
	"net/url"
	"slices"
	"strings"
)

// Query parameters of the forward-auth URL that state a route's requirements, e.g.
// /check?scopes=videos:read,videos:write&namespace=acme. They live in the proxy's configuration
// (nginx auth_request's proxy_pass, Traefik forwardAuth's address), where clients cannot change
// them. Each takes a comma-separated list.
const (
	QueryScopes    = "scopes"
	QueryNamespace = "namespace"
	// QueryAudience is the audience an AppToken must be for.
	QueryAudience = "audience"
	// QueryEntitlements are the entitlements a licence must hold.
	QueryEntitlements = "entitlements"
)

// Requirements are what a route asks of a credential, stated in the proxy's configuration.
// Every element of the lists may itself be a comma-separated list (as context extensions and
// query parameters give them); blanks are ignored.
type Requirements struct {
	// Scopes must all be held by the credential.
	Scopes []string
	// Namespaces, when they name any, are the namespaces (tenants) the credential must belong to.
	Namespaces []string
	// Entitlements must all be held by the credential; only licences hold entitlements, so a
	// route requiring any refuses every other kind (MISSING_ENTITLEMENT).
	Entitlements []string

	// unmeetable marks the requirements no credential can meet (a value that could not be read).
	unmeetable Unmeetable
}

// Unmeetable is a set of requirements no credential meets.
type Unmeetable uint8

// Requirements a query may make unmeetable.
const (
	UnmeetableScopes Unmeetable = 1 << iota
	UnmeetableNamespaces
	UnmeetableEntitlements
)

// Unmeetable returns the requirements no credential meets.
func (r *Requirements) Unmeetable() Unmeetable { return r.unmeetable }

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

// NamespaceAllowed reports whether ns is allowed (any namespace when the lists name none).
func (r *Requirements) NamespaceAllowed(ns string) bool {
	if r.unmeetable&UnmeetableNamespaces != 0 {
		return false
	}
	restricted := false
	for _, l := range r.Namespaces {
		for part, rest, ok := nextPart(l); ok; part, rest, ok = nextPart(rest) {
			if part == ns {
				return true
			}
			restricted = true
		}
	}
	return !restricted
}

// ScopesHeld reports whether the sorted held scopes contain every required scope.
func (r *Requirements) ScopesHeld(held []string) bool {
	return r.unmeetable&UnmeetableScopes == 0 && allHeld(r.Scopes, held)
}

// EntitlementsHeld reports whether the sorted held entitlements contain every required one.
func (r *Requirements) EntitlementsHeld(held []string) bool {
	return r.unmeetable&UnmeetableEntitlements == 0 && allHeld(r.Entitlements, held)
}

// Audience is a route's audience requirement: an AppToken must be for it. It constrains
// AppTokens only (opaque keys and licences have no audience). It is kept apart from
// Requirements so that reading it does not move a request's requirement lists to the heap.
type Audience struct {
	// Name is the audience the token must be for (empty: any).
	Name string
	// Unmeetable is set when the route's audience could not be read: no token is for it.
	Unmeetable bool
}

// allHeld reports whether the sorted held list contains every element the lists name.
func allHeld(lists []string, held []string) bool {
	for _, l := range lists {
		for part, rest, ok := nextPart(l); ok; part, rest, ok = nextPart(rest) {
			if _, found := slices.BinarySearch(held, part); !found {
				return false
			}
		}
	}
	return true
}

// ParseQuery reads the scopes, namespace, audience and entitlements parameters of a forward-auth
// query into the given slices (the caller's stack arrays, so the common case allocates nothing).
// A parameter that cannot be unescaped makes its requirement unmeetable; so does a repeated
// audience with different values.
func ParseQuery(rawQuery string, scopes, namespaces, entitlements []string) (Requirements, Audience) {
	var req Requirements
	var aud Audience
	for rawQuery != "" {
		var pair string
		pair, rawQuery, _ = strings.Cut(rawQuery, "&")
		k, v, _ := strings.Cut(pair, "=")
		if k != QueryScopes && k != QueryNamespace && k != QueryAudience && k != QueryEntitlements {
			continue
		}
		u, err := url.QueryUnescape(v)
		v = u
		switch k {
		case QueryScopes:
			if err != nil {
				req.unmeetable |= UnmeetableScopes
			}
			scopes = append(scopes, v)
		case QueryNamespace:
			if err != nil {
				req.unmeetable |= UnmeetableNamespaces
			}
			namespaces = append(namespaces, v)
		case QueryEntitlements:
			if err != nil {
				req.unmeetable |= UnmeetableEntitlements
			}
			entitlements = append(entitlements, v)
		default:
			if err != nil || aud.Name != "" && aud.Name != v {
				aud.Unmeetable = true
			}
			aud.Name = v
		}
	}
	req.Scopes, req.Namespaces, req.Entitlements = scopes, namespaces, entitlements
	return req, aud
}

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
	// refusal is set when the requirements could not be read at all (ReasonUnknownParameter):
	// nothing meets them.
	refusal Reason
}

// Refusal is why the requirements could not be read (ReasonOK when they could): the request
// is refused with it whatever its credential.
func (r *Requirements) Refusal() Reason { return r.refusal }

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

// NamespaceAllowed reports whether ns is allowed: ns must be in every list that names a
// namespace (any namespace when none does). Each list is one statement of the namespaces a route
// allows (a context extension, a query parameter); a repeated one narrows, so a client
// appending `&namespace=other` to a proxy's query can never widen it.
func (r *Requirements) NamespaceAllowed(ns string) bool {
	if r.unmeetable&UnmeetableNamespaces != 0 || r.refusal != ReasonOK {
		return false
	}
	for _, l := range r.Namespaces {
		named, found := false, false
		for part, rest, ok := nextPart(l); ok && !found; part, rest, ok = nextPart(rest) {
			named, found = true, part == ns
		}
		if named && !found {
			return false
		}
	}
	return true
}

// ScopesHeld reports whether the sorted held scopes contain every required scope.
func (r *Requirements) ScopesHeld(held []string) bool {
	return r.unmeetable&UnmeetableScopes == 0 && r.refusal == ReasonOK && allHeld(r.Scopes, held)
}

// EntitlementsHeld reports whether the sorted held entitlements contain every required one.
func (r *Requirements) EntitlementsHeld(held []string) bool {
	return r.unmeetable&UnmeetableEntitlements == 0 && r.refusal == ReasonOK && allHeld(r.Entitlements, held)
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
//
// The query is the proxy's configuration, and nothing in it may be read as requiring less than
// it says:
//   - any other parameter name (matched exactly: `scope`, `Scopes` and `scop%65s` are unknown)
//     and any `;` (a separator some parsers accept) refuse the request (Refusal:
//     ReasonUnknownParameter); empty pairs (`&&`, a trailing `&`) are ignored;
//   - repeated parameters narrow: scopes and entitlements add up (all must be held), repeated
//     namespace lists are intersected (NamespaceAllowed), and two different audiences match
//     nothing;
//   - a parameter that cannot be unescaped makes its requirement unmeetable.
func ParseQuery(rawQuery string, scopes, namespaces, entitlements []string) (Requirements, Audience) {
	var req Requirements
	var aud Audience
	if strings.IndexByte(rawQuery, ';') >= 0 {
		req.refusal = ReasonUnknownParameter
	}
	for rawQuery != "" {
		var pair string
		pair, rawQuery, _ = strings.Cut(rawQuery, "&")
		if pair == "" {
			continue
		}
		k, v, _ := strings.Cut(pair, "=")
		if k != QueryScopes && k != QueryNamespace && k != QueryAudience && k != QueryEntitlements {
			req.refusal = ReasonUnknownParameter
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

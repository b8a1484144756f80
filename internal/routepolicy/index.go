// Package routepolicy matches requests to RoutePolicy rules: which policy holds a request's host
// (an O(1) lookup in the number of policies), which of its rules applies to the request's path
// and method (longest matching prefix), what the upstream will take the path to be, and where a
// proxy states the original request's host, path and method. It is pure: the data plane feeds it
// the RoutePolicies its informer sees and the controller uses it to report host conflicts, so both
// resolve conflicts by the same rule.
package routepolicy

import (
	"sort"
	"strings"

	"k8s.io/apimachinery/pkg/types"

	keycapv1alpha1 "github.com/keycap-dev/keycap/api/v1alpha1"
)

// Requirements are what a rule adds to the proxy's requirements. A request must satisfy both.
type Requirements struct {
	// Scopes must all be held by the credential.
	Scopes []string
	// Namespaces, when not empty, must contain the credential's namespace.
	Namespaces []string
	// Audiences must all be in an AppToken's aud.
	Audiences []string
	// Entitlements must all be held by the request's licence.
	Entitlements []string
}

// Empty reports whether the requirements ask for nothing.
func (r *Requirements) Empty() bool {
	return len(r.Scopes) == 0 && len(r.Namespaces) == 0 && len(r.Audiences) == 0 && len(r.Entitlements) == 0
}

// Rule is one compiled rule of a policy.
type Rule struct {
	Requirements
	// Policy is the namespace/name of the policy the rule belongs to.
	Policy types.NamespacedName
	// Index is the rule's position in spec.rules.
	Index int
	// methods are upper case; empty means every method.
	methods []string
}

// matchesMethod reports whether the rule applies to the upper-case method m. HEAD is answered by
// most servers with their GET handler, so a rule for GET covers it.
func (r *Rule) matchesMethod(m string) bool {
	if len(r.methods) == 0 {
		return true
	}
	for _, want := range r.methods {
		if want == m || (m == "HEAD" && want == "GET") {
			return true
		}
	}
	return false
}

// Policy is one compiled RoutePolicy.
type Policy struct {
	// Name is the policy's namespace/name; Label is the same as one string, made once so that
	// labelling a decision's metric allocates nothing.
	Name  types.NamespacedName
	Label string
	// prefixes maps each lower-cased prefix (without trailing slash; "/" stays "/") to its rules.
	prefixes map[string][]*Rule
}

// Match appends to dst the rules that apply to a request for the normalised path (and alt, the
// variant without ";parameters", when not empty; see NormalizePath) with the upper-case method,
// and returns it. For each of the two paths the rules of the longest matching prefix whose
// methods match apply; nothing is appended when no rule matches.
func (p *Policy) Match(path, alt, method string, dst []*Rule) []*Rule {
	dst = p.match(path, method, dst)
	if alt == "" || alt == path {
		return dst
	}
	n := len(dst)
	all := p.match(alt, method, dst)
	out := all[:n]
	for _, r := range all[n:] {
		// Filtering in place: out never gets ahead of the element being read.
		if !containsRule(out[:n], r) {
			out = append(out, r)
		}
	}
	return out
}

func containsRule(rules []*Rule, r *Rule) bool {
	for _, x := range rules {
		if x == r {
			return true
		}
	}
	return false
}

// match appends the rules of the longest prefix of path that has a rule for method. The
// candidate prefixes are path itself and each of its ancestors at a segment boundary, longest
// first, so the cost is O(segments) map lookups, independent of the number of rules.
func (p *Policy) match(path, method string, dst []*Rule) []*Rule {
	cand := strings.TrimSuffix(path, "/")
	for {
		key := cand
		if key == "" {
			key = "/"
		}
		found := false
		for _, r := range p.prefixes[key] {
			if r.matchesMethod(method) {
				dst = append(dst, r)
				found = true
			}
		}
		if found || cand == "" {
			return dst
		}
		cand = cand[:strings.LastIndexByte(cand, '/')]
	}
}

// Index holds the policies by host. It is immutable: build a new one when policies change.
type Index struct {
	exact map[string]*Policy
	// wildcard maps the suffix of a wildcard host, ".example.com" for "*.example.com".
	wildcard map[string]*Policy
	// Conflicts are the hosts each policy lost to an older one.
	Conflicts map[types.NamespacedName][]Conflict
	size      int
}

// Conflict is a host a policy claims that an older policy holds.
type Conflict struct {
	Host   string
	Holder types.NamespacedName
}

// Len is the number of policies that hold at least one host.
func (ix *Index) Len() int { return ix.size }

// Build compiles policies into an Index. A host claimed by several policies goes to the oldest
// (creationTimestamp, then namespace/name, as Gateway API resolves conflicts); the others get a
// Conflict for it and keep their other hosts.
func Build(policies []*keycapv1alpha1.RoutePolicy) *Index {
	sorted := make([]*keycapv1alpha1.RoutePolicy, 0, len(policies))
	for _, p := range policies {
		if p.DeletionTimestamp == nil {
			sorted = append(sorted, p)
		}
	}
	sort.Slice(sorted, func(i, j int) bool { return Older(sorted[i], sorted[j]) })
	ix := &Index{
		exact:     map[string]*Policy{},
		wildcard:  map[string]*Policy{},
		Conflicts: map[types.NamespacedName][]Conflict{},
	}
	for _, rp := range sorted {
		name := types.NamespacedName{Namespace: rp.Namespace, Name: rp.Name}
		compiled := compile(rp)
		held := false
		for _, h := range rp.Spec.Hosts {
			h = strings.ToLower(h)
			m, key := ix.exact, h
			if suffix, ok := strings.CutPrefix(h, "*"); ok {
				m, key = ix.wildcard, suffix
			}
			if holder, taken := m[key]; taken {
				if holder != compiled {
					ix.Conflicts[name] = append(ix.Conflicts[name], Conflict{Host: h, Holder: holder.Name})
				}
				continue
			}
			m[key] = compiled
			held = true
		}
		if held {
			ix.size++
		}
	}
	return ix
}

// Older reports whether a was created before b (ties broken by namespace/name), the order in
// which policies claim hosts.
func Older(a, b *keycapv1alpha1.RoutePolicy) bool {
	if !a.CreationTimestamp.Equal(&b.CreationTimestamp) {
		return a.CreationTimestamp.Before(&b.CreationTimestamp)
	}
	if a.Namespace != b.Namespace {
		return a.Namespace < b.Namespace
	}
	return a.Name < b.Name
}

func compile(rp *keycapv1alpha1.RoutePolicy) *Policy {
	name := types.NamespacedName{Namespace: rp.Namespace, Name: rp.Name}
	p := &Policy{Name: name, Label: name.String(), prefixes: map[string][]*Rule{}}
	for i := range rp.Spec.Rules {
		in := &rp.Spec.Rules[i]
		r := &Rule{
			Requirements: Requirements{
				Scopes:       in.Scopes,
				Namespaces:   in.Namespaces,
				Audiences:    in.Audiences,
				Entitlements: in.Entitlements,
			},
			Policy: p.Name,
			Index:  i,
		}
		for _, m := range in.Methods {
			r.methods = append(r.methods, strings.ToUpper(m))
		}
		for _, prefix := range in.Paths {
			key := PrefixKey(prefix)
			if !containsRule(p.prefixes[key], r) {
				p.prefixes[key] = append(p.prefixes[key], r)
			}
		}
	}
	return p
}

// PrefixKey is the form a rule's path prefix is matched in: lower case, without a trailing
// slash ("/" stays "/"). Two prefixes with the same key are the same prefix.
func PrefixKey(prefix string) string {
	key := strings.ToLower(strings.TrimRight(prefix, "/"))
	if key == "" {
		return "/"
	}
	return key
}

// Lookup returns the policy that holds host (normalised by NormalizeHost), or nil. An exact name
// wins over a wildcard, a longer wildcard over a shorter one. The cost is one map lookup per
// label of host, independent of the number of policies.
func (ix *Index) Lookup(host string) *Policy {
	if ix == nil {
		return nil
	}
	if p := ix.exact[host]; p != nil {
		return p
	}
	if len(ix.wildcard) == 0 {
		return nil
	}
	// "a.b.example.com": ".b.example.com", then ".example.com", then ".com". The first label
	// is never a wildcard's suffix: "*.example.com" does not match "example.com".
	for i := strings.IndexByte(host, '.'); i >= 0; {
		if p := ix.wildcard[host[i:]]; p != nil {
			return p
		}
		j := strings.IndexByte(host[i+1:], '.')
		if j < 0 {
			break
		}
		i += 1 + j
	}
	return nil
}

// NormalizeHost returns host as policies name it: lower case, without port or trailing dot. ok
// is false for a host that is empty or not a DNS name or IP literal.
func NormalizeHost(host string) (string, bool) {
	if host == "" {
		return "", false
	}
	if host[0] == '[' {
		// An IPv6 literal, possibly with a port.
		end := strings.IndexByte(host, ']')
		if end < 0 || (end+1 < len(host) && host[end+1] != ':') {
			return "", false
		}
		host = host[:end+1]
	} else if i := strings.IndexByte(host, ':'); i >= 0 {
		for _, c := range host[i+1:] {
			if c < '0' || c > '9' {
				return "", false
			}
		}
		host = host[:i]
	}
	host = strings.TrimSuffix(host, ".")
	if host == "" {
		return "", false
	}
	lower := true
	for i := 0; i < len(host); i++ {
		c := host[i]
		switch {
		case 'a' <= c && c <= 'z', '0' <= c && c <= '9', c == '-', c == '.', c == '[', c == ']', c == ':':
		case 'A' <= c && c <= 'Z':
			lower = false
		default:
			return "", false
		}
	}
	if !lower {
		host = strings.ToLower(host)
	}
	return host, true
}

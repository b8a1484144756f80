package routepolicy

// Refusal says why a request on a host with a policy cannot be matched to its rules. The data
// plane refuses such a request (403) rather than skip the policy.
type Refusal string

const (
	// RefusalNone means the request was matched (or no policy applies).
	RefusalNone Refusal = ""
	// RefusalRouteUnknown means the trusted source does not state the original host, path and method
	// (or states one twice), and a policy may apply.
	RefusalRouteUnknown Refusal = "ROUTE_UNKNOWN"
	// RefusalAmbiguousPath means the path's meaning depends on the upstream (see NormalizePath).
	RefusalAmbiguousPath Refusal = "AMBIGUOUS_PATH"
)

// Route is what the policies say about one request.
type Route struct {
	// Policy is the policy holding the request's host; nil when none does.
	Policy *Policy
	// Rules are the rules whose requirements the request must meet besides the proxy's.
	Rules []*Rule
	// Refusal is set when the request must be refused.
	Refusal Refusal
}

// Route matches the request v, whose original host, path and method the trusted source src
// states, to the index's policies. The rules are appended to buf (pass a small stack array's
// slice to keep the hot path free of allocations).
func (ix *Index) Route(src Source, v *View, buf []*Rule) Route {
	if ix == nil || ix.size == 0 {
		return Route{}
	}
	host, target, method, ok := Attributes(src, v)
	if host == "" {
		// No host: any policy might apply.
		return Route{Refusal: RefusalRouteUnknown}
	}
	p := ix.Lookup(host)
	if p == nil {
		return Route{}
	}
	if !ok {
		return Route{Policy: p, Refusal: RefusalRouteUnknown}
	}
	path, alt, ok := NormalizePath(target)
	if !ok {
		return Route{Policy: p, Refusal: RefusalAmbiguousPath}
	}
	return Route{Policy: p, Rules: p.Match(path, alt, method, buf)}
}

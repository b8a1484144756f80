package wire

import "encoding/json"

// HTTP statuses of the answers (net/http's values; this package does without net/http so that its
// fuzz targets build quickly).
const (
	statusOK                 = 200
	statusForbidden          = 403
	statusUnauthorized       = 401
	statusServiceUnavailable = 503
	statusInternalError      = 500
	statusBadRequest         = 400
	statusNotFound           = 404
	statusMethodNotAllowed   = 405
	statusTooManyRequests    = 429
)

// Reason is the stable, machine-readable code of a decision. It is sent upstream/downstream in
// the x-keycap-reason header, in the JSON body and as the reason label of
// keycap_authz_checks_total. Clients and alerting match on these strings: never rename them.
type Reason uint8

// Reasons. OK is the reason of an allowed request.
const (
	ReasonOK Reason = iota
	ReasonMissing
	ReasonMalformed
	ReasonNotFound
	ReasonDisabled
	ReasonExpired
	ReasonParentInactive
	ReasonInsufficientScope
	ReasonWrongNamespace
	ReasonAmbiguous
	ReasonNotReady
	ReasonInternal
	// AppToken JWTs (the verifier's reasons, see apptoken.Reason).
	ReasonAlgorithmNotAllowed
	ReasonInvalidSignature
	ReasonUnknownKey
	ReasonNotYetValid
	ReasonWrongIssuer
	ReasonWrongAudience
	// Licences.
	ReasonNotActivated
	ReasonTooManyInstances
	ReasonMissingEntitlement
	// ReasonRevoked: an AppToken token issued before the AppToken's status.tokensNotBefore.
	ReasonRevoked
	// Sessions (the SSO cookie). ReasonSessionInvalid: the cookie does not open (forged,
	// truncated, sealed with an unknown key, repeated with different values).
	ReasonSessionInvalid
	// ReasonSessionEnded: the cookie opened, but its credential has ended its sessions (log out
	// everywhere, rotation with endOnRotation, an object of the same name created since).
	ReasonSessionEnded
	// ReasonCSRF: an unsafe method authenticated only by the cookie, without same-site evidence.
	ReasonCSRF
	// RoutePolicies. ReasonRouteUnknown: the trusted source does not state the original host,
	// path and method, and a RoutePolicy may apply to the request.
	ReasonRouteUnknown
	// ReasonAmbiguousPath: the request's path reads differently to different upstreams (an
	// encoded slash, backslash or percent sign, ...) on a host a RoutePolicy holds.
	ReasonAmbiguousPath
	// ReasonUnknownParameter: the query of exactly /check (the proxy's configuration) has a
	// parameter keycap does not know (a typo, a wrong case, a `;` separator): a misconfigured
	// proxy is refused, never read as requiring less.
	ReasonUnknownParameter
	// ReasonCount is the number of reasons (for tables indexed by reason).
	ReasonCount
)

var reasonCodes = [ReasonCount]string{
	ReasonOK:                "OK",
	ReasonMissing:           "MISSING",
	ReasonMalformed:         "MALFORMED",
	ReasonNotFound:          "NOT_FOUND",
	ReasonDisabled:          "DISABLED",
	ReasonExpired:           "EXPIRED",
	ReasonParentInactive:    "PARENT_INACTIVE",
	ReasonInsufficientScope: "INSUFFICIENT_SCOPE",
	ReasonWrongNamespace:    "WRONG_NAMESPACE",
	ReasonAmbiguous:         "AMBIGUOUS",
	ReasonNotReady:          "NOT_READY",
	ReasonInternal:          "INTERNAL",

	ReasonAlgorithmNotAllowed: "ALGORITHM_NOT_ALLOWED",
	ReasonInvalidSignature:    "INVALID_SIGNATURE",
	ReasonUnknownKey:          "UNKNOWN_KEY",
	ReasonNotYetValid:         "NOT_YET_VALID",
	ReasonWrongIssuer:         "WRONG_ISSUER",
	ReasonWrongAudience:       "WRONG_AUDIENCE",
	ReasonNotActivated:        "NOT_ACTIVATED",
	ReasonTooManyInstances:    "TOO_MANY_INSTANCES",
	ReasonMissingEntitlement:  "MISSING_ENTITLEMENT",
	ReasonRevoked:             "REVOKED",
	ReasonSessionInvalid:      "SESSION_INVALID",
	ReasonSessionEnded:        "SESSION_ENDED",
	ReasonCSRF:                "CSRF",
	ReasonRouteUnknown:        "ROUTE_UNKNOWN",
	ReasonAmbiguousPath:       "AMBIGUOUS_PATH",
	ReasonUnknownParameter:    "UNKNOWN_PARAMETER",
}

// String returns the reason's code, e.g. "NOT_FOUND".
func (r Reason) String() string {
	if r >= ReasonCount {
		return "INTERNAL"
	}
	return reasonCodes[r]
}

// HTTPStatus is the status a denial with this reason answers: 401 when the credential is missing
// or not valid, 403 when it is valid but not allowed here, and 403 too while the data plane is
// not ready (NOT_READY) or fails (INTERNAL). A check never answers a 5xx: Envoy's HTTP ext_authz
// with failure_mode_allow and Envoy Gateway with failOpen take a 5xx for an outage and let the
// request through, and nginx's auth_request turns it into a 500; the reason header and body say
// which it was.
func (r Reason) HTTPStatus() int {
	switch r {
	case ReasonOK:
		return statusOK
	case ReasonInsufficientScope, ReasonWrongNamespace, ReasonNotActivated, ReasonTooManyInstances,
		ReasonMissingEntitlement, ReasonCSRF, ReasonRouteUnknown, ReasonAmbiguousPath, ReasonUnknownParameter,
		ReasonNotReady, ReasonInternal:
		return statusForbidden
	default:
		return statusUnauthorized
	}
}

var reasonMessages = [ReasonCount]string{
	ReasonOK:                "OK",
	ReasonMissing:           "Missing API key",
	ReasonMalformed:         "Invalid or expired API key",
	ReasonNotFound:          "Invalid or expired API key",
	ReasonDisabled:          "Invalid or expired API key",
	ReasonExpired:           "Invalid or expired API key",
	ReasonParentInactive:    "Invalid or expired API key",
	ReasonInsufficientScope: "Insufficient permissions",
	ReasonWrongNamespace:    "Insufficient permissions",
	ReasonAmbiguous:         "More than one credential in the request",
	ReasonNotReady:          "Authorization service not ready",
	ReasonInternal:          "Authorization service error",

	ReasonAlgorithmNotAllowed: "Invalid or expired token",
	ReasonInvalidSignature:    "Invalid or expired token",
	ReasonUnknownKey:          "Invalid or expired token",
	ReasonNotYetValid:         "Invalid or expired token",
	ReasonWrongIssuer:         "Invalid or expired token",
	ReasonWrongAudience:       "Invalid or expired token",
	ReasonNotActivated:        "Instance not activated for this license",
	ReasonTooManyInstances:    "Too many active instances for this license",
	ReasonMissingEntitlement:  "License lacks a required entitlement",
	ReasonRevoked:             "Invalid or expired token",
	ReasonSessionInvalid:      "Invalid or expired session",
	ReasonSessionEnded:        "Invalid or expired session",
	ReasonCSRF:                "Cross-site request refused",
	ReasonRouteUnknown:        "Route of the request unknown",
	ReasonAmbiguousPath:       "Ambiguous request path",
	ReasonUnknownParameter:    "Unknown parameter in the forward-auth URL",
}

// ErrorBody is the JSON body of every denial and refusal the data plane answers (checks and
// licence activation): {"error":{"code":…,"message":…,"reason":…}}.
type ErrorBody struct {
	Error ErrorDetail `json:"error"`
}

// ErrorDetail says why.
type ErrorDetail struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Reason  string `json:"reason"`
}

// bodies holds every denial body, computed once: [compat][reason].
var bodies [2][ReasonCount]string

func init() {
	for r := Reason(0); r < ReasonCount; r++ {
		b, _ := json.Marshal(ErrorBody{Error: ErrorDetail{Code: ErrorCode(r.HTTPStatus()), Message: reasonMessages[r], Reason: r.String()}})
		bodies[0][r] = string(b)
		// The seeds' APIs' bodies: {"error":"Unauthorized"} for 401 and
		// {"message":"Insufficient permissions"} for 403.
		switch {
		case r == ReasonNotReady || r == ReasonInternal:
			// Not a judgement of the request: say what happened.
			bodies[1][r] = bodies[0][r]
		case r.HTTPStatus() == statusForbidden:
			bodies[1][r] = `{"message":"Insufficient permissions"}`
		case r.HTTPStatus() == statusUnauthorized:
			bodies[1][r] = `{"error":"Unauthorized"}`
		default:
			bodies[1][r] = bodies[0][r]
		}
	}
}

// licenseMessages are the messages of the reasons a licence is refused with that would otherwise
// speak of API keys (the words of licence activation's refusals).
var licenseMessages = map[Reason]string{
	ReasonMalformed: "Invalid license key",
	ReasonNotFound:  "Invalid license key",
	ReasonDisabled:  "License disabled",
	ReasonExpired:   "License expired",
}

// licenseBodies are the default bodies of licenseMessages' reasons.
var licenseBodies = func() map[Reason]string {
	out := make(map[Reason]string, len(licenseMessages))
	for r, m := range licenseMessages {
		b, _ := json.Marshal(ErrorBody{Error: ErrorDetail{Code: ErrorCode(r.HTTPStatus()), Message: m, Reason: r.String()}})
		out[r] = string(b)
	}
	return out
}()

// BodyFor returns the JSON body of a denial of a presented licence (license) or of any other
// credential: a licence's MALFORMED, NOT_FOUND, DISABLED and EXPIRED speak of a licence, not of
// an API key. The compatibility bodies are the same for every kind.
func (r Reason) BodyFor(compat, license bool) string {
	if license && !compat {
		if b, ok := licenseBodies[r]; ok {
			return b
		}
	}
	return r.Body(compat)
}

// Body returns the JSON body of a denial.
func (r Reason) Body(compat bool) string {
	if r >= ReasonCount {
		r = ReasonInternal
	}
	if compat {
		return bodies[1][r]
	}
	return bodies[0][r]
}

// ErrorCode is the error body's code for an HTTP status.
func ErrorCode(status int) string {
	switch status {
	case statusBadRequest:
		return "bad_request"
	case statusNotFound:
		return "not_found"
	case statusForbidden:
		return "forbidden"
	case statusMethodNotAllowed:
		return "method_not_allowed"
	case statusTooManyRequests:
		return "too_many_requests"
	case statusServiceUnavailable:
		return "unavailable"
	case statusInternalError:
		return "internal"
	}
	return "unauthorized"
}

// NotFoundBody is the JSON body of the HTTP port's 404 (a path it does not serve):
// {"error":{"code":"not_found","message":"Not found","reason":"UNKNOWN_PATH"}}.
func NotFoundBody() string {
	b, _ := json.Marshal(ErrorBody{Error: ErrorDetail{Code: ErrorCode(statusNotFound), Message: "Not found", Reason: "UNKNOWN_PATH"}})
	return string(b)
}

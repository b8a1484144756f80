package authz

import (
	"encoding/json"
	"net/http"
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
	reasonCount
)

var reasonCodes = [reasonCount]string{
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
}

// String returns the reason's code, e.g. "NOT_FOUND".
func (r Reason) String() string {
	if r >= reasonCount {
		return "INTERNAL"
	}
	return reasonCodes[r]
}

// HTTPStatus is the status a denial with this reason answers: 401 when the credential is missing
// or not valid, 403 when it is valid but not allowed here, 503 while the data plane is not ready
// and 500 on an internal error (both still deny). nginx's auth_request turns anything but
// 2xx/401/403 into a 500, which still denies.
func (r Reason) HTTPStatus() int {
	switch r {
	case ReasonOK:
		return http.StatusOK
	case ReasonInsufficientScope, ReasonWrongNamespace, ReasonNotActivated, ReasonTooManyInstances,
		ReasonMissingEntitlement:
		return http.StatusForbidden
	case ReasonNotReady:
		return http.StatusServiceUnavailable
	case ReasonInternal:
		return http.StatusInternalServerError
	default:
		return http.StatusUnauthorized
	}
}

var reasonMessages = [reasonCount]string{
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
}

type errorBody struct {
	Error errorDetail `json:"error"`
}

type errorDetail struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Reason  string `json:"reason"`
}

// bodies holds every denial body, computed once: [compat][reason].
var bodies [2][reasonCount]string

func init() {
	for r := Reason(0); r < reasonCount; r++ {
		code := "unauthorized"
		switch r.HTTPStatus() {
		case http.StatusForbidden:
			code = "forbidden"
		case http.StatusServiceUnavailable:
			code = "unavailable"
		case http.StatusInternalServerError:
			code = "internal"
		}
		b, _ := json.Marshal(errorBody{Error: errorDetail{Code: code, Message: reasonMessages[r], Reason: r.String()}})
		bodies[0][r] = string(b)
		// The seeds' APIs' bodies: {"error":"Unauthorized"} for 401 and
		// {"message":"Insufficient permissions"} for 403.
		switch r.HTTPStatus() {
		case http.StatusForbidden:
			bodies[1][r] = `{"message":"Insufficient permissions"}`
		case http.StatusUnauthorized:
			bodies[1][r] = `{"error":"Unauthorized"}`
		default:
			bodies[1][r] = bodies[0][r]
		}
	}
}

// Body returns the JSON body of a denial.
func (r Reason) Body(compat bool) string {
	if r >= reasonCount {
		r = ReasonInternal
	}
	if compat {
		return bodies[1][r]
	}
	return bodies[0][r]
}

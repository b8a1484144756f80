package activation

import "net/http"

// Reason is the stable code of an activation outcome, in the JSON body and the
// keycap_license_activations_total metric.
type Reason string

// Reasons.
const (
	ReasonOK               Reason = "OK"
	ReasonBadRequest       Reason = "BAD_REQUEST"
	ReasonMalformed        Reason = "MALFORMED"
	ReasonNotFound         Reason = "NOT_FOUND"
	ReasonDisabled         Reason = "DISABLED"
	ReasonExpired          Reason = "EXPIRED"
	ReasonTooManyInstances Reason = "TOO_MANY_INSTANCES"
	ReasonBusy             Reason = "BUSY"
)

// HTTPStatus is the status answered with the reason: 401 for a key that is not a valid licence,
// 403 for a valid licence that may not be activated (disabled, seats taken), 400 for a bad
// request, 503 when the activation could not be recorded.
func (r Reason) HTTPStatus() int {
	switch r {
	case ReasonOK:
		return http.StatusOK
	case ReasonBadRequest:
		return http.StatusBadRequest
	case ReasonDisabled, ReasonTooManyInstances:
		return http.StatusForbidden
	case ReasonBusy:
		return http.StatusServiceUnavailable
	default:
		return http.StatusUnauthorized
	}
}

func (r Reason) message() string {
	switch r {
	case ReasonOK:
		return "License activated"
	case ReasonBadRequest:
		return "Bad request"
	case ReasonMalformed, ReasonNotFound:
		return "Invalid license key"
	case ReasonDisabled:
		return "License disabled"
	case ReasonExpired:
		return "License expired"
	case ReasonTooManyInstances:
		return "Too many active instances for this license"
	default:
		return "License activation is busy, retry"
	}
}

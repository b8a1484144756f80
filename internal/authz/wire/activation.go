package wire

import (
	"encoding/json"
	"errors"
)

// Limits of an activation request.
const (
	// MaxActivationBody bounds the body of an activation request.
	MaxActivationBody = 4 << 10
	maxInstanceIDLen  = 253
)

// ActivationRequest is a licence activation (POST /api/commercial/activate): headers licensekey
// and instanceid, body {"reset": bool} (an empty body means reset false).
type ActivationRequest struct {
	LicenseKey, InstanceID string
	Reset                  bool
}

// ActivationError says why an activation request is not one; its message is for the client.
type ActivationError struct{ Message string }

func (e *ActivationError) Error() string { return e.Message }

// Refusals of ParseActivation.
var (
	ErrActivationHeaders    = &ActivationError{"The licensekey and instanceid headers are required, once each"}
	ErrActivationInstanceID = &ActivationError{"The instanceid header must be at most 253 printable characters"}
	ErrActivationBody       = &ActivationError{`The body must be a small JSON object, e.g. {"reset": false}`}
)

// ParseActivation reads an activation request from its headers (canonical names) and body. A
// header repeated with different values is refused, as /check refuses it: a licence or an
// instance must be unambiguous.
func ParseActivation(h map[string][]string, body []byte) (ActivationRequest, error) {
	var f Form
	for _, v := range h[canonicalLicenseKey] {
		f.AddLicenseKey(v)
	}
	for _, v := range h[canonicalInstanceID] {
		f.AddInstanceID(v)
	}
	key, instance := TrimSpace(f.license.value), TrimSpace(f.instance.value)
	if key == "" || instance == "" || f.license.conflict || f.instance.conflict {
		return ActivationRequest{}, ErrActivationHeaders
	}
	if len(instance) > maxInstanceIDLen || !ValidCredential(instance) {
		return ActivationRequest{}, ErrActivationInstanceID
	}
	if len(key) > MaxCredentialLength || !ValidCredential(key) {
		return ActivationRequest{}, ErrActivationHeaders
	}
	req := ActivationRequest{LicenseKey: key, InstanceID: instance}
	if len(body) > MaxActivationBody {
		return ActivationRequest{}, ErrActivationBody
	}
	if len(body) > 0 {
		var b struct {
			Reset bool `json:"reset"`
		}
		if err := json.Unmarshal(body, &b); err != nil {
			return ActivationRequest{}, ErrActivationBody
		}
		req.Reset = b.Reset
	}
	return req, nil
}

// IsActivationError reports whether err is a refusal of ParseActivation.
func IsActivationError(err error) bool {
	var e *ActivationError
	return errors.As(err, &e)
}

package lifecycle

import (
	"time"

	keycapv1alpha1 "github.com/keycap-dev/keycap/api/v1alpha1"
)

// ReadyInput is what the Ready reason of a credential is decided on.
type ReadyInput struct {
	// Disabled is spec.disabled.
	Disabled bool
	// Expiry is the credential's expiry (zero: never), Expired compares it with Now.
	Expiry, Now time.Time
	// ParentInactive is non-empty, and says why, when an AgentKey's parent is not active.
	ParentInactive string
	// Issued says what was issued, for the message of a usable credential.
	Issued string
}

// ReadyReason is the one order of the Ready reasons every kind follows: a disabled credential
// reports Disabled even when it has also expired (enabling it is the user's next question), an
// expired one Expired, an agent key whose parent is inactive ParentInactive, and only then Issued.
func ReadyReason(in ReadyInput) (reason, message string) {
	switch {
	case in.Disabled:
		return keycapv1alpha1.ReasonDisabled, "spec.disabled is true; the credential is refused and kept, and works again once it is enabled"
	case Expired(in.Now, in.Expiry):
		return keycapv1alpha1.ReasonExpired, "the credential expired at " + in.Expiry.UTC().Format(time.RFC3339)
	case in.ParentInactive != "":
		return keycapv1alpha1.ReasonParentInactive, in.ParentInactive
	}
	return keycapv1alpha1.ReasonIssued, in.Issued
}

package lifecycle

import (
	"fmt"
	"time"

	keycapv1alpha1 "github.com/keycap-dev/keycap/api/v1alpha1"
)

// EventReasonRotated is the Event reason of a rotation, whichever policy asked for it.
const EventReasonRotated = "Rotated"

// RotationInput is what the rotation policies decide on.
type RotationInput struct {
	// Now is the current time of the injected clock.
	Now time.Time
	// IssuedAt is when the current key was issued.
	IssuedAt time.Time
	// Rotation is the credential's rotation policy; nil when it has none.
	Rotation *keycapv1alpha1.RotationPolicy
	// RotateRequest is the current value of the keycap.dev/rotate annotation on the credential.
	RotateRequest string
	// RotateObserved is the value of that annotation the last issue or rotation acted on.
	RotateObserved string
	// Disabled and Expired describe the credential's own state.
	Disabled, Expired bool
}

// RotationPolicy decides whether the key must be rotated now, and says why.
type RotationPolicy func(RotationInput) (reason, message string, rotate bool)

// RotationPolicies are evaluated in order; the first that asks for a rotation wins.
var RotationPolicies = []RotationPolicy{RotationRequested, RotationScheduled}

// ShouldRotate evaluates RotationPolicies.
func ShouldRotate(in RotationInput) (reason, message string, rotate bool) {
	for _, policy := range RotationPolicies {
		if reason, message, rotate = policy(in); rotate {
			return reason, message, true
		}
	}
	return "", "", false
}

// RotationRequested rotates when the keycap.dev/rotate annotation holds a value the controller
// has not acted on yet (`kubectl keycap rotate` writes a timestamp). An explicit request is
// honoured even for a disabled or expired credential: the user asked for a new key.
func RotationRequested(in RotationInput) (string, string, bool) {
	if in.RotateRequest == "" || in.RotateRequest == in.RotateObserved {
		return "", "", false
	}
	return EventReasonRotated, "rotation requested through the " + keycapv1alpha1.AnnotationRotate + " annotation", true
}

// RotationScheduled rotates once spec.rotation.every has passed since the current key was issued.
// A disabled credential keeps its key (enabling it again restores the same key), and an expired
// one is not worth a new key.
func RotationScheduled(in RotationInput) (string, string, bool) {
	next := NextRotation(in.IssuedAt, in.Rotation)
	if next == nil || in.Disabled || in.Expired || in.Now.Before(*next) {
		return "", "", false
	}
	return EventReasonRotated, fmt.Sprintf("scheduled rotation: the key is older than %s", in.Rotation.Every.Duration), true
}

// NextRotation is when a key issued at issuedAt is due for scheduled rotation; nil without a
// policy.
func NextRotation(issuedAt time.Time, rotation *keycapv1alpha1.RotationPolicy) *time.Time {
	if rotation == nil || rotation.Every.Duration <= 0 {
		return nil
	}
	t := issuedAt.Add(rotation.Every.Duration)
	return &t
}

// GracePeriod is how long the previous key stays valid after a rotation; zero without a policy.
func GracePeriod(rotation *keycapv1alpha1.RotationPolicy) time.Duration {
	if rotation == nil || rotation.GracePeriod == nil || rotation.GracePeriod.Duration < 0 {
		return 0
	}
	return rotation.GracePeriod.Duration
}

// PreviousKeyValidUntil bounds the previous key's validity: the recorded end of its grace period,
// but never later than the current key's issue time plus the grace period the spec allows now
// (so shortening or removing the grace period takes effect at once, and a forged record cannot
// extend it). It returns nil when the previous key is no longer valid at now.
func PreviousKeyValidUntil(now, issuedAt time.Time, recorded *time.Time, rotation *keycapv1alpha1.RotationPolicy) *time.Time {
	if recorded == nil {
		return nil
	}
	until := *recorded
	if limit := issuedAt.Add(GracePeriod(rotation)); limit.Before(until) {
		until = limit
	}
	if !now.Before(until) {
		return nil
	}
	return &until
}

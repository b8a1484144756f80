package controllers

import (
	"fmt"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	keycapv1alpha1 "github.com/keycap-dev/keycap/api/v1alpha1"
)

// This file holds the time-based decisions of the credential lifecycle as pure functions of their
// inputs and of "now" (cert-manager's trigger/policies shape). Reconcilers read now from the
// injected clock and act on the answers; the functions themselves never read a clock.

// rotationInput is what the rotation policies decide on.
type rotationInput struct {
	// now is the current time of the injected clock.
	now time.Time
	// issuedAt is when the current key was issued.
	issuedAt time.Time
	// rotation is the credential's rotation policy; nil when it has none.
	rotation *keycapv1alpha1.RotationPolicy
	// rotateRequest is the current value of the keycap.dev/rotate annotation on the credential.
	rotateRequest string
	// rotateObserved is the value of that annotation the last issue or rotation acted on.
	rotateObserved string
	// disabled and expired describe the credential's own state.
	disabled, expired bool
}

// rotationPolicy decides whether the key must be rotated now, and says why.
type rotationPolicy func(rotationInput) (reason, message string, rotate bool)

// rotationPolicies are evaluated in order; the first that asks for a rotation wins.
var rotationPolicies = []rotationPolicy{rotationRequested, rotationScheduled}

// shouldRotate evaluates rotationPolicies.
func shouldRotate(in rotationInput) (reason, message string, rotate bool) {
	for _, policy := range rotationPolicies {
		if reason, message, rotate = policy(in); rotate {
			return reason, message, true
		}
	}
	return "", "", false
}

// rotationRequested rotates when the keycap.dev/rotate annotation holds a value the controller has
// not acted on yet (`kubectl keycap rotate` writes a timestamp). An explicit request is honoured
// even for a disabled or expired credential: the user asked for a new key.
func rotationRequested(in rotationInput) (string, string, bool) {
	if in.rotateRequest == "" || in.rotateRequest == in.rotateObserved {
		return "", "", false
	}
	return EventReasonRotated, "rotation requested through the " + keycapv1alpha1.AnnotationRotate + " annotation", true
}

// rotationScheduled rotates once spec.rotation.every has passed since the current key was issued.
// A disabled credential keeps its key (enabling it again restores the same key), and an expired
// one is not worth a new key.
func rotationScheduled(in rotationInput) (string, string, bool) {
	next := nextRotation(in.issuedAt, in.rotation)
	if next == nil || in.disabled || in.expired || in.now.Before(*next) {
		return "", "", false
	}
	return EventReasonRotated, fmt.Sprintf("scheduled rotation: the key is older than %s", in.rotation.Every.Duration), true
}

// nextRotation is when a key issued at issuedAt is due for scheduled rotation; nil without a policy.
func nextRotation(issuedAt time.Time, rotation *keycapv1alpha1.RotationPolicy) *time.Time {
	if rotation == nil || rotation.Every.Duration <= 0 {
		return nil
	}
	t := issuedAt.Add(rotation.Every.Duration)
	return &t
}

// gracePeriod is how long the previous key stays valid after a rotation; zero without a policy.
func gracePeriod(rotation *keycapv1alpha1.RotationPolicy) time.Duration {
	if rotation == nil || rotation.GracePeriod == nil || rotation.GracePeriod.Duration < 0 {
		return 0
	}
	return rotation.GracePeriod.Duration
}

// previousKeyValidUntil bounds the previous key's validity: the recorded end of its grace period,
// but never later than the current key's issue time plus the grace period the spec allows now (so
// shortening or removing the grace period takes effect at once, and a forged annotation on the
// Secret cannot extend it). It returns nil when the previous key is no longer valid at now.
func previousKeyValidUntil(now, issuedAt time.Time, recorded *time.Time, rotation *keycapv1alpha1.RotationPolicy) *time.Time {
	if recorded == nil {
		return nil
	}
	until := *recorded
	if limit := issuedAt.Add(gracePeriod(rotation)); limit.Before(until) {
		until = limit
	}
	if !now.Before(until) {
		return nil
	}
	return &until
}

// expiryTime is when a credential created at created with lifetime l expires: spec.expiresAt, or
// creation plus spec.duration; nil when it never expires.
func expiryTime(created metav1.Time, l keycapv1alpha1.Lifetime) *metav1.Time {
	switch {
	case l.ExpiresAt != nil:
		t := metav1.NewTime(l.ExpiresAt.Time)
		return &t
	case l.Duration != nil && !created.IsZero():
		t := metav1.NewTime(created.Add(l.Duration.Duration))
		return &t
	}
	return nil
}

// isExpired reports whether expiresAt has been reached at now.
func isExpired(now time.Time, expiresAt *metav1.Time) bool {
	return expiresAt != nil && !now.Before(expiresAt.Time)
}

// nextDeadline is the earliest deadline still ahead of now (rotation, end of a grace period,
// expiry); nil when none is ahead.
func nextDeadline(now time.Time, deadlines ...*time.Time) *time.Time {
	var next *time.Time
	for _, d := range deadlines {
		if d == nil || !d.After(now) {
			continue
		}
		if next == nil || d.Before(*next) {
			next = d
		}
	}
	return next
}

// parentState says whether an AgentKey's parent ApiKey is active at now, and if not, why. A parent
// is active when it exists, is not being deleted, is neither disabled nor expired by its spec (read
// directly, so the agent key does not wait for the parent's own reconcile) and its controller has
// reported it Ready for its current generation.
func parentState(now time.Time, name string, parent *keycapv1alpha1.ApiKey) (active bool, message string) {
	switch {
	case parent == nil:
		return false, fmt.Sprintf("parent ApiKey %q does not exist", name)
	case parent.DeletionTimestamp != nil:
		return false, fmt.Sprintf("parent ApiKey %q is being deleted", name)
	case parent.Spec.Disabled:
		return false, fmt.Sprintf("parent ApiKey %q is disabled", name)
	case isExpired(now, expiryTime(parent.CreationTimestamp, parent.Spec.Lifetime)):
		return false, fmt.Sprintf("parent ApiKey %q has expired", name)
	}
	ready := meta.FindStatusCondition(parent.Status.Conditions, keycapv1alpha1.ConditionReady)
	switch {
	case ready == nil || ready.ObservedGeneration != parent.Generation:
		return false, fmt.Sprintf("parent ApiKey %q is not reconciled yet", name)
	case ready.Status != metav1.ConditionTrue:
		return false, fmt.Sprintf("parent ApiKey %q is not Ready (%s)", name, ready.Reason)
	}
	return true, ""
}

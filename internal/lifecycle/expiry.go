package lifecycle

import (
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	keycapv1alpha1 "github.com/keycap-dev/keycap/api/v1alpha1"
)

// SpecExpiry is when a credential created at created with lifetime l expires by its spec:
// spec.expiresAt, or creation plus spec.duration; nil when it never expires. It is what the
// controller records in status.expiresAt.
func SpecExpiry(created metav1.Time, l keycapv1alpha1.Lifetime) *metav1.Time {
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

// Expiry is the one rule of when a credential stops being valid: the earliest of its spec's
// expiry and the status.expiresAt the controller recorded. A consumer of the object (the data
// plane, activation) may see a spec before the controller has reconciled it, so it takes the
// earlier of the two and refuses an expired credential at once; the controller, which writes
// status.expiresAt from the spec, passes a nil recorded. The zero time means it never expires.
func Expiry(created metav1.Time, l keycapv1alpha1.Lifetime, recorded *metav1.Time) time.Time {
	var out time.Time
	consider := func(t time.Time) {
		if !t.IsZero() && (out.IsZero() || t.Before(out)) {
			out = t
		}
	}
	if recorded != nil {
		consider(recorded.Time)
	}
	if spec := SpecExpiry(created, l); spec != nil {
		consider(spec.Time)
	}
	return out
}

// CredentialExpiry is Expiry of a credential object, from its spec and its status.
func CredentialExpiry(c keycapv1alpha1.Credential) time.Time {
	return Expiry(c.GetCreationTimestamp(), c.GetLifetime(), c.GetCredentialStatus().ExpiresAt)
}

// Expired reports whether an expiry (zero: never) has been reached at now.
func Expired(now, expiry time.Time) bool {
	return !expiry.IsZero() && !now.Before(expiry)
}

// NextDeadline is the earliest deadline still ahead of now (rotation, end of a grace period,
// expiry, renewal); nil when none is ahead.
func NextDeadline(now time.Time, deadlines ...*time.Time) *time.Time {
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

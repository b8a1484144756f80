package lifecycle

import (
	"time"

	keycapv1alpha1 "github.com/keycap-dev/keycap/api/v1alpha1"
)

// TokenLifetime is the lifetime of each token an AppToken issues: spec.duration, by default
// keycapv1alpha1.DefaultAppTokenDuration.
func TokenLifetime(spec *keycapv1alpha1.AppTokenSpec) time.Duration {
	if spec.Duration != nil && spec.Duration.Duration > 0 {
		return spec.Duration.Duration
	}
	return keycapv1alpha1.DefaultAppTokenDuration
}

// TokenExpiry is the exp of a token issued at iat: iat plus the token lifetime, capped by the
// AppToken's own spec.expiresAt (notAfter, nil: none), so no token outlives its AppToken.
func TokenExpiry(iat time.Time, lifetime time.Duration, notAfter *time.Time) time.Time {
	exp := iat.Add(lifetime)
	if notAfter != nil && notAfter.Before(exp) {
		exp = *notAfter
	}
	return exp
}

// RenewAt is when a token issued at iat and expiring at exp must be replaced: renewBefore
// (spec.renewBefore; zero: a third of its lifetime) before exp. A token cut short by the
// AppToken's expiresAt (notAfter) is never renewed: its successor could not live longer. nil
// means no renewal.
func RenewAt(iat, exp time.Time, renewBefore time.Duration, notAfter *time.Time) *time.Time {
	if notAfter != nil && !exp.Before(*notAfter) {
		return nil
	}
	before := exp.Sub(iat) / 3
	if renewBefore > 0 {
		before = renewBefore
	}
	t := exp.Add(-before)
	if t.Before(iat) {
		t = iat
	}
	return &t
}

package lifecycle

import (
	"testing"
	"time"

	"github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clocktesting "k8s.io/utils/clock/testing"

	keycapv1alpha1 "github.com/keycap-dev/keycap/api/v1alpha1"
)

// t0 is the fixed start of the fake clocks of the unit tests.
var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func rotationEvery(every, grace time.Duration) *keycapv1alpha1.RotationPolicy {
	p := &keycapv1alpha1.RotationPolicy{Every: metav1.Duration{Duration: every}}
	if grace > 0 {
		p.GracePeriod = &metav1.Duration{Duration: grace}
	}
	return p
}

func TestShouldRotate(t *testing.T) {
	daily := rotationEvery(24*time.Hour, time.Hour)
	cases := map[string]struct {
		elapsed time.Duration
		in      RotationInput
		want    bool
	}{
		"a key without a rotation policy is never rotated on schedule": {
			elapsed: 1000 * time.Hour, in: RotationInput{}, want: false,
		},
		"a key younger than every is kept": {
			elapsed: 24*time.Hour - time.Second, in: RotationInput{Rotation: daily}, want: false,
		},
		"a key exactly every old is rotated": {
			elapsed: 24 * time.Hour, in: RotationInput{Rotation: daily}, want: true,
		},
		"a key several periods old (controller was down) is rotated once": {
			elapsed: 100 * time.Hour, in: RotationInput{Rotation: daily}, want: true,
		},
		"a disabled key is not rotated on schedule, so enabling it restores the same key": {
			elapsed: 48 * time.Hour, in: RotationInput{Rotation: daily, Disabled: true}, want: false,
		},
		"an expired key is not rotated on schedule": {
			elapsed: 48 * time.Hour, in: RotationInput{Rotation: daily, Expired: true}, want: false,
		},
		"a new value of the rotate annotation rotates at once": {
			elapsed: time.Minute, in: RotationInput{RotateRequest: "2", RotateObserved: "1"}, want: true,
		},
		"a rotate annotation already acted on does not rotate again": {
			elapsed: time.Minute, in: RotationInput{RotateRequest: "1", RotateObserved: "1"}, want: false,
		},
		"removing the rotate annotation does not rotate": {
			elapsed: time.Minute, in: RotationInput{RotateRequest: "", RotateObserved: "1"}, want: false,
		},
		"an explicit rotation request is honoured for a disabled key": {
			elapsed: time.Minute, in: RotationInput{RotateRequest: "2", Disabled: true}, want: true,
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			g := gomega.NewWithT(t)
			clock := clocktesting.NewFakeClock(t0)
			tc.in.IssuedAt = clock.Now()
			clock.Step(tc.elapsed)
			tc.in.Now = clock.Now()
			reason, message, rotate := ShouldRotate(tc.in)
			g.Expect(rotate).To(gomega.Equal(tc.want))
			if rotate {
				g.Expect(reason).To(gomega.Equal(EventReasonRotated))
				g.Expect(message).NotTo(gomega.BeEmpty())
			}
		})
	}
}

func TestPreviousKeyValidUntil(t *testing.T) {
	recorded := t0.Add(time.Hour)
	cases := map[string]struct {
		elapsed  time.Duration
		recorded *time.Time
		rotation *keycapv1alpha1.RotationPolicy
		want     *time.Time
	}{
		"no previous key": {
			elapsed: 0, recorded: nil, rotation: rotationEvery(24*time.Hour, time.Hour), want: nil,
		},
		"within the grace period the previous key is valid until its end": {
			elapsed: 59 * time.Minute, recorded: &recorded, rotation: rotationEvery(24*time.Hour, time.Hour), want: &recorded,
		},
		"at the end of the grace period the previous key is dropped": {
			elapsed: time.Hour, recorded: &recorded, rotation: rotationEvery(24*time.Hour, time.Hour), want: nil,
		},
		"a grace period shortened in the spec takes effect at once": {
			elapsed: 20 * time.Minute, recorded: &recorded, rotation: rotationEvery(24*time.Hour, 10*time.Minute), want: nil,
		},
		"a removed rotation policy ends the grace period at once": {
			elapsed: time.Minute, recorded: &recorded, rotation: nil, want: nil,
		},
		"a recorded end later than the spec allows (a forged annotation) is capped": {
			elapsed: time.Minute, recorded: ptrTime(t0.Add(1000 * time.Hour)), rotation: rotationEvery(24*time.Hour, time.Hour), want: &recorded,
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			g := gomega.NewWithT(t)
			clock := clocktesting.NewFakeClock(t0)
			clock.Step(tc.elapsed)
			got := PreviousKeyValidUntil(clock.Now(), t0, tc.recorded, tc.rotation)
			if tc.want == nil {
				g.Expect(got).To(gomega.BeNil())
				return
			}
			g.Expect(got).NotTo(gomega.BeNil())
			g.Expect(*got).To(gomega.BeTemporally("==", *tc.want))
		})
	}
}

func ptrTime(t time.Time) *time.Time { return &t }

func TestExpiry(t *testing.T) {
	created := metav1.NewTime(t0)
	at := metav1.NewTime(t0.Add(2 * time.Hour))
	cases := map[string]struct {
		lifetime keycapv1alpha1.Lifetime
		elapsed  time.Duration
		wantAt   *time.Time
		expired  bool
	}{
		"no expiry never expires": {
			lifetime: keycapv1alpha1.Lifetime{}, elapsed: 10000 * time.Hour, wantAt: nil, expired: false,
		},
		"expiresAt not reached": {
			lifetime: keycapv1alpha1.Lifetime{ExpiresAt: &at}, elapsed: 2*time.Hour - time.Second, wantAt: &at.Time, expired: false,
		},
		"expiresAt reached": {
			lifetime: keycapv1alpha1.Lifetime{ExpiresAt: &at}, elapsed: 2 * time.Hour, wantAt: &at.Time, expired: true,
		},
		"duration counts from creation": {
			lifetime: keycapv1alpha1.Lifetime{Duration: &metav1.Duration{Duration: 3 * time.Hour}}, elapsed: 3 * time.Hour, wantAt: ptrTime(t0.Add(3 * time.Hour)), expired: true,
		},
		"duration not over yet": {
			lifetime: keycapv1alpha1.Lifetime{Duration: &metav1.Duration{Duration: 3 * time.Hour}}, elapsed: time.Hour, wantAt: ptrTime(t0.Add(3 * time.Hour)), expired: false,
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			g := gomega.NewWithT(t)
			clock := clocktesting.NewFakeClock(t0)
			clock.Step(tc.elapsed)
			got := SpecExpiry(created, tc.lifetime)
			if tc.wantAt == nil {
				g.Expect(got).To(gomega.BeNil())
			} else {
				g.Expect(got).NotTo(gomega.BeNil())
				g.Expect(got.Time).To(gomega.BeTemporally("==", *tc.wantAt))
			}
			g.Expect(Expired(clock.Now(), Expiry(created, tc.lifetime, nil))).To(gomega.Equal(tc.expired))
		})
	}
}

func TestNextDeadline(t *testing.T) {
	cases := map[string]struct {
		deadlines []*time.Time
		want      *time.Time
	}{
		"nothing scheduled":                {deadlines: []*time.Time{nil, nil}, want: nil},
		"the earliest deadline ahead":      {deadlines: []*time.Time{ptrTime(t0.Add(3 * time.Hour)), nil, ptrTime(t0.Add(time.Hour))}, want: ptrTime(t0.Add(time.Hour))},
		"deadlines already passed ignored": {deadlines: []*time.Time{ptrTime(t0.Add(-time.Hour)), ptrTime(t0), ptrTime(t0.Add(time.Minute))}, want: ptrTime(t0.Add(time.Minute))},
		"only past deadlines":              {deadlines: []*time.Time{ptrTime(t0.Add(-time.Hour))}, want: nil},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			g := gomega.NewWithT(t)
			got := NextDeadline(t0, tc.deadlines...)
			if tc.want == nil {
				g.Expect(got).To(gomega.BeNil())
				return
			}
			g.Expect(got).NotTo(gomega.BeNil())
			g.Expect(*got).To(gomega.BeTemporally("==", *tc.want))
		})
	}
}

func TestParentState(t *testing.T) {
	active := func() *keycapv1alpha1.ApiKey {
		p := &keycapv1alpha1.ApiKey{ObjectMeta: metav1.ObjectMeta{Name: "parent", Generation: 3, CreationTimestamp: metav1.NewTime(t0)}}
		p.Status.Conditions = []metav1.Condition{{Type: keycapv1alpha1.ConditionReady, Status: metav1.ConditionTrue, Reason: keycapv1alpha1.ReasonIssued, ObservedGeneration: 3}}
		return p
	}
	cases := map[string]struct {
		parent func() *keycapv1alpha1.ApiKey
		want   bool
	}{
		"an active parent":  {parent: active, want: true},
		"a missing parent":  {parent: func() *keycapv1alpha1.ApiKey { return nil }, want: false},
		"a disabled parent": {parent: func() *keycapv1alpha1.ApiKey { p := active(); p.Spec.Disabled = true; return p }, want: false},
		"a parent being deleted": {parent: func() *keycapv1alpha1.ApiKey {
			p := active()
			p.DeletionTimestamp = &metav1.Time{Time: t0}
			return p
		}, want: false},
		"a parent expired by its spec before its own reconcile says so": {parent: func() *keycapv1alpha1.ApiKey {
			p := active()
			p.Spec.Duration = &metav1.Duration{Duration: time.Hour}
			return p
		}, want: false},
		"a parent not Ready": {parent: func() *keycapv1alpha1.ApiKey {
			p := active()
			p.Status.Conditions[0].Status, p.Status.Conditions[0].Reason = metav1.ConditionFalse, keycapv1alpha1.ReasonSecretConflict
			return p
		}, want: false},
		"a parent whose Ready is for an older generation": {parent: func() *keycapv1alpha1.ApiKey {
			p := active()
			p.Generation = 4
			return p
		}, want: false},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			g := gomega.NewWithT(t)
			clock := clocktesting.NewFakeClock(t0)
			clock.Step(2 * time.Hour)
			ok, why := ParentState(clock.Now(), "parent", tc.parent())
			g.Expect(ok).To(gomega.Equal(tc.want))
			if !ok {
				g.Expect(why).To(gomega.ContainSubstring(`"parent"`))
			}
		})
	}
}

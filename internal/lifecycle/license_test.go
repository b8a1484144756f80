package lifecycle

import (
	"testing"
	"time"

	"github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	keycapv1alpha1 "github.com/keycap-dev/keycap/api/v1alpha1"
)

const digest = "0000000000000000000000000000000000000000000000000000000000000001"

func testLicense(maxInstances int32, acts ...keycapv1alpha1.LicenseActivation) *keycapv1alpha1.License {
	return &keycapv1alpha1.License{
		ObjectMeta: metav1.ObjectMeta{Name: "cap", Namespace: "acme", CreationTimestamp: metav1.NewTime(t0.Add(-time.Hour))},
		Spec: keycapv1alpha1.LicenseSpec{Product: "cap", MaxInstances: maxInstances,
			RefreshInterval: &metav1.Duration{Duration: time.Hour}},
		Status: keycapv1alpha1.LicenseStatus{Digests: []string{digest}, Activations: acts},
	}
}

func act(id string, activated, seen time.Time) keycapv1alpha1.LicenseActivation {
	return keycapv1alpha1.LicenseActivation{InstanceID: id, ActivatedAt: metav1.NewTime(activated), LastSeenAt: metav1.NewTime(seen)}
}

func ids(acts []keycapv1alpha1.LicenseActivation) []string {
	out := []string{}
	for _, a := range acts {
		out = append(out, a.InstanceID)
	}
	return out
}

func TestDecideActivation(t *testing.T) {
	now := t0
	recent := now.Add(-time.Hour)
	stale := now.Add(-3 * time.Hour) // heartbeatTimeout defaults to 3 × 1h

	cases := map[string]struct {
		lic      *keycapv1alpha1.License
		instance string
		reset    bool
		digest   string
		want     ActivationRefusal
		wantIDs  []string
	}{
		"a first instance is activated": {
			lic: testLicense(2), instance: "a", want: "", wantIDs: []string{"a"}},
		"a new instance within the cap is added": {
			lic: testLicense(2, act("a", recent, recent)), instance: "b", want: "", wantIDs: []string{"a", "b"}},
		"a new instance beyond the cap is refused": {
			lic: testLicense(2, act("a", recent, recent), act("b", recent, recent)), instance: "c", want: ActivationTooManyInstances},
		"an active instance re-activates even at the cap": {
			lic: testLicense(2, act("a", recent, recent), act("b", recent, recent)), instance: "b", want: "", wantIDs: []string{"a", "b"}},
		"an instance not seen within the heartbeat timeout frees its seat": {
			lic: testLicense(2, act("a", recent, recent), act("b", stale, stale)), instance: "c", want: "", wantIDs: []string{"a", "c"}},
		"reset deactivates the other instances": {
			lic: testLicense(2, act("a", recent, recent), act("b", recent, recent)), instance: "c", reset: true, want: "", wantIDs: []string{"c"}},
		"reset by an active instance keeps only it": {
			lic: testLicense(2, act("a", recent, recent), act("b", recent, recent)), instance: "b", reset: true, want: "", wantIDs: []string{"b"}},
		"a disabled licence is refused": {
			lic: func() *keycapv1alpha1.License { l := testLicense(2); l.Spec.Disabled = true; return l }(), instance: "a", want: ActivationDisabled},
		"an expired licence is refused": {
			lic: func() *keycapv1alpha1.License {
				l := testLicense(2)
				l.Spec.ExpiresAt = &metav1.Time{Time: now}
				return l
			}(), instance: "a", want: ActivationExpired},
		"a licence past its duration is refused": {
			lic: func() *keycapv1alpha1.License {
				l := testLicense(2)
				l.Spec.Duration = &metav1.Duration{Duration: 30 * time.Minute}
				return l
			}(), instance: "a", want: ActivationExpired},
		"a key the licence no longer lists is not found": {
			lic: testLicense(2), instance: "a", digest: "ff", want: ActivationNotFound},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			g := gomega.NewWithT(t)
			d := digest
			if tc.digest != "" {
				d = tc.digest
			}
			got := DecideActivation(tc.lic, d, tc.instance, tc.reset, now)
			g.Expect(got.Refusal).To(gomega.Equal(tc.want))
			if tc.want == "" {
				g.Expect(ids(got.Activations)).To(gomega.Equal(tc.wantIDs))
				g.Expect(got.Refresh).To(gomega.Equal(time.Hour))
			}
		})
	}
}

func TestDecideRefreshesLastSeenAndKeepsActivatedAt(t *testing.T) {
	g := gomega.NewWithT(t)
	first := t0.Add(-2 * time.Hour)
	got := DecideActivation(testLicense(1, act("a", first, first)), digest, "a", false, t0)
	g.Expect(got.Refusal).To(gomega.BeEmpty())
	g.Expect(got.Activations[0].ActivatedAt.Time).To(gomega.BeTemporally("==", first))
	g.Expect(got.Activations[0].LastSeenAt.Time).To(gomega.BeTemporally("==", t0))
	g.Expect(got.ExpiryDate).To(gomega.BeTemporally("==", t0.Add(3*time.Hour)), "a licence without expiry reports the lease end")
}

func TestPruneReportsNextRelease(t *testing.T) {
	g := gomega.NewWithT(t)
	live, next := Prune([]keycapv1alpha1.LicenseActivation{
		act("old", t0.Add(-5*time.Hour), t0.Add(-5*time.Hour)),
		act("a", t0, t0.Add(-time.Hour)),
		act("b", t0, t0.Add(-2*time.Hour)),
	}, 3*time.Hour, t0)
	g.Expect(ids(live)).To(gomega.Equal([]string{"a", "b"}))
	g.Expect(next).To(gomega.BeTemporally("==", t0.Add(time.Hour)))
}

func TestSeat(t *testing.T) {
	heartbeat := 3 * time.Hour
	older, newer := t0.Add(-2*time.Hour), t0.Add(-time.Hour)
	cases := map[string]struct {
		acts           []Activation
		instance       string
		maxInstances   int
		active, seated bool
	}{
		"an unknown instance has no seat": {
			acts: []Activation{{"a", older, t0}}, instance: "b", maxInstances: 2},
		"an instance not seen within the heartbeat timeout has lost its seat": {
			acts: []Activation{{"a", older, t0.Add(-heartbeat)}}, instance: "a", maxInstances: 2},
		"a live instance within the cap is seated": {
			acts: []Activation{{"a", older, t0}, {"b", newer, t0}}, instance: "b", maxInstances: 2, active: true, seated: true},
		"after the cap was lowered the newest live instance loses its seat": {
			acts: []Activation{{"a", older, t0}, {"b", newer, t0}}, instance: "b", maxInstances: 1, active: true},
		"after the cap was lowered the oldest live instance keeps its seat": {
			acts: []Activation{{"b", newer, t0}, {"a", older, t0}}, instance: "a", maxInstances: 1, active: true, seated: true},
		"a stale older instance does not count against the cap": {
			acts: []Activation{{"a", older, t0.Add(-heartbeat)}, {"b", newer, t0}}, instance: "b", maxInstances: 1, active: true, seated: true},
		"instances activated at the same instant hold seats by instance ID": {
			acts: []Activation{{"b", older, t0}, {"a", older, t0}}, instance: "b", maxInstances: 1, active: true},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			g := gomega.NewWithT(t)
			active, seated := Seat(tc.acts, tc.instance, heartbeat, tc.maxInstances, t0)
			g.Expect(active).To(gomega.Equal(tc.active))
			g.Expect(seated).To(gomega.Equal(tc.seated))
		})
	}
}

func TestExpiryTakesTheEarliestOfSpecAndStatus(t *testing.T) {
	created := metav1.NewTime(t0)
	specAt := metav1.NewTime(t0.Add(2 * time.Hour))
	recorded := metav1.NewTime(t0.Add(time.Hour))
	cases := map[string]struct {
		lifetime keycapv1alpha1.Lifetime
		recorded *metav1.Time
		want     time.Time
	}{
		"neither: never":                    {want: time.Time{}},
		"only the spec":                     {lifetime: keycapv1alpha1.Lifetime{ExpiresAt: &specAt}, want: specAt.Time},
		"only the status":                   {recorded: &recorded, want: recorded.Time},
		"a spec shortened before reconcile": {lifetime: keycapv1alpha1.Lifetime{ExpiresAt: &recorded}, recorded: &specAt, want: recorded.Time},
		"a spec extended before reconcile":  {lifetime: keycapv1alpha1.Lifetime{ExpiresAt: &specAt}, recorded: &recorded, want: recorded.Time},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			gomega.NewWithT(t).Expect(Expiry(created, tc.lifetime, tc.recorded)).To(gomega.BeTemporally("==", tc.want))
		})
	}
}

func TestReadyReasonOrder(t *testing.T) {
	past, future := t0.Add(-time.Minute), t0.Add(time.Hour)
	cases := map[string]struct {
		in   ReadyInput
		want string
	}{
		"usable":                               {in: ReadyInput{Now: t0, Expiry: future}, want: keycapv1alpha1.ReasonIssued},
		"never expires":                        {in: ReadyInput{Now: t0}, want: keycapv1alpha1.ReasonIssued},
		"disabled wins over expired":           {in: ReadyInput{Now: t0, Expiry: past, Disabled: true}, want: keycapv1alpha1.ReasonDisabled},
		"expired wins over an inactive parent": {in: ReadyInput{Now: t0, Expiry: past, ParentInactive: "gone"}, want: keycapv1alpha1.ReasonExpired},
		"an inactive parent":                   {in: ReadyInput{Now: t0, ParentInactive: "gone"}, want: keycapv1alpha1.ReasonParentInactive},
		"expiry reached exactly":               {in: ReadyInput{Now: t0, Expiry: t0}, want: keycapv1alpha1.ReasonExpired},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			reason, message := ReadyReason(tc.in)
			g := gomega.NewWithT(t)
			g.Expect(reason).To(gomega.Equal(tc.want))
			if reason != keycapv1alpha1.ReasonIssued {
				g.Expect(message).NotTo(gomega.BeEmpty())
			}
		})
	}
}

func TestRenewAt(t *testing.T) {
	iat := t0
	exp := t0.Add(3 * time.Hour)
	cases := map[string]struct {
		renewBefore time.Duration
		notAfter    *time.Time
		want        *time.Time
	}{
		"a third of the lifetime by default":            {want: ptrTime(t0.Add(2 * time.Hour))},
		"renewBefore":                                   {renewBefore: 30 * time.Minute, want: ptrTime(t0.Add(150 * time.Minute))},
		"renewBefore longer than the lifetime":          {renewBefore: 5 * time.Hour, want: ptrTime(t0)},
		"a token cut short by expiresAt is not renewed": {notAfter: ptrTime(exp), want: nil},
		"a token ending before expiresAt is renewed":    {notAfter: ptrTime(exp.Add(time.Hour)), want: ptrTime(t0.Add(2 * time.Hour))},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			g := gomega.NewWithT(t)
			got := RenewAt(iat, exp, tc.renewBefore, tc.notAfter)
			if tc.want == nil {
				g.Expect(got).To(gomega.BeNil())
				return
			}
			g.Expect(got).NotTo(gomega.BeNil())
			g.Expect(*got).To(gomega.BeTemporally("==", *tc.want))
		})
	}
	g := gomega.NewWithT(t)
	g.Expect(TokenExpiry(iat, 4*time.Hour, ptrTime(exp))).To(gomega.BeTemporally("==", exp), "no token outlives its AppToken")
	g.Expect(TokenExpiry(iat, time.Hour, ptrTime(exp))).To(gomega.BeTemporally("==", t0.Add(time.Hour)))
	g.Expect(TokenLifetime(&keycapv1alpha1.AppTokenSpec{})).To(gomega.Equal(keycapv1alpha1.DefaultAppTokenDuration))
}

package activation

import (
	"testing"
	"time"

	"github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	keycapv1alpha1 "github.com/keycap-dev/keycap/api/v1alpha1"
)

var t0 = time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)

const digest = "0000000000000000000000000000000000000000000000000000000000000001"

func license(maxInstances int32, acts ...keycapv1alpha1.LicenseActivation) *keycapv1alpha1.License {
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

func TestDecide(t *testing.T) {
	now := t0
	recent := now.Add(-time.Hour)
	stale := now.Add(-3 * time.Hour) // heartbeatTimeout defaults to 3 × 1h

	cases := map[string]struct {
		lic      *keycapv1alpha1.License
		instance string
		reset    bool
		digest   string
		want     Reason
		wantIDs  []string
	}{
		"a first instance is activated": {
			lic: license(2), instance: "a", want: ReasonOK, wantIDs: []string{"a"}},
		"a new instance within the cap is added": {
			lic: license(2, act("a", recent, recent)), instance: "b", want: ReasonOK, wantIDs: []string{"a", "b"}},
		"a new instance beyond the cap is refused": {
			lic: license(2, act("a", recent, recent), act("b", recent, recent)), instance: "c", want: ReasonTooManyInstances},
		"an active instance re-activates even at the cap": {
			lic: license(2, act("a", recent, recent), act("b", recent, recent)), instance: "b", want: ReasonOK, wantIDs: []string{"a", "b"}},
		"an instance not seen within the heartbeat timeout frees its seat": {
			lic: license(2, act("a", recent, recent), act("b", stale, stale)), instance: "c", want: ReasonOK, wantIDs: []string{"a", "c"}},
		"reset deactivates the other instances": {
			lic: license(2, act("a", recent, recent), act("b", recent, recent)), instance: "c", reset: true, want: ReasonOK, wantIDs: []string{"c"}},
		"reset by an active instance keeps only it": {
			lic: license(2, act("a", recent, recent), act("b", recent, recent)), instance: "b", reset: true, want: ReasonOK, wantIDs: []string{"b"}},
		"a disabled licence is refused": {
			lic: func() *keycapv1alpha1.License { l := license(2); l.Spec.Disabled = true; return l }(), instance: "a", want: ReasonDisabled},
		"an expired licence is refused": {
			lic: func() *keycapv1alpha1.License {
				l := license(2)
				l.Spec.ExpiresAt = &metav1.Time{Time: now}
				return l
			}(), instance: "a", want: ReasonExpired},
		"a licence past its duration is refused": {
			lic: func() *keycapv1alpha1.License {
				l := license(2)
				l.Spec.Duration = &metav1.Duration{Duration: 30 * time.Minute}
				return l
			}(), instance: "a", want: ReasonExpired},
		"a key the licence no longer lists is not found": {
			lic: license(2), instance: "a", digest: "ff", want: ReasonNotFound},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			g := gomega.NewWithT(t)
			d := digest
			if tc.digest != "" {
				d = tc.digest
			}
			got := Decide(tc.lic, d, tc.instance, tc.reset, now)
			g.Expect(got.Reason).To(gomega.Equal(tc.want))
			if tc.want == ReasonOK {
				g.Expect(ids(got.Activations)).To(gomega.Equal(tc.wantIDs))
				g.Expect(got.Refresh).To(gomega.Equal(time.Hour))
			}
		})
	}
}

func TestDecideRefreshesLastSeenAndKeepsActivatedAt(t *testing.T) {
	g := gomega.NewWithT(t)
	first := t0.Add(-2 * time.Hour)
	got := Decide(license(1, act("a", first, first)), digest, "a", false, t0)
	g.Expect(got.Reason).To(gomega.Equal(ReasonOK))
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

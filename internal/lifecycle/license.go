package lifecycle

import (
	"slices"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	keycapv1alpha1 "github.com/keycap-dev/keycap/api/v1alpha1"
)

// Defaults of a License's timing fields (the CRD defaults refreshInterval too).
const (
	DefaultRefreshInterval = 24 * time.Hour
	// HeartbeatMultiple times refreshInterval is the default heartbeatTimeout.
	HeartbeatMultiple = 3
)

// RefreshInterval returns how often an instance should activate again.
func RefreshInterval(spec *keycapv1alpha1.LicenseSpec) time.Duration {
	if spec.RefreshInterval != nil && spec.RefreshInterval.Duration > 0 {
		return spec.RefreshInterval.Duration
	}
	return DefaultRefreshInterval
}

// HeartbeatTimeout returns how long an instance keeps its seat without checking in.
func HeartbeatTimeout(spec *keycapv1alpha1.LicenseSpec) time.Duration {
	if spec.HeartbeatTimeout != nil && spec.HeartbeatTimeout.Duration > 0 {
		return spec.HeartbeatTimeout.Duration
	}
	return HeartbeatMultiple * RefreshInterval(spec)
}

// MaxInstances returns the seat cap (at least 1; the schema's minimum and default is 1).
func MaxInstances(spec *keycapv1alpha1.LicenseSpec) int {
	return max(int(spec.MaxInstances), 1)
}

// Activation is one activated instance, as the seat rules need it.
type Activation struct {
	InstanceID              string
	ActivatedAt, LastSeenAt time.Time
}

// ActivationsOf converts status.activations.
func ActivationsOf(acts []keycapv1alpha1.LicenseActivation) []Activation {
	if len(acts) == 0 {
		return nil
	}
	out := make([]Activation, len(acts))
	for i, a := range acts {
		out[i] = Activation{InstanceID: a.InstanceID, ActivatedAt: a.ActivatedAt.Time, LastSeenAt: a.LastSeenAt.Time}
	}
	return out
}

// Live reports whether an instance last seen at lastSeen still holds its seat at now.
func Live(lastSeen time.Time, heartbeat time.Duration, now time.Time) bool {
	return now.Before(lastSeen.Add(heartbeat))
}

// Prune returns the activations still live at now, and when the first of them will be released
// (zero when there are none).
func Prune(acts []keycapv1alpha1.LicenseActivation, heartbeat time.Duration, now time.Time) (live []keycapv1alpha1.LicenseActivation, nextRelease time.Time) {
	for _, a := range acts {
		if !Live(a.LastSeenAt.Time, heartbeat, now) {
			continue
		}
		live = append(live, a)
		if release := a.LastSeenAt.Add(heartbeat); nextRelease.IsZero() || release.Before(nextRelease) {
			nextRelease = release
		}
	}
	return live, nextRelease
}

// Seat is the one rule of whether an instance may use a licence at now: active when it holds a
// live activation (seen within the heartbeat timeout), seated when it is also within the seat
// cap. Live activations hold seats oldest first (by activatedAt, then instance ID), so when
// maxInstances is lowered below the number of live instances, the newest ones lose their seat
// at once rather than whichever the caller happened to ask about.
func Seat(acts []Activation, instanceID string, heartbeat time.Duration, maxInstances int, now time.Time) (active, seated bool) {
	mine := slices.IndexFunc(acts, func(a Activation) bool { return a.InstanceID == instanceID })
	if mine < 0 || !Live(acts[mine].LastSeenAt, heartbeat, now) {
		return false, false
	}
	m := &acts[mine]
	older := 0
	for i := range acts {
		a := &acts[i]
		if i != mine && Live(a.LastSeenAt, heartbeat, now) &&
			(a.ActivatedAt.Before(m.ActivatedAt) || a.ActivatedAt.Equal(m.ActivatedAt) && a.InstanceID < m.InstanceID) {
			older++
		}
	}
	return true, older < maxInstances
}

// ActivationRefusal says why an activation is refused; empty when it is allowed.
type ActivationRefusal string

// Refusals of DecideActivation. The activation endpoint maps them to its reason codes.
const (
	ActivationNotFound         ActivationRefusal = "NOT_FOUND"
	ActivationDisabled         ActivationRefusal = "DISABLED"
	ActivationExpired          ActivationRefusal = "EXPIRED"
	ActivationTooManyInstances ActivationRefusal = "TOO_MANY_INSTANCES"
)

// ActivationDecision is the outcome of DecideActivation.
type ActivationDecision struct {
	// Refusal is empty when the activation is allowed.
	Refusal ActivationRefusal
	// Activations is the new status.activations when allowed.
	Activations []keycapv1alpha1.LicenseActivation
	// ExpiryDate is what the response reports: the licence's expiry, or for a licence that never
	// expires the end of this activation's lease (now + heartbeatTimeout).
	ExpiryDate time.Time
	// Refresh is when the instance should activate again.
	Refresh time.Duration
}

// DecideActivation decides the activation of instanceID on lic, found by the key digest, at
// now. With reset, every other activation is released. It does not write anything.
func DecideActivation(lic *keycapv1alpha1.License, digest, instanceID string, reset bool, now time.Time) ActivationDecision {
	if !slices.Contains(lic.Status.Digests, digest) || lic.DeletionTimestamp != nil {
		return ActivationDecision{Refusal: ActivationNotFound}
	}
	if lic.Spec.Disabled {
		return ActivationDecision{Refusal: ActivationDisabled}
	}
	expiry := CredentialExpiry(lic)
	if Expired(now, expiry) {
		return ActivationDecision{Refusal: ActivationExpired}
	}
	heartbeat := HeartbeatTimeout(&lic.Spec)
	live, _ := Prune(lic.Status.Activations, heartbeat, now)

	nowMeta := metav1.NewTime(now.UTC().Truncate(time.Second))
	var acts []keycapv1alpha1.LicenseActivation
	i := slices.IndexFunc(live, func(a keycapv1alpha1.LicenseActivation) bool { return a.InstanceID == instanceID })
	switch {
	case i >= 0 && reset:
		acts = []keycapv1alpha1.LicenseActivation{{InstanceID: instanceID, ActivatedAt: live[i].ActivatedAt, LastSeenAt: nowMeta}}
	case i >= 0:
		acts = slices.Clone(live)
		acts[i].LastSeenAt = nowMeta
	case reset:
		acts = []keycapv1alpha1.LicenseActivation{{InstanceID: instanceID, ActivatedAt: nowMeta, LastSeenAt: nowMeta}}
	case len(live) >= MaxInstances(&lic.Spec):
		return ActivationDecision{Refusal: ActivationTooManyInstances}
	default:
		acts = append(slices.Clone(live), keycapv1alpha1.LicenseActivation{InstanceID: instanceID, ActivatedAt: nowMeta, LastSeenAt: nowMeta})
	}
	if expiry.IsZero() {
		expiry = now.Add(heartbeat)
	}
	return ActivationDecision{Activations: acts, ExpiryDate: expiry, Refresh: RefreshInterval(&lic.Spec)}
}

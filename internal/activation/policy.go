// Package activation decides and records licence activations: the POST /api/commercial/activate
// endpoint, and the pure rules (expiry, heartbeat timeout, seat cap) the License controller and
// the data plane share.
//
// maxInstances holds exactly under concurrency because every activation is a read-modify-write of
// the License's status.activations guarded by its resourceVersion: the status patch carries the
// resourceVersion that was read, the apiserver refuses it with a conflict when any other writer
// got there first, and the activation is decided again on a fresh read (never from a cache).
package activation

import (
	"slices"
	"time"

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

// MaxInstances returns the seat cap (at least 1).
func MaxInstances(spec *keycapv1alpha1.LicenseSpec) int {
	return max(int(spec.MaxInstances), 1)
}

// Expiry returns when lic expires: status.expiresAt as the controller wrote it, else spec.expiresAt,
// else creation + spec.duration. ok is false when it never expires.
func Expiry(lic *keycapv1alpha1.License) (at time.Time, ok bool) {
	switch {
	case lic.Status.ExpiresAt != nil:
		return lic.Status.ExpiresAt.Time, true
	case lic.Spec.ExpiresAt != nil:
		return lic.Spec.ExpiresAt.Time, true
	case lic.Spec.Duration != nil:
		return lic.CreationTimestamp.Add(lic.Spec.Duration.Duration), true
	}
	return time.Time{}, false
}

// Live reports whether an activation still holds its seat at now.
func Live(a keycapv1alpha1.LicenseActivation, timeout time.Duration, now time.Time) bool {
	return now.Before(a.LastSeenAt.Add(timeout))
}

// Prune returns the activations still live at now, and when the first of them will be released
// (zero when there are none).
func Prune(acts []keycapv1alpha1.LicenseActivation, timeout time.Duration, now time.Time) (live []keycapv1alpha1.LicenseActivation, nextRelease time.Time) {
	for _, a := range acts {
		if !Live(a, timeout, now) {
			continue
		}
		live = append(live, a)
		if release := a.LastSeenAt.Add(timeout); nextRelease.IsZero() || release.Before(nextRelease) {
			nextRelease = release
		}
	}
	return live, nextRelease
}

// InstanceActive reports whether instanceID holds a live activation of lic at now. The data plane
// allows licensekey + instanceid requests only then.
func InstanceActive(lic *keycapv1alpha1.License, instanceID string, now time.Time) bool {
	timeout := HeartbeatTimeout(&lic.Spec)
	for _, a := range lic.Status.Activations {
		if a.InstanceID == instanceID {
			return Live(a, timeout, now)
		}
	}
	return false
}

// Decision is the outcome of Decide.
type Decision struct {
	// Reason is ReasonOK or why the activation is refused.
	Reason Reason
	// Activations is the new status.activations when Reason is ReasonOK.
	Activations []keycapv1alpha1.LicenseActivation
	// ExpiryDate is what the response reports: the licence's expiry, or for a licence that never
	// expires the end of this activation's lease (now + heartbeatTimeout).
	ExpiryDate time.Time
	// Refresh is when the instance should activate again.
	Refresh time.Duration
}

// Decide decides the activation of instanceID on lic, found by the key digest, at now. It does not
// write anything.
func Decide(lic *keycapv1alpha1.License, digest, instanceID string, reset bool, now time.Time) Decision {
	if !slices.Contains(lic.Status.Digests, digest) || lic.DeletionTimestamp != nil {
		return Decision{Reason: ReasonNotFound}
	}
	if lic.Spec.Disabled {
		return Decision{Reason: ReasonDisabled}
	}
	expiry, expires := Expiry(lic)
	if expires && !now.Before(expiry) {
		return Decision{Reason: ReasonExpired}
	}
	timeout := HeartbeatTimeout(&lic.Spec)
	live, _ := Prune(lic.Status.Activations, timeout, now)

	nowMeta := metaTime(now)
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
		return Decision{Reason: ReasonTooManyInstances}
	default:
		acts = append(slices.Clone(live), keycapv1alpha1.LicenseActivation{InstanceID: instanceID, ActivatedAt: nowMeta, LastSeenAt: nowMeta})
	}
	if !expires {
		expiry = now.Add(timeout)
	}
	return Decision{Reason: ReasonOK, Activations: acts, ExpiryDate: expiry, Refresh: RefreshInterval(&lic.Spec)}
}

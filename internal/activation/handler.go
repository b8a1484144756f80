// Package activation serves licence activations: the POST /api/commercial/activate endpoint on
// the data plane's HTTP port. The rules (expiry, heartbeat, seat cap) are lifecycle's
// (lifecycle.DecideActivation); this package reads, decides and writes.
//
// maxInstances holds exactly under concurrency because every activation is a read-modify-write of
// the License's status.activations guarded by its resourceVersion: the status patch carries the
// resourceVersion that was read, the apiserver refuses it with a conflict when any other writer
// got there first, and the activation is decided again on a fresh read (never from a cache).
package activation

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	keycapv1alpha1 "github.com/keycap-dev/keycap/api/v1alpha1"
	"github.com/keycap-dev/keycap/internal/authz/wire"
	"github.com/keycap-dev/keycap/internal/keys"
	"github.com/keycap-dev/keycap/internal/lifecycle"
)

// Path is where Handler is mounted on the data plane's HTTP port.
const Path = "/api/commercial/activate"

// Limits of a request.
const (
	maxWriteAttempts  = 64
	conflictBackoffMS = 20
)

// LicenseFinder finds the License listing a key digest (lowercase hex SHA-256) in
// status.digests. The data plane's index implements it; the Activator re-reads the License from
// the apiserver before deciding, so the finder may be slightly stale.
type LicenseFinder interface {
	FindLicense(digest string) (types.NamespacedName, bool)
}

// FinderFunc adapts a function to LicenseFinder.
type FinderFunc func(digest string) (types.NamespacedName, bool)

// FindLicense calls f.
func (f FinderFunc) FindLicense(digest string) (types.NamespacedName, bool) { return f(digest) }

var activationsTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
	Name: "keycap_license_activations_total",
	Help: "Licence activation requests by outcome reason.",
}, []string{"reason"})

func init() { metrics.Registry.MustRegister(activationsTotal) }

// Activator serves licence activations. It is safe for concurrent use.
type Activator struct {
	finder LicenseFinder
	reader client.Reader
	writer client.Client
	clock  clock.PassiveClock
}

// NewActivator returns an Activator that finds licences with finder, reads them fresh through
// reader (pass the manager's APIReader: a cached read would decide on stale activations and
// conflict forever) and writes their status through writer. clk defaults to the real clock.
func NewActivator(finder LicenseFinder, reader client.Reader, writer client.Client, clk clock.PassiveClock) *Activator {
	if clk == nil {
		clk = clock.RealClock{}
	}
	return &Activator{finder: finder, reader: reader, writer: writer, clock: clk}
}

// Result is a successful activation.
type Result struct {
	License    types.NamespacedName
	ExpiryDate time.Time
	Refresh    time.Duration
}

// Activate activates instanceID on the licence whose key is licenseKey. It returns the reason
// (ReasonOK on success) and an error only for failures of the apiserver (with ReasonBusy).
func (a *Activator) Activate(ctx context.Context, licenseKey, instanceID string, reset bool) (Result, Reason, error) {
	if keys.Check(licenseKey) != nil || keys.Prefix(licenseKey) != keycapv1alpha1.LicenseKeyPrefix {
		return Result{}, ReasonMalformed, nil
	}
	digest := keys.Digest(licenseKey)
	name, ok := a.finder.FindLicense(digest)
	if !ok {
		return Result{}, ReasonNotFound, nil
	}
	for attempt := 0; attempt < maxWriteAttempts; attempt++ {
		lic := &keycapv1alpha1.License{}
		if err := a.reader.Get(ctx, name, lic); apierrors.IsNotFound(err) {
			return Result{}, ReasonNotFound, nil
		} else if err != nil {
			return Result{}, ReasonBusy, fmt.Errorf("reading License %s: %w", name, err)
		}
		now := a.clock.Now()
		d := lifecycle.DecideActivation(lic, digest, instanceID, reset, now)
		if d.Refusal != "" {
			return Result{}, refusals[d.Refusal], nil
		}
		updated := lic.DeepCopy()
		updated.Status.Activations = d.Activations
		// The optimistic lock puts the resourceVersion read above into the patch: the apiserver
		// applies it only if nobody wrote the License since.
		patch := client.MergeFromWithOptions(lic, client.MergeFromWithOptimisticLock{})
		err := a.writer.Status().Patch(ctx, updated, patch)
		if err == nil {
			return Result{License: name, ExpiryDate: d.ExpiryDate, Refresh: d.Refresh}, ReasonOK, nil
		}
		if apierrors.IsNotFound(err) {
			return Result{}, ReasonNotFound, nil
		}
		if !apierrors.IsConflict(err) {
			return Result{}, ReasonBusy, fmt.Errorf("writing the activation of License %s: %w", name, err)
		}
		// Someone else wrote first: decide again on a fresh read, after a short random pause so
		// that concurrent activations do not retry in lockstep.
		select {
		case <-ctx.Done():
			return Result{}, ReasonBusy, ctx.Err()
		case <-time.After(time.Duration(rand.IntN(conflictBackoffMS)+1) * time.Millisecond): //nolint:gosec // jitter, not a secret
		}
	}
	return Result{}, ReasonBusy, errors.New("too many concurrent writes to the License")
}

// ActivatedBody is the body of a successful activation.
type ActivatedBody struct {
	Message string `json:"message"`
	// ExpiryDate is in unix seconds.
	ExpiryDate int64 `json:"expiryDate"`
	// Refresh is in seconds.
	Refresh int64 `json:"refresh"`
}

// refusals maps lifecycle's activation refusals to the endpoint's reasons.
var refusals = map[lifecycle.ActivationRefusal]Reason{
	lifecycle.ActivationNotFound:         ReasonNotFound,
	lifecycle.ActivationDisabled:         ReasonDisabled,
	lifecycle.ActivationExpired:          ReasonExpired,
	lifecycle.ActivationTooManyInstances: ReasonTooManyInstances,
}

// ServeHTTP handles POST Path: headers licensekey and instanceid, body {"reset": bool} (an empty
// body means reset false).
func (a *Activator) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		writeJSON(w, http.StatusMethodNotAllowed, wire.ErrorBody{Error: wire.ErrorDetail{Code: wire.ErrorCode(http.StatusMethodNotAllowed), Message: "Use POST", Reason: string(ReasonBadRequest)}})
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, wire.MaxActivationBody+1))
	if err != nil {
		a.refuse(w, ReasonBadRequest, wire.ErrActivationBody.Message)
		return
	}
	req, err := wire.ParseActivation(r.Header, body)
	if err != nil {
		a.refuse(w, ReasonBadRequest, err.Error())
		return
	}
	res, reason, err := a.Activate(r.Context(), req.LicenseKey, req.InstanceID, req.Reset)
	if err != nil {
		// Never the key: only the licence's name, which the finder returned.
		log.FromContext(r.Context()).Error(err, "licence activation failed", "license", res.License)
	}
	if reason != ReasonOK {
		if reason == ReasonBusy {
			w.Header().Set("Retry-After", "1")
		}
		a.refuse(w, reason, "")
		return
	}
	activationsTotal.WithLabelValues(string(ReasonOK)).Inc()
	writeJSON(w, http.StatusOK, ActivatedBody{Message: ReasonOK.message(), ExpiryDate: res.ExpiryDate.Unix(),
		Refresh: int64(res.Refresh / time.Second)})
}

func (a *Activator) refuse(w http.ResponseWriter, reason Reason, message string) {
	activationsTotal.WithLabelValues(string(reason)).Inc()
	if message == "" {
		message = reason.message()
	}
	status := reason.HTTPStatus()
	w.Header().Set(wire.HeaderReason, string(reason))
	writeJSON(w, status, wire.ErrorBody{Error: wire.ErrorDetail{Code: wire.ErrorCode(status), Message: message, Reason: string(reason)}})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, _ := json.Marshal(v)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

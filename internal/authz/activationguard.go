package authz

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"math"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"golang.org/x/time/rate"
	"k8s.io/utils/clock"

	"github.com/keycap-dev/keycap/internal/authz/wire"
)

// Licence activation's bounds. Activation reads and writes the License on the apiserver, so a
// client (or many) must not be able to turn requests into apiserver load, and a slow or frozen
// apiserver must not hold requests open.
var activationLimits = struct {
	// deadline bounds one activation (its reads, writes and conflict retries); past it the
	// activation answers 503 BUSY with Retry-After.
	deadline time.Duration
	// perAddress and perLicense are token buckets: a client address, and a licence key (by
	// digest: whatever its instances, one licence is one License object), may activate burst
	// times at once, then every per.
	perAddress, perLicense struct {
		burst int
		every time.Duration
	}
}{
	deadline: 10 * time.Second,
	perAddress: struct {
		burst int
		every time.Duration
	}{burst: 20, every: 200 * time.Millisecond},
	perLicense: struct {
		burst int
		every time.Duration
	}{burst: 20, every: 200 * time.Millisecond},
}

// activationGuard is what the HTTP port puts in front of licence activation: readiness (503
// NOT_READY with Retry-After until the data plane is ready: its index may not know the licence
// yet), a rate limit per client address and per licence (429 RATE_LIMITED with Retry-After) and
// a deadline.
type activationGuard struct {
	next      http.Handler
	ready     func() bool
	clock     clock.PassiveClock
	byAddress *keyedLimiter
	byLicense *keyedLimiter
}

func (dp *DataPlane) guardActivation(next http.Handler) http.Handler {
	clk := dp.authz.clock
	if clk == nil {
		clk = clock.RealClock{}
	}
	l := activationLimits
	return &activationGuard{
		next:      next,
		ready:     dp.ready,
		clock:     clk,
		byAddress: newKeyedLimiter(l.perAddress.burst, l.perAddress.every),
		byLicense: newKeyedLimiter(l.perLicense.burst, l.perLicense.every),
	}
}

func (g *activationGuard) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !g.ready() {
		refuseActivation(w, http.StatusServiceUnavailable, wire.ReasonNotReady.String(), "Authorization service not ready", 5*time.Second)
		return
	}
	now := g.clock.Now()
	if wait, ok := g.byAddress.allow(clientAddress(r), now); !ok {
		refuseActivation(w, http.StatusTooManyRequests, "RATE_LIMITED", "Too many activations from this address", wait)
		return
	}
	if key := r.Header.Get(wire.HeaderLicenseKey); key != "" {
		d := sha256.Sum256([]byte(wire.TrimSpace(key)))
		if wait, ok := g.byLicense.allow(string(d[:]), now); !ok {
			refuseActivation(w, http.StatusTooManyRequests, "RATE_LIMITED", "Too many activations of this license", wait)
			return
		}
	}
	ctx, cancel := context.WithTimeout(r.Context(), activationLimits.deadline)
	defer cancel()
	g.next.ServeHTTP(w, r.WithContext(ctx))
}

// refuseActivation answers an activation the guard refuses, with keycap's JSON body, the reason
// in x-keycap-reason and Retry-After (whole seconds, at least 1).
func refuseActivation(w http.ResponseWriter, status int, reason, message string, retryAfter time.Duration) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("Retry-After", strconv.Itoa(max(1, int(math.Ceil(retryAfter.Seconds())))))
	h.Set(wire.HeaderReason, reason)
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(wire.ErrorBody{Error: wire.ErrorDetail{Code: wire.ErrorCode(status), Message: message, Reason: reason}})
}

// clientAddress is the peer's IP (a proxy in front makes every client one address).
func clientAddress(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// maxLimitedKeys bounds a keyedLimiter's memory: past it, keys whose bucket is full are
// forgotten (they would start full anyway), and if none is, all are.
const maxLimitedKeys = 1 << 16

// keyedLimiter is a token bucket per key.
type keyedLimiter struct {
	limit rate.Limit
	burst int
	mu    sync.Mutex
	byKey map[string]*rate.Limiter
}

func newKeyedLimiter(burst int, every time.Duration) *keyedLimiter {
	return &keyedLimiter{limit: rate.Every(every), burst: burst, byKey: map[string]*rate.Limiter{}}
}

// allow takes a token of key's bucket at now; when there is none, it says how long until there is.
func (l *keyedLimiter) allow(key string, now time.Time) (time.Duration, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	lim, ok := l.byKey[key]
	if !ok {
		if len(l.byKey) >= maxLimitedKeys {
			for k, old := range l.byKey {
				if old.TokensAt(now) >= float64(l.burst) {
					delete(l.byKey, k)
				}
			}
			if len(l.byKey) >= maxLimitedKeys {
				clear(l.byKey)
			}
		}
		lim = rate.NewLimiter(l.limit, l.burst)
		lim.SetLimitAt(now, l.limit) // start the bucket's clock at now (a fake clock in tests)
		l.byKey[key] = lim
	}
	if lim.AllowN(now, 1) {
		return 0, true
	}
	r := lim.ReserveN(now, 1)
	wait := r.DelayFrom(now)
	r.CancelAt(now)
	return wait, false
}

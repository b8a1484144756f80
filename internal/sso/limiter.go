package sso

import (
	"math"
	"sync"
	"time"

	"k8s.io/utils/clock"
)

// maxTrackedClients bounds the limiter's memory; past it, clients whose bucket has refilled are
// forgotten (they would start full anyway).
const maxTrackedClients = 1 << 16

// failureLimiter is a token bucket per client address that only failed logins drain: a client
// may fail burst times in a row, then once per every; successful logins cost nothing.
type failureLimiter struct {
	burst float64
	every time.Duration
	clock clock.PassiveClock

	mu      sync.Mutex
	buckets map[string]*bucket
}

type bucket struct {
	tokens float64
	last   time.Time
}

func newFailureLimiter(burst int, every time.Duration, clk clock.PassiveClock) *failureLimiter {
	return &failureLimiter{burst: float64(burst), every: every, clock: clk, buckets: map[string]*bucket{}}
}

// refill brings b up to now; the caller holds mu.
func (l *failureLimiter) refill(b *bucket, now time.Time) {
	if elapsed := now.Sub(b.last); elapsed > 0 {
		b.tokens = math.Min(l.burst, b.tokens+float64(elapsed)/float64(l.every))
		b.last = now
	}
}

// allowed reports whether client may try to log in now, and if not, how long until it may.
func (l *failureLimiter) allowed(client string) (bool, time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	b, ok := l.buckets[client]
	if !ok {
		return true, 0
	}
	l.refill(b, l.clock.Now())
	if b.tokens >= 1 {
		return true, 0
	}
	return false, time.Duration((1 - b.tokens) * float64(l.every))
}

// failed records a failed login of client.
func (l *failureLimiter) failed(client string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.clock.Now()
	b, ok := l.buckets[client]
	if !ok {
		if len(l.buckets) >= maxTrackedClients {
			for k, old := range l.buckets {
				if l.refill(old, now); old.tokens >= l.burst {
					delete(l.buckets, k)
				}
			}
		}
		b = &bucket{tokens: l.burst, last: now}
		l.buckets[client] = b
	}
	l.refill(b, now)
	b.tokens = math.Max(b.tokens-1, 0)
}

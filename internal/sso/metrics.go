package sso

import (
	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
)

// Results of a login (the result label of keycap_sso_logins_total).
const (
	ResultOK          = "ok"
	ResultInvalid     = "invalid"
	ResultUsed        = "used"
	ResultRateLimited = "rate_limited"
	ResultUnavailable = "unavailable"
)

// Results of a session check (keycap_sso_session_checks_total).
const (
	// SessionAllowed: the cookie opened and its credential allowed the request.
	SessionAllowed = "allowed"
	// SessionInvalid: the cookie did not open (forged, truncated, unknown key, malformed).
	SessionInvalid = "invalid"
	// SessionExpired: the cookie is past its expiry.
	SessionExpired = "expired"
	// SessionEnded: the cookie opened but its credential is gone, inactive, or has ended its
	// sessions (log out everywhere, rotation, an agent's parent inactive).
	SessionEnded = "ended"
	// SessionDenied: the session stands but the route refused it (scope, namespace, CSRF).
	SessionDenied = "denied"
)

var (
	loginsTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "keycap_sso_logins_total",
		Help: "SSO logins by endpoint and result (ok, invalid, used, rate_limited, unavailable).",
	}, []string{"endpoint", "result"})
	sessionChecksTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "keycap_sso_session_checks_total",
		Help: "Checks authenticated by a session cookie, by result (allowed, invalid, expired, ended, denied).",
	}, []string{"result"})
)

func init() {
	metrics.Registry.MustRegister(loginsTotal, sessionChecksTotal)
}

// SessionCheckCounters are the session-check counters resolved once, so the data plane's hot
// path increments a counter without a label lookup.
var SessionCheckCounters = map[string]prometheus.Counter{}

func init() {
	for _, r := range []string{SessionAllowed, SessionInvalid, SessionExpired, SessionEnded, SessionDenied} {
		SessionCheckCounters[r] = sessionChecksTotal.WithLabelValues(r)
	}
}

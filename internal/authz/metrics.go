package authz

import (
	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/keycap-dev/keycap/internal/authz/wire"
)

// Protocols, the protocol label of the data plane's metrics.
const (
	protocolGRPC = "grpc"
	protocolHTTP = "http"
)

var (
	checksTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "keycap_authz_checks_total",
		Help: "Authorization checks answered by the data plane, by protocol (grpc, http), result (allowed, denied) and reason code.",
	}, []string{"protocol", "result", "reason"})
	checkDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "keycap_authz_check_duration_seconds",
		Help:    "Time the data plane spent deciding a check, by protocol; transport time excluded.",
		Buckets: []float64{5e-6, 10e-6, 25e-6, 50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 5e-3, 25e-3},
	}, []string{"protocol"})
	indexedCredentials = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "keycap_authz_indexed_credentials",
		Help: "Credentials in the data plane's index, by kind.",
	}, []string{"kind"})
	lastUsedWrites = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "keycap_authz_last_used_writes_total",
		Help: "status.lastUsedAt patches written by the data plane, by result (ok, error).",
	}, []string{"result"})

	// checkCounters are checksTotal's children resolved once, so the request path does no label
	// hashing: [protocol][reason].
	checkCounters  [2][wire.ReasonCount]prometheus.Counter
	durationByProt [2]prometheus.Observer
)

func init() {
	metrics.Registry.MustRegister(checksTotal, checkDuration, indexedCredentials, lastUsedWrites)
	for p, proto := range []string{protocolGRPC, protocolHTTP} {
		for r := wire.Reason(0); r < wire.ReasonCount; r++ {
			result := "denied"
			if r == wire.ReasonOK {
				result = "allowed"
			}
			checkCounters[p][r] = checksTotal.WithLabelValues(proto, result, r.String())
		}
		durationByProt[p] = checkDuration.WithLabelValues(proto)
	}
}

package api

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the API's: every call counted by route and HTTP status, and
// timed by route. A route is the pattern that served the call (POST
// /v1/groups/{conv}/invite), never its ids; "unknown" for a path or method
// the API does not serve.
type metrics struct {
	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "inboxd", Subsystem: "api", Name: "requests_total",
			Help: "Server API calls answered, by route and HTTP status.",
		}, []string{"route", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "inboxd", Subsystem: "api", Name: "request_duration_seconds",
			Help: "Time from a server API call's arrival to its answer, by route.",
			// A call that writes waits for a group commit: milliseconds.
			Buckets: prometheus.ExponentialBuckets(0.0005, 2.5, 10),
		}, []string{"route"}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.requests, m.latency} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("api: register metrics: %w", err)
		}
	}
	return m, nil
}

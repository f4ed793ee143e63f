package peer

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/inboxd/inboxd/wire"
)

// Results of a call, the values of inboxd_peer_calls_total's result label.
const (
	callOK          = "ok"          // the node answered with a response body
	callError       = "error"       // the node answered with an error code
	callQueueFull   = "queue_full"  // MaxInFlight calls were in flight: not sent
	callUnavailable = "unavailable" // the node unreachable, or the connection lost
	callTimeout     = "timeout"     // the caller's deadline passed
	callCanceled    = "canceled"    // the caller gave up
	callClosed      = "closed"      // the pool closed
	callInvalid     = "invalid"     // ErrTooLarge, ErrCommand
)

// Results of a request served, the values of inboxd_peer_requests_total's
// result label.
const (
	servedOK      = "ok"      // the handler answered a body
	servedError   = "error"   // the handler answered an error
	servedBusy    = "busy"    // the request queue was full: UNAVAILABLE without running
	servedUnknown = "unknown" // a command outside the handlers' range
)

// Reasons of inboxd_peer_handshake_failures_total.
const (
	handshakeBadProof = "bad_proof" // the other side does not hold the secret
	handshakeProtocol = "protocol"  // frames that are not the handshake's
	handshakeIO       = "io"        // the connection failed or timed out
)

var handshakeReasons = []string{handshakeBadProof, handshakeProtocol, handshakeIO}

// latencyBuckets cover a loopback round trip of tens of microseconds up to
// the default call timeout.
var latencyBuckets = []float64{.00005, .0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}

// Commands are labelled by number: which commands run over the transport is
// its users' business, and the range is bounded.
func cmdLabel(c wire.Command) string { return strconv.Itoa(int(c)) }

func opts(name, help string) prometheus.Opts {
	return prometheus.Opts{Namespace: "inboxd", Subsystem: "peer", Name: name, Help: help}
}

// register registers cs with reg; a nil reg leaves them unregistered.
func register(reg prometheus.Registerer, cs ...prometheus.Collector) error {
	if reg == nil {
		return nil
	}
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}

// poolMetrics are a Pool's.
type poolMetrics struct {
	calls    *prometheus.CounterVec
	duration *prometheus.HistogramVec
	dials    [2]prometheus.Counter // ok, failed
}

func newPoolMetrics(p *Pool, reg prometheus.Registerer) (*poolMetrics, error) {
	m := &poolMetrics{
		calls: prometheus.NewCounterVec(prometheus.CounterOpts(opts("calls_total", "Calls to other nodes, by command and result.")), []string{"command", "result"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "inboxd", Subsystem: "peer", Name: "call_duration_seconds",
			Help:    "Calls to other nodes from their start to their answer (or failure), by command; calls refused at once are not observed.",
			Buckets: latencyBuckets,
		}, []string{"command"}),
	}
	dials := prometheus.NewCounterVec(prometheus.CounterOpts(opts("dials_total", "Connections dialled to other nodes, by result (ok: dialled and authenticated).")), []string{"result"})
	m.dials[0], m.dials[1] = dials.WithLabelValues("ok"), dials.WithLabelValues("failed")
	inflight := prometheus.NewGaugeFunc(prometheus.GaugeOpts(opts("calls_in_flight", "Calls to other nodes started and not yet answered, waiting for a dial included.")), func() float64 {
		return float64(p.inflight.Load())
	})
	conns := prometheus.NewGaugeFunc(prometheus.GaugeOpts(opts("connections_outbound", "Authenticated connections this node dialled.")), func() float64 {
		return float64(p.conns.Load())
	})
	return m, register(reg, m.calls, m.duration, dials, inflight, conns)
}

// serverMetrics are a Server's.
type serverMetrics struct {
	requests  *prometheus.CounterVec
	duration  *prometheus.HistogramVec
	handshake map[string]prometheus.Counter
}

func newServerMetrics(s *Server, reg prometheus.Registerer) (*serverMetrics, error) {
	m := &serverMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts(opts("requests_total", "Requests served to other nodes, by command and result.")), []string{"command", "result"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "inboxd", Subsystem: "peer", Name: "request_duration_seconds",
			Help:    "Requests from other nodes from their arrival to their response being queued: the queue wait and the handler, by command.",
			Buckets: latencyBuckets,
		}, []string{"command"}),
		handshake: make(map[string]prometheus.Counter),
	}
	hs := prometheus.NewCounterVec(prometheus.CounterOpts(opts("handshake_failures_total", "Incoming connections refused at the handshake, by reason.")), []string{"reason"})
	for _, r := range handshakeReasons {
		m.handshake[r] = hs.WithLabelValues(r)
	}
	queue := prometheus.NewGaugeFunc(prometheus.GaugeOpts(opts("request_queue_length", "Requests from other nodes waiting for a worker.")), func() float64 {
		return float64(len(s.jobs))
	})
	conns := prometheus.NewGaugeFunc(prometheus.GaugeOpts(opts("connections_inbound", "Authenticated connections other nodes dialled to this one.")), func() float64 {
		return float64(s.conns.Load())
	})
	return m, register(reg, m.requests, m.duration, hs, queue, conns)
}

package peer

import (
	"strconv"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/inboxd/inboxd/wire"
)

// Results of a call, the values of inboxd_peer_calls_total's result label.
const (
	callOK          = iota // the node answered with a response body
	callError              // the node answered with an error code
	callQueueFull          // MaxInFlight calls were in flight: not sent
	callUnavailable        // the node unreachable, or the connection lost
	callTimeout            // the caller's deadline passed
	callCanceled           // the caller gave up
	callClosed             // the pool closed
	callInvalid            // ErrTooLarge, ErrCommand
	numCallResults
)

var callResultNames = [numCallResults]string{"ok", "error", "queue_full", "unavailable", "timeout", "canceled", "closed", "invalid"}

// Results of a request served, the values of inboxd_peer_requests_total's
// result label.
const (
	servedOK      = iota // the handler answered a body
	servedError          // the handler answered an error
	servedBusy           // the request queue was full: UNAVAILABLE without running
	servedUnknown        // a command outside the handlers' range
	numServedResults
)

var servedResultNames = [numServedResults]string{"ok", "error", "busy", "unknown"}

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

// byCommand is a counter by command and result and a histogram by command.
// A command's series are made at its first use, every result at once, so
// that they all appear at zero together, and are kept: a call costs no
// label formatting or hashing. Commands are labelled by number (which
// commands run over the transport is its users' business); those below
// FirstCommand, which no handler serves, share the label "other".
type byCommand struct {
	count    *prometheus.CounterVec
	duration *prometheus.HistogramVec
	results  []string
	cache    sync.Map // wire.Command → *commandSeries
}

type commandSeries struct {
	count    []prometheus.Counter // by result
	duration prometheus.Observer
}

func newByCommand(count, duration, countHelp, durationHelp string, results []string) *byCommand {
	return &byCommand{
		count: prometheus.NewCounterVec(prometheus.CounterOpts(opts(count, countHelp)), []string{"command", "result"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "inboxd", Subsystem: "peer", Name: duration, Help: durationHelp, Buckets: latencyBuckets,
		}, []string{"command"}),
		results: results,
	}
}

func (b *byCommand) of(c wire.Command) *commandSeries {
	label := "other"
	if c < FirstCommand {
		c = 0
	} else {
		label = strconv.Itoa(int(c))
	}
	if s, ok := b.cache.Load(c); ok {
		return s.(*commandSeries)
	}
	s := &commandSeries{count: make([]prometheus.Counter, len(b.results)), duration: b.duration.WithLabelValues(label)}
	for i, r := range b.results {
		s.count[i] = b.count.WithLabelValues(label, r)
	}
	actual, _ := b.cache.LoadOrStore(c, s)
	return actual.(*commandSeries)
}

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
	calls *byCommand
	dials [2]prometheus.Counter // ok, failed
}

func newPoolMetrics(p *Pool, reg prometheus.Registerer) (*poolMetrics, error) {
	m := &poolMetrics{calls: newByCommand("calls_total", "call_duration_seconds",
		"Calls to other nodes, by command and result.",
		"Calls to other nodes from their start to their answer (or failure), by command; calls refused at once are not observed.",
		callResultNames[:])}
	dials := prometheus.NewCounterVec(prometheus.CounterOpts(opts("dials_total", "Connections dialled to other nodes, by result (ok: dialled and authenticated).")), []string{"result"})
	m.dials[0], m.dials[1] = dials.WithLabelValues("ok"), dials.WithLabelValues("failed")
	inflight := prometheus.NewGaugeFunc(prometheus.GaugeOpts(opts("calls_in_flight", "Calls to other nodes started and not yet answered, waiting for a dial included.")), func() float64 {
		return float64(p.inflight.Load())
	})
	conns := prometheus.NewGaugeFunc(prometheus.GaugeOpts(opts("connections_outbound", "Authenticated connections this node dialled.")), func() float64 {
		return float64(p.conns.Load())
	})
	return m, register(reg, m.calls.count, m.calls.duration, dials, inflight, conns)
}

// serverMetrics are a Server's.
type serverMetrics struct {
	requests  *byCommand
	handshake map[string]prometheus.Counter
}

func newServerMetrics(s *Server, reg prometheus.Registerer) (*serverMetrics, error) {
	m := &serverMetrics{
		requests: newByCommand("requests_total", "request_duration_seconds",
			"Requests served to other nodes, by command and result.",
			"Requests from other nodes from their arrival to their response being queued: the queue wait and the handler, by command.",
			servedResultNames[:]),
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
	return m, register(reg, m.requests.count, m.requests.duration, hs, queue, conns)
}

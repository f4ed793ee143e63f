package gateway

import (
	"slices"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/inboxd/inboxd/wire"
)

// Metrics are resolved to their label values once, in newMetrics, and kept
// in arrays indexed by command, code or reason: the event loops count every
// frame, and a map lookup or a WithLabelValues call per frame would cost
// more than the counting.

// unknownCmd is the slot of commands this protocol version does not know.
const unknownCmd = 256

// cmdSlot maps a command to its slot in the per-command arrays.
func cmdSlot(c wire.Command) int { return min(int(c), unknownCmd) }

// disconnect is why the server ended a connection.
type disconnect uint8

const (
	closedByPeer disconnect = iota // the client closed, or the network did
	closedSlowReader
	closedIdle
	closedAuthTimeout
	closedAuthFailed
	closedProtocol // a frame that breaks the framing, or a command before AUTH
	closedReplaced
	closedShutdown
	closedFlood     // kept sending past its rate limit
	closedConnLimit // refused or closed at a connection cap
	closedNotServed // this node does not serve the user's shard: REDIRECT or UNAVAILABLE
	closedBanned    // the user is banned: at AUTH, or when the ban was set
	closedRevoked   // the token was revoked: at AUTH, or when the revocation was set
	closedHandshake // a WebSocket handshake refused: not WebSocket, wrong path or origin, too large
	numDisconnects
)

var disconnectNames = [numDisconnects]string{
	"peer", "slow_reader", "idle", "auth_timeout", "auth_failed", "protocol", "replaced", "shutdown", "flood", "conn_limit", "not_served",
	"banned", "revoked", "handshake",
}

// redirectWhen is when a user was sent away from a node that does not
// serve its shard.
type redirectWhen uint8

const (
	redirectAuth  redirectWhen = iota // AUTH was answered so
	redirectMoved                     // the node stopped serving the shard of a session
	numRedirectWhens
)

var redirectWhenNames = [numRedirectWhens]string{"auth", "moved"}

// redirectCodes are the codes a user is sent away with, by slot.
var redirectCodes = [2]wire.Code{wire.CodeRedirect, wire.CodeUnavailable}

// authFailure is why an AUTH was refused.
type authFailure uint8

const (
	authNotFirst      authFailure = iota // another command before AUTH
	authMalformedBody                    // the AUTH body does not decode
	authMalformed                        // the token does not parse
	authBadSignature                     // the token is not signed with the secret
	authExpired                          // the token's expiry passed
	authTimeout                          // no AUTH within Config.AuthTimeout
	authUnavailable                      // the store did not answer the head lookup
	authBanned                           // the user is banned
	authRevoked                          // the token was issued before a revocation
	numAuthFailures
)

var authFailureNames = [numAuthFailures]string{
	"not_first", "malformed_body", "malformed_token", "bad_signature", "expired", "timeout", "unavailable",
	"banned", "revoked",
}

// rejection is why a request was answered without running it.
type rejection uint8

const (
	rejectRateLimited rejection = iota // the connection's token bucket is empty
	rejectQueueFull                    // MaxPending requests already queued on the connection
	rejectOverloaded                   // every worker slot is taken: load shed
	rejectShuttingDown
	rejectUserRateLimited // the user's bucket, shared by their connections, is empty
	numRejections
)

var rejectionNames = [numRejections]string{"rate_limited", "queue_full", "overloaded", "shutting_down", "user_rate_limited"}

// maxCode bounds the error codes counted by name; others count as "other".
const maxCode = 32

// latencyBuckets cover a heartbeat answered in tens of microseconds up to a
// request that hits the 10 s request timeout.
var latencyBuckets = []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}

type metrics struct {
	// The connections' own metrics have a transport label: tcp or ws.
	accepted     [numTransports]prometheus.Counter
	disconnects  [numTransports][numDisconnects]prometheus.Counter
	framesIn     [numTransports][unknownCmd + 1]prometheus.Counter
	framesOut    [numTransports][unknownCmd + 1]prometheus.Counter
	authFailures [numAuthFailures]prometheus.Counter
	rejected     [numRejections]prometheus.Counter
	refused      [numRefusals]prometheus.Counter
	latency      [unknownCmd + 1]prometheus.Observer // nil for commands no worker runs
	errors       [maxCode + 1]prometheus.Counter
	redirects    [numRedirectWhens][len(redirectCodes)]prometheus.Counter

	collectors []prometheus.Collector
}

// newMetrics creates the gateway's metrics, with gauges reading s. They are
// registered by register.
func newMetrics(s *Server) *metrics {
	m := &metrics{}
	const ns, sub = "inboxd", "gateway"
	opts := func(name, help string) prometheus.Opts {
		return prometheus.Opts{Namespace: ns, Subsystem: sub, Name: name, Help: help}
	}
	accepted := prometheus.NewCounterVec(prometheus.CounterOpts(opts("connections_accepted_total", "Connections accepted, by transport (tcp, ws).")), []string{"transport"})
	var open [numTransports]prometheus.Collector
	for t, name := range transportNames {
		m.accepted[t] = accepted.WithLabelValues(name)
		o := opts("connections_open", "Connections open, authenticated or not, by transport (tcp, ws).")
		o.ConstLabels = prometheus.Labels{"transport": name}
		open[t] = prometheus.NewGaugeFunc(prometheus.GaugeOpts(o), func() float64 { return float64(s.open[t].Load()) })
	}
	users := prometheus.NewGaugeFunc(prometheus.GaugeOpts(opts("users_online", "Users with at least one authenticated connection.")), func() float64 {
		s.mu.RLock()
		defer s.mu.RUnlock()
		return float64(len(s.byUser))
	})
	inflight := prometheus.NewGaugeFunc(prometheus.GaugeOpts(opts("requests_in_flight", "Requests taken from connections and not yet answered.")), func() float64 {
		return float64(s.inflight.Load())
	})
	ready := prometheus.NewGaugeFunc(prometheus.GaugeOpts(opts("ready_queue_length", "Connections with queued requests waiting for a worker.")), func() float64 {
		return float64(len(s.ready))
	})

	disconnects := prometheus.NewCounterVec(prometheus.CounterOpts(opts("disconnects_total", "Connections closed, by transport and reason (peer: closed by the client or the network).")), []string{"transport", "reason"})
	for t, tn := range transportNames {
		for i, name := range disconnectNames {
			m.disconnects[t][i] = disconnects.WithLabelValues(tn, name)
		}
	}
	auth := prometheus.NewCounterVec(prometheus.CounterOpts(opts("auth_failures_total", "Connections refused at authentication, by reason.")), []string{"reason"})
	for i, name := range authFailureNames {
		m.authFailures[i] = auth.WithLabelValues(name)
	}
	rejected := prometheus.NewCounterVec(prometheus.CounterOpts(opts("requests_rejected_total", "Requests answered with an error without running, by reason.")), []string{"reason"})
	for i, name := range rejectionNames {
		m.rejected[i] = rejected.WithLabelValues(name)
	}

	refused := prometheus.NewCounterVec(prometheus.CounterOpts(opts("connections_refused_total", "Connections refused or closed at a connection cap, by cap.")), []string{"limit"})
	for i, name := range refusalNames {
		m.refused[i] = refused.WithLabelValues(name)
	}
	unauth := prometheus.NewGaugeFunc(prometheus.GaugeOpts(opts("unauthenticated_connections", "Connections open and not yet authenticated.")), func() float64 {
		return float64(s.unauthenticated.Load())
	})
	unauthBytes := prometheus.NewGaugeFunc(prometheus.GaugeOpts(opts("unauthenticated_buffered_bytes", "Bytes of partial frames held for unauthenticated connections.")), func() float64 {
		return float64(s.unauthBytes.Load())
	})

	in := prometheus.NewCounterVec(prometheus.CounterOpts(opts("frames_received_total", "Frames received, by transport and command.")), []string{"transport", "command"})
	out := prometheus.NewCounterVec(prometheus.CounterOpts(opts("frames_sent_total", "Frames sent (responses, pushes, errors), by transport and command.")), []string{"transport", "command"})
	latency := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: ns, Subsystem: sub, Name: "request_duration_seconds",
		Help:    "Time from a request frame's arrival to its response being queued for the connection, by command.",
		Buckets: latencyBuckets,
	}, []string{"command"})
	for i := range unknownCmd + 1 {
		c, name := wire.Command(i), "unknown"
		if i != unknownCmd && c.Known() {
			name = c.String()
			if c != wire.CmdPush && c != wire.CmdError {
				m.latency[i] = latency.WithLabelValues(name)
			}
		}
		for t, tn := range transportNames {
			m.framesIn[t][i], m.framesOut[t][i] = in.WithLabelValues(tn, name), out.WithLabelValues(tn, name)
		}
	}

	errs := prometheus.NewCounterVec(prometheus.CounterOpts(opts("error_responses_total", "Requests answered with an error, by code.")), []string{"code"})
	other := errs.WithLabelValues("other")
	for i := range m.errors {
		m.errors[i] = other
		if name := wire.Code(i).String(); !strings.HasPrefix(name, "CODE_") {
			m.errors[i] = errs.WithLabelValues(name)
		}
	}

	redirects := prometheus.NewCounterVec(prometheus.CounterOpts(opts("redirects_total",
		"Users sent away because this node does not serve their shard: with REDIRECT to its owner or UNAVAILABLE while it has none, at AUTH or when the shard moved.")),
		[]string{"when", "code"})
	for w, when := range redirectWhenNames {
		for i, code := range redirectCodes {
			m.redirects[w][i] = redirects.WithLabelValues(when, code.String())
		}
	}

	m.collectors = []prometheus.Collector{accepted, open[transportTCP], open[transportWS], users, inflight, ready, disconnects, auth, rejected, refused, unauth, unauthBytes, in, out, latency, errs, redirects}
	return m
}

// register registers the metrics with reg; a nil reg leaves them counting
// unregistered.
func (m *metrics) register(reg prometheus.Registerer) error {
	if reg == nil {
		return nil
	}
	for _, c := range m.collectors {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}

func (m *metrics) frameIn(t transport, c wire.Command)  { m.framesIn[t][cmdSlot(c)].Inc() }
func (m *metrics) frameOut(t transport, c wire.Command) { m.framesOut[t][cmdSlot(c)].Inc() }

func (m *metrics) errorResponse(c wire.Code) { m.errors[min(c, maxCode)].Inc() }

// redirect counts a user sent away with c, one of redirectCodes.
func (m *metrics) redirect(when redirectWhen, c wire.Code) { m.redirects[when][codeSlot(c)].Inc() }

// codeSlot is c's index in redirectCodes.
func codeSlot(c wire.Code) int { return slices.Index(redirectCodes[:], c) }

package relay

import (
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/inboxd/inboxd/peer"
	"github.com/inboxd/inboxd/wire"
)

// Results of a delivery or a forward, the values of the result label.
const (
	resultOK          = iota // answered with a body
	resultAnswered           // the other node answered an error code
	resultNoOwner            // (forwards) no node serves the shard now
	resultUnavailable        // the node unreachable, overloaded or the connection lost: not answered
	resultTimeout            // the deadline passed
	resultFailed             // anything else: closed pool, a malformed answer, a bug
	numResults
)

var resultNames = [numResults]string{"ok", "error", "no_owner", "unavailable", "timeout", "failed"}

// latencyBuckets cover a loopback round trip up to the default call timeout.
var latencyBuckets = []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5}

type metrics struct {
	deliveries, forwards, announcements *calls
	typing, presence                    *calls
	records                             prometheus.Counter
}

// calls is a counter by result and a latency histogram.
type calls struct {
	count    [numResults]prometheus.Counter
	duration prometheus.Observer
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	var cs []prometheus.Collector
	mk := func(name, hist, what string) *calls {
		vec := prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "inboxd", Subsystem: "relay", Name: name + "_total", Help: what + ", by result.",
		}, []string{"result"})
		h := prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "inboxd", Subsystem: "relay", Name: hist + "_duration_seconds",
			Help: what + ": call to answer or failure.", Buckets: latencyBuckets,
		})
		c := &calls{duration: h}
		for i, n := range resultNames {
			c.count[i] = vec.WithLabelValues(n)
		}
		cs = append(cs, vec, h)
		return c
	}
	m := &metrics{
		deliveries: mk("deliveries", "delivery", "Outbox deliveries sent to other nodes"),
		forwards:   mk("forwards", "forward", "Conversation commands forwarded to their owners"),
		announcements: mk("announcements", "announcement",
			"Changes of bans and revocations announced to other nodes"),
		typing:   mk("typing_events", "typing", "Typing events sent to the nodes serving their recipients"),
		presence: mk("presence_queries", "presence", "Presence questions sent to the nodes serving the users asked about"),
		records: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "inboxd", Subsystem: "relay", Name: "delivered_records_total",
			Help: "Outbox records in deliveries the destination answered.",
		}),
	}
	if reg != nil {
		for _, c := range append(cs, m.records) {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return m, nil
}

func (c *calls) observe(err error, start time.Time) {
	c.duration.Observe(time.Since(start).Seconds())
	c.count[result(err)].Inc()
}

func result(err error) int {
	switch {
	case err == nil:
		return resultOK
	case errors.Is(err, ErrNoOwner):
		return resultNoOwner
	}
	if _, ok := errors.AsType[*peer.Error](err); ok {
		return resultAnswered
	}
	switch peer.Code(err) {
	case wire.CodeUnavailable:
		return resultUnavailable
	case wire.CodeTimeout:
		return resultTimeout
	}
	return resultFailed
}

package inbox

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// offlinePush says what a delivery's recipient gets when no device of theirs
// is online.
type offlinePush uint8

const (
	offlineNone offlinePush = iota // nothing: their own message, a read marker, a leave notice
	offlineHook                    // a notice to the OfflinePusher
	offlineDND                     // nothing: the conversation is on do-not-disturb
)

// pushOutcome is what became of one committed inbox entry after its commit.
type pushOutcome uint8

const (
	pushedOnline  pushOutcome = iota // handed to the Notifier of an online user
	pushedOffline                    // handed to the OfflinePusher
	skippedDND                       // offline, and the conversation is on do-not-disturb
	skippedOther                     // offline, and no push is due (or no OfflinePusher)
	numOutcomes
)

var outcomeNames = [numOutcomes]string{"online", "offline_hook", "skipped_dnd", "skipped"}

// sendResult is how a SendGroupMessage call ended.
type sendResult uint8

const (
	sendStored    sendResult = iota // stored and fanned out
	sendDuplicate                   // a resend: the first result returned
	sendRejected                    // refused: not a member, muted, invalid…
	sendFailed                      // the store failed, the caller gave up, or the service closed
	numSendResults
)

var sendResultNames = [numSendResults]string{"stored", "duplicate", "rejected", "failed"}

// commitBuckets span a Pebble fsync (a few hundred microseconds) to a
// Cassandra commit retried through a short outage.
var commitBuckets = []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}

// metrics are the service's Prometheus metrics. Label values are resolved
// once here; the committer and the dispatcher only add and observe.
type metrics struct {
	messages     prometheus.Counter
	rows         prometheus.Counter
	commits      prometheus.Histogram
	builds       prometheus.Histogram
	commitFails  prometheus.Counter
	batchRows    prometheus.Histogram
	batchCmds    prometheus.Histogram
	sendAck      prometheus.Histogram
	sends        [numSendResults]prometheus.Counter
	pushes       [numOutcomes]prometheus.Counter
	pushDelay    prometheus.Histogram
	commandQueue prometheus.GaugeFunc
	deliverQueue prometheus.GaugeFunc
	groupCache   cacheMetrics
}

// newMetrics creates the metrics of s, with gauges reading its queues, and
// registers them with s.cfg.Registerer unless it is nil.
func newMetrics(s *Service) (*metrics, error) {
	const ns, sub = "inboxd", "inbox"
	opts := func(name, help string) prometheus.Opts {
		return prometheus.Opts{Namespace: ns, Subsystem: sub, Name: name, Help: help}
	}
	histogram := func(name, help string, buckets []float64) prometheus.Histogram {
		return prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: ns, Subsystem: sub, Name: name, Help: help, Buckets: buckets})
	}
	m := &metrics{
		messages: prometheus.NewCounter(prometheus.CounterOpts(opts("messages_total",
			"Messages committed to conversation timelines, group notices included."))),
		rows: prometheus.NewCounter(prometheus.CounterOpts(opts("fanout_rows_total",
			"Inbox rows committed: one per member for each message, one per read-marker change."))),
		commits: histogram("commit_duration_seconds",
			"Time from handing one group commit (batch) to the store until it was durable, failed ones included. "+
				"On a single node on Pebble the committer builds the next batch meanwhile.", commitBuckets),
		builds: histogram("commit_build_duration_seconds",
			"Time the committer took to build one group commit (batch) before handing it to the store: running its commands.", commitBuckets),
		commitFails: prometheus.NewCounter(prometheus.CounterOpts(opts("commit_failures_total",
			"Group commits the store failed; every command of the batch got UNAVAILABLE."))),
		batchRows: histogram("commit_batch_rows",
			"Inbox rows in one group commit.", prometheus.ExponentialBuckets(1, 4, 9)),
		batchCmds: histogram("commit_batch_commands",
			"Commands (sends, invites, mark-reads…) in one group commit.", prometheus.ExponentialBuckets(1, 2, 11)),
		sendAck: histogram("send_ack_duration_seconds",
			"Time from a send reaching the service to its acknowledgement: the wait for the committer and the durable group commit.", commitBuckets),
		pushDelay: histogram("push_delay_seconds",
			"Time from a group commit being durable to its entries being handed to the gateway (or the offline hook), per user.", commitBuckets),
		commandQueue: prometheus.NewGaugeFunc(prometheus.GaugeOpts(opts("command_queue_length",
			"Commands waiting for the committer.")), func() float64 { return float64(len(s.cmds)) }),
		deliverQueue: prometheus.NewGaugeFunc(prometheus.GaugeOpts(opts("delivery_queue_length",
			"Committed batches waiting to be pushed.")), func() float64 { return float64(len(s.deliveries)) }),
	}
	lookups := prometheus.NewCounterVec(prometheus.CounterOpts(opts("group_cache_lookups_total",
		"Group state lookups by the committer, by result: hit, or miss (loaded from the store).")), []string{"result"})
	m.groupCache = cacheMetrics{
		hits:   lookups.WithLabelValues("hit"),
		misses: lookups.WithLabelValues("miss"),
		evictions: prometheus.NewCounter(prometheus.CounterOpts(opts("group_cache_evictions_total",
			"Groups evicted from the group cache to keep it within its size, the least recently used first."))),
		bytes: prometheus.NewGauge(prometheus.GaugeOpts(opts("group_cache_bytes",
			"Estimated memory of the groups in the group cache."))),
	}
	sends := prometheus.NewCounterVec(prometheus.CounterOpts(opts("sends_total", "Sends handled, by result.")), []string{"result"})
	for i, name := range sendResultNames {
		m.sends[i] = sends.WithLabelValues(name)
	}
	pushes := prometheus.NewCounterVec(prometheus.CounterOpts(opts("pushes_total",
		"Committed inbox entries by what became of them: pushed to an online device, handed to the offline hook, or skipped.")), []string{"outcome"})
	for i, name := range outcomeNames {
		m.pushes[i] = pushes.WithLabelValues(name)
	}
	if reg := s.cfg.Registerer; reg != nil {
		for _, c := range []prometheus.Collector{m.messages, m.rows, m.commits, m.builds, m.commitFails, m.batchRows, m.batchCmds,
			m.sendAck, sends, pushes, m.pushDelay, m.commandQueue, m.deliverQueue,
			lookups, m.groupCache.evictions, m.groupCache.bytes} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("inbox: register metrics: %w", err)
			}
		}
	}
	return m, nil
}

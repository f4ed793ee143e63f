// Package webhook is inboxd's offline-push hook: it posts a JSON notice of
// each message for a user with no online device to an HTTP endpoint, where
// an APNs or FCM sender can sit. The inbox gives it no message of a
// conversation the user set to do-not-disturb, except those that mention
// the user (or everyone): those come with Notice.Mentioned set, and an
// endpoint should deliver them as it would without do-not-disturb.
//
// PushOffline never blocks the inbox: notices wait in a bounded queue and a
// few workers post them, retrying with exponential backoff on network errors
// and 5xx or 429 answers. When the queue is full a notice is dropped and
// counted: a push is a hint, and the message itself is safe in the inbox.
//
// Config.Registerer gets the counts as Prometheus metrics
// (inboxd_webhook_*): notices by result, retries, the queue, and the time
// each post took.
//
// This package is the server's own (README, "Layout"): it has no
// compatibility promise. Clients use packages client, wire and token.
package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/inboxd/inboxd/inbox"
	"github.com/inboxd/inboxd/internal/backoff"
	"github.com/inboxd/inboxd/wire"
)

// Config configures a Pusher. Zero values take the defaults named.
type Config struct {
	URL         string // required
	QueueSize   int    // notices waiting (default 4096)
	Workers     int    // concurrent posts (default 4)
	MaxAttempts int    // posts of one notice (default 5)
	Backoff     time.Duration
	// Backoff is the wait after the first failure, doubled after each
	// (default 200 ms, capped at 10 s), each wait jittered down by up to
	// half so that notices failed together are not retried together.
	Timeout time.Duration // one post (default 5 s)
	Client  *http.Client
	Logger  *slog.Logger
	// Registerer gets the pusher's metrics; nil registers none.
	Registerer prometheus.Registerer
}

// Notice is the JSON body posted for one message. The conversation and
// message ids are written as decimal strings, as the server API writes
// them: they are 64-bit (a snowflake; a direct conversation's has the top
// bit set), beyond the integers a JavaScript number holds exactly. User
// ids and seqs, the application's and counters, stay numbers.
type Notice struct {
	User    uint64 `json:"user"` // who should be notified
	Seq     uint64 `json:"seq"`  // the entry's seq in the user's inbox
	Conv    uint64 `json:"conv,string"`
	ConvSeq uint64 `json:"conv_seq"`
	MsgID   uint64 `json:"msg_id,string"`
	Sender  uint64 `json:"sender"`
	Kind    uint16 `json:"kind"`
	TimeMs  int64  `json:"time_ms"`
	// Preview is the start of a text message or notice, at most 120 bytes of
	// whole UTF-8 characters; empty for other kinds.
	Preview string `json:"preview,omitempty"`
	// Mentioned: the message mentions the user or everyone. It reaches the
	// hook even under the user's do-not-disturb.
	Mentioned bool `json:"mentioned,omitempty"`
}

// Stats counts what happened to notices.
type Stats struct {
	Delivered, Failed, Dropped, Retries uint64
}

// Pusher posts notices. It is an inbox.OfflinePusher.
type Pusher struct {
	cfg   Config
	queue chan Notice
	wg    sync.WaitGroup
	stop  chan struct{} // closed by Close: cut retries short

	delivered, failed, dropped, retries atomic.Uint64
	closeOnce                           sync.Once

	postDuration prometheus.Histogram
}

// New starts a Pusher's workers.
func New(cfg Config) (*Pusher, error) {
	if cfg.URL == "" {
		return nil, errors.New("webhook: Config.URL is empty")
	}
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&cfg.QueueSize, 4096)
	def(&cfg.Workers, 4)
	def(&cfg.MaxAttempts, 5)
	if cfg.Backoff <= 0 {
		cfg.Backoff = 200 * time.Millisecond
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 5 * time.Second
	}
	if cfg.Client == nil {
		cfg.Client = &http.Client{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	p := &Pusher{cfg: cfg, queue: make(chan Notice, cfg.QueueSize), stop: make(chan struct{})}
	p.postDuration = prometheus.NewHistogram(prometheus.HistogramOpts{
		Namespace: "inboxd", Subsystem: "webhook", Name: "post_duration_seconds",
		Help:    "Time one POST to the webhook took, failed ones included.",
		Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
	})
	if reg := cfg.Registerer; reg != nil {
		for _, c := range []prometheus.Collector{p.postDuration, collector{p}} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("webhook: register metrics: %w", err)
			}
		}
	}
	for range cfg.Workers {
		p.wg.Go(p.work)
	}
	return p, nil
}

// PushOffline queues a notice of e for user, or drops it if the queue is full.
func (p *Pusher) PushOffline(user uint64, e inbox.Entry) {
	n := Notice{User: user, Seq: e.Row.Seq, Conv: e.Row.Conv, ConvSeq: e.Row.ConvSeq,
		MsgID: e.Row.MsgID, Kind: uint16(e.Row.Kind)}
	if m := e.Msg; m != nil {
		n.Sender, n.TimeMs = m.Sender, m.Time.UnixMilli()
		if m.Kind == wire.KindText || m.Kind == wire.KindNotice {
			n.Preview = preview(m.Body, 120)
		}
		n.Mentioned = m.MentionAll || slices.Contains(m.Mentions, user)
	}
	select {
	case p.queue <- n:
	default:
		p.dropped.Add(1)
	}
}

// preview cuts b to at most max bytes of whole UTF-8 characters.
func preview(b []byte, max int) string {
	if len(b) > max {
		b = b[:max]
		for len(b) > 0 && !utf8.Valid(b) {
			b = b[:len(b)-1]
		}
	}
	return string(b)
}

// Stats returns the counts so far.
func (p *Pusher) Stats() Stats {
	return Stats{Delivered: p.delivered.Load(), Failed: p.failed.Load(), Dropped: p.dropped.Load(), Retries: p.retries.Load()}
}

// Close stops taking notices and waits until the queued ones are posted or
// ctx ends; then pending retries give up.
func (p *Pusher) Close(ctx context.Context) error {
	p.closeOnce.Do(func() { close(p.queue) })
	done := make(chan struct{})
	go func() { p.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		close(p.stop)
		<-done
		return ctx.Err()
	}
}

func (p *Pusher) work() {
	for n := range p.queue {
		p.deliver(n)
	}
}

func (p *Pusher) deliver(n Notice) {
	body, _ := json.Marshal(n)
	policy := backoff.Policy{Min: p.cfg.Backoff, Max: 10 * time.Second}
	for attempt := 1; ; attempt++ {
		err := p.post(body)
		if err == nil {
			p.delivered.Add(1)
			return
		}
		var perm permanent
		if errors.As(err, &perm) || attempt == p.cfg.MaxAttempts {
			p.failed.Add(1)
			p.cfg.Logger.Warn("webhook: notice not delivered", "user", n.User, "msg_id", n.MsgID, "attempts", attempt, "err", err)
			return
		}
		p.retries.Add(1)
		select {
		case <-time.After(policy.Delay(attempt - 1)):
		case <-p.stop:
			p.failed.Add(1)
			return
		}
	}
}

// permanent marks an answer that a retry cannot change.
type permanent struct{ status int }

func (e permanent) Error() string { return fmt.Sprintf("webhook: status %d", e.status) }

func (p *Pusher) post(body []byte) error {
	ctx, cancel := context.WithTimeout(context.Background(), p.cfg.Timeout)
	defer cancel()
	defer func(start time.Time) { p.postDuration.Observe(time.Since(start).Seconds()) }(time.Now())
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.cfg.URL, bytes.NewReader(body))
	if err != nil {
		return permanent{0}
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := p.cfg.Client.Do(req)
	if err != nil {
		return fmt.Errorf("webhook: post: %w", err)
	}
	resp.Body.Close()
	switch {
	case resp.StatusCode < 300:
		return nil
	case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500:
		return fmt.Errorf("webhook: status %d", resp.StatusCode)
	}
	return permanent{resp.StatusCode}
}

var (
	noticesDesc = prometheus.NewDesc("inboxd_webhook_notices_total",
		"Offline-push notices by result: delivered (2xx), failed (a permanent answer, or every attempt failed), dropped (the queue was full).",
		[]string{"result"}, nil)
	retriesDesc = prometheus.NewDesc("inboxd_webhook_retries_total",
		"Posts retried after a network error, a 5xx or a 429.", nil, nil)
	queueDesc = prometheus.NewDesc("inboxd_webhook_queue_length",
		"Notices waiting for a worker.", nil, nil)
	capacityDesc = prometheus.NewDesc("inboxd_webhook_queue_capacity",
		"Notices the queue holds before it drops (Config.QueueSize).", nil, nil)
)

// collector reads the pusher's counters when scraped, so that counting a
// notice stays one atomic add.
type collector struct{ p *Pusher }

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- noticesDesc
	ch <- retriesDesc
	ch <- queueDesc
	ch <- capacityDesc
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	st := c.p.Stats()
	for result, n := range map[string]uint64{"delivered": st.Delivered, "failed": st.Failed, "dropped": st.Dropped} {
		ch <- prometheus.MustNewConstMetric(noticesDesc, prometheus.CounterValue, float64(n), result)
	}
	ch <- prometheus.MustNewConstMetric(retriesDesc, prometheus.CounterValue, float64(st.Retries))
	ch <- prometheus.MustNewConstMetric(queueDesc, prometheus.GaugeValue, float64(len(c.p.queue)))
	ch <- prometheus.MustNewConstMetric(capacityDesc, prometheus.GaugeValue, float64(cap(c.p.queue)))
}

package relay

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/inboxd/inboxd/cluster"
	"github.com/inboxd/inboxd/peer"
	"github.com/inboxd/inboxd/timeline"
	"github.com/inboxd/inboxd/wire"
)

// The peer commands of inboxd's nodes.
const (
	// CmdDeliver carries outbox records to the node serving their
	// destination shards; it answers the applied marks.
	CmdDeliver = peer.FirstCommand
	// CmdForward carries a device's conversation command to the node
	// serving the conversation; it answers the command's response body.
	CmdForward = peer.FirstCommand + 1
	// CmdRestrictions tells a node that the bans or token revocations
	// changed in the store; it re-reads them and closes the connections
	// they refuse before it answers. Both bodies are empty.
	CmdRestrictions = peer.FirstCommand + 2
	// CmdTyping carries a typing event to the node serving its
	// recipients, which pushes it to their devices; it answers nothing.
	CmdTyping = peer.FirstCommand + 0x20
	// CmdPresence asks the node serving some users which of them have a
	// device connected; it answers those.
	CmdPresence = peer.FirstCommand + 0x21
)

// ErrNoOwner: no node is known to serve the conversation's shard (a
// failover in progress). Forward's error wraps it with a *peer.Error
// UNAVAILABLE: retryable.
var ErrNoOwner = errors.New("relay: the shard has no owner now")

// Config configures a Relay.
type Config struct {
	// Ownership names the node serving each shard.
	Ownership cluster.Ownership
	// Pool calls the other nodes; the Relay does not close it.
	Pool *peer.Pool
	// Registerer, if set, receives the relay's metrics.
	Registerer prometheus.Registerer
}

// Relay is the calling side: an inbox.Deliverer and a gateway.Forwarder.
// It is safe for concurrent use.
type Relay struct {
	cfg Config
	m   *metrics
}

// New returns a Relay, its metrics registered on cfg.Registerer.
func New(cfg Config) (*Relay, error) {
	if cfg.Ownership == nil || cfg.Pool == nil {
		return nil, errors.New("relay: Config.Ownership and Config.Pool are required")
	}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	return &Relay{cfg: cfg, m: m}, nil
}

// Deliver sends records to dest with one CmdDeliver call and returns the
// applied marks dest answered. It is inbox.Deliverer.
func (r *Relay) Deliver(ctx context.Context, dest cluster.NodeInfo, records []timeline.OutboxRecord) ([]timeline.AppliedMark, error) {
	start := time.Now()
	marks, err := r.deliver(ctx, dest, records)
	r.m.deliveries.observe(err, start)
	if err == nil {
		r.m.records.Add(float64(len(records)))
	}
	return marks, err
}

func (r *Relay) deliver(ctx context.Context, dest cluster.NodeInfo, records []timeline.OutboxRecord) ([]timeline.AppliedMark, error) {
	body, err := appendRecords(nil, records)
	if err != nil {
		return nil, err
	}
	resp, err := r.cfg.Pool.Call(ctx, dest.PeerAddr, CmdDeliver, body)
	if err != nil {
		return nil, fmt.Errorf("relay: deliver %d records to node %d: %w", len(records), dest.ID, err)
	}
	marks, err := decodeMarks(resp)
	if err != nil {
		return nil, fmt.Errorf("relay: node %d's answer to a delivery: %w", dest.ID, err)
	}
	return marks, nil
}

// Forward runs a client's conversation command for user at the node serving
// conv and returns its response body. Its errors map to the code the client
// is answered with through peer.Code: the owner's own error answer (a
// *peer.Error), UNAVAILABLE when no owner is known or it cannot be reached,
// TIMEOUT when ctx's deadline passed. It is gateway.Forwarder.
func (r *Relay) Forward(ctx context.Context, conv, user uint64, cmd wire.Command, body []byte) ([]byte, error) {
	start := time.Now()
	resp, err := r.forward(ctx, conv, user, cmd, body)
	r.m.forwards.observe(err, start)
	return resp, err
}

func (r *Relay) forward(ctx context.Context, conv, user uint64, cmd wire.Command, body []byte) ([]byte, error) {
	own := r.cfg.Ownership
	shard := cluster.ShardOf(conv, own.ShardCount())
	owner, ok := own.Owner(shard)
	if _, self := own.Serving(shard); !ok || owner.PeerAddr == "" || self {
		// Serving here after all: the shard came back while the command
		// failed; the client's retry runs it here.
		return nil, fmt.Errorf("%w: shard %d: %w", ErrNoOwner, shard,
			&peer.Error{Code: wire.CodeUnavailable, Message: "no node serves the conversation now: retry"})
	}
	resp, err := r.cfg.Pool.Call(ctx, owner.PeerAddr, CmdForward, appendForward(nil, user, cmd, body))
	if err != nil {
		return nil, fmt.Errorf("relay: forward %v to node %d: %w", cmd, owner.ID, err)
	}
	return resp, nil
}

// AnnounceRestrictions sends CmdRestrictions to every other node serving
// a shard (one with no shard serves no device), concurrently, and returns
// once each answered or failed: the errors of those that failed, joined.
// It is api.Announcer.
func (r *Relay) AnnounceRestrictions(ctx context.Context) error {
	peers := r.others()
	errs := make(chan error, len(peers))
	for _, n := range peers {
		go func() {
			start := time.Now()
			_, err := r.cfg.Pool.Call(ctx, n.PeerAddr, CmdRestrictions, nil)
			r.m.announcements.observe(err, start)
			if err != nil {
				err = fmt.Errorf("relay: announce restrictions to node %d: %w", n.ID, err)
			}
			errs <- err
		}()
	}
	var all []error
	for range peers {
		all = append(all, <-errs)
	}
	return errors.Join(all...)
}

// others returns the nodes serving the shards not served here, once each.
func (r *Relay) others() []cluster.NodeInfo {
	own := r.cfg.Ownership
	var out []cluster.NodeInfo
	for s := range own.ShardCount() {
		if _, self := own.Serving(s); self {
			continue
		}
		n, ok := own.Owner(s)
		if ok && n.PeerAddr != "" && !slices.ContainsFunc(out, func(o cluster.NodeInfo) bool { return o.ID == n.ID }) {
			out = append(out, n)
		}
	}
	return out
}

// Applier applies delivered outbox records: *inbox.Service.
type Applier interface {
	Apply(ctx context.Context, records []timeline.OutboxRecord) ([]timeline.AppliedMark, error)
}

// Runner runs a forwarded conversation command, and the typing events and
// presence questions of other nodes: *gateway.Server. The errors of
// ServeForwarded are *peer.Error with the code the client is answered.
type Runner interface {
	ServeForwarded(ctx context.Context, user uint64, cmd wire.Command, body []byte) ([]byte, error)
	Pusher
}

// Handler returns the serving side, for peer.Listen: CmdDeliver applies
// with a; CmdForward, CmdTyping and CmdPresence run with run; any other
// command is UNKNOWN_COMMAND.
func Handler(a Applier, run Runner) peer.Handler {
	return peer.HandlerFunc(func(ctx context.Context, from uint32, cmd wire.Command, body []byte) ([]byte, error) {
		switch cmd {
		case CmdDeliver:
			recs, err := decodeRecords(body)
			if err != nil {
				return nil, &peer.Error{Code: wire.CodeBadRequest, Message: err.Error()}
			}
			marks, err := a.Apply(ctx, recs)
			if err != nil {
				// The sender keeps the records and tries again.
				return nil, &peer.Error{Code: wire.CodeUnavailable, Message: err.Error()}
			}
			return appendMarks(nil, marks), nil
		case CmdForward:
			user, c, b, err := decodeForward(body)
			if err != nil {
				return nil, &peer.Error{Code: wire.CodeBadRequest, Message: err.Error()}
			}
			return run.ServeForwarded(ctx, user, c, b)
		case CmdTyping:
			conv, user, to, err := decodeTyping(body)
			if err != nil {
				return nil, &peer.Error{Code: wire.CodeBadRequest, Message: err.Error()}
			}
			run.PushTyping(conv, user, to)
			return nil, nil
		case CmdPresence:
			users, err := decodeUsers(body)
			if err != nil {
				return nil, &peer.Error{Code: wire.CodeBadRequest, Message: err.Error()}
			}
			return appendUsers(nil, run.Online(users)), nil
		}
		return nil, &peer.Error{Code: wire.CodeUnknownCommand, Message: fmt.Sprintf("command %v", cmd)}
	})
}

// Syncer re-reads the bans and revocations and enforces them:
// *api.Follower.
type Syncer interface {
	Sync(ctx context.Context) error
}

// WithRestrictions returns next serving CmdRestrictions too, with s: a
// node of a cluster takes the announcements of its peers' server APIs.
func WithRestrictions(s Syncer, next peer.Handler) peer.Handler {
	return peer.HandlerFunc(func(ctx context.Context, from uint32, cmd wire.Command, body []byte) ([]byte, error) {
		if cmd != CmdRestrictions {
			return next.Serve(ctx, from, cmd, body)
		}
		if len(body) > 0 {
			return nil, &peer.Error{Code: wire.CodeBadRequest, Message: fmt.Sprintf("%d bytes of restrictions' announcement, want none", len(body))}
		}
		if err := s.Sync(ctx); err != nil {
			// The node re-reads them on its own within its interval.
			return nil, &peer.Error{Code: wire.CodeUnavailable, Message: err.Error()}
		}
		return nil, nil
	})
}

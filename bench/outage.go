package bench

import (
	"context"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/inboxd/inboxd/internal/backoff"
)

// Outage is one node of a cluster stopped under load (kill -9 or SIGTERM)
// and how long its users went unserved: from the signal to the first
// acknowledgement, by another node, of a send that one of them began after
// the signal. That includes the devices' reconnection and redirects, as a
// user would live it.
type Outage struct {
	Node   string `json:"node"`   // its client address
	Signal string `json:"signal"` // KILL or TERM
	Users  int    `json:"users"`  // users with a device on it when signalled
	// Seconds is the signal to that first ack; -1 when none came within
	// outageWait (or the node had no user).
	Seconds float64 `json:"seconds"`
}

// outageWait bounds the wait for a stopped node's users to be served
// again, and for a restarted node to take users back.
const outageWait = time.Minute

// outageBound is how long one stop, recovery, restart and return may take
// at most: the load is extended by this much per event.
const outageBound = 3 * outageWait

// outageWatch is the outage being measured: acked checks every ack
// against it.
type outageWatch struct {
	node  string // the stopped node's address
	at    int64  // r.now() at the signal
	users map[uint64]bool
	once  sync.Once
	ackAt int64         // set before served is closed
	acked chan struct{} // closed at the first ack of one of users
}

// nodeEvents is the number of nodes a run stops and restarts: the kills of
// Chaos and the SIGTERMs of Rolling, in a cluster.
func (c *Config) nodeEvents() int {
	if !c.Server.cluster() {
		return 0
	}
	n := c.Chaos
	if c.Rolling {
		n += max(c.Server.Nodes, 1)
	}
	return n
}

// ackWatched ends the outage being measured if req, acknowledged to d, is
// a send one of its users began after the signal, served by another node.
func (r *runner) ackWatched(d *device, req *request) {
	w := r.watch.Load()
	if w == nil || req.start <= w.at || !w.users[d.user.id] || d.nodeAddr() == w.node {
		return
	}
	w.once.Do(func() {
		w.ackAt = r.now()
		close(w.acked)
	})
}

// usersOn returns the users with a device connected to addr.
func (r *runner) usersOn(addr string) map[uint64]bool {
	users := map[uint64]bool{}
	for _, d := range r.devs {
		if d.online.Load() && d.nodeAddr() == addr {
			users[d.user.id] = true
		}
	}
	return users
}

// outage stops node s with stop (a kill or a SIGTERM, named sig) and
// measures how long until one of its users is served again.
func (r *runner) outage(ctx context.Context, s *server, sig string, stop func()) Outage {
	w := &outageWatch{node: s.addr, users: r.usersOn(s.addr), acked: make(chan struct{})}
	w.at = r.now()
	r.watch.Store(w)
	defer r.watch.Store(nil)
	r.log.Info("bench: stop a node", "signal", sig, "node", s.addr, "users", len(w.users))
	stop()
	o := Outage{Node: s.addr, Signal: sig, Users: len(w.users), Seconds: -1}
	if len(w.users) > 0 {
		select {
		case <-w.acked:
			o.Seconds = time.Duration(w.ackAt - w.at).Seconds()
		case <-time.After(outageWait):
			r.violation(Violation{Kind: "outage", Detail: "no user of node " + s.addr + " served again within " + outageWait.String() + " of SIG" + sig})
		case <-ctx.Done():
		}
	}
	r.log.Info("bench: a user of the stopped node served again", "signal", sig, "node", s.addr, "seconds", o.Seconds)
	r.omu.Lock()
	r.outages = append(r.outages, o)
	r.omu.Unlock()
	return o
}

// rejoin starts s again on its data and waits until users are connected
// to it, half of an even share: the cluster is giving it back its share of
// the shards, so that the next stop finds the load spread again.
func (r *runner) rejoin(ctx context.Context, s *server) bool {
	// A loaded Cassandra may time a start's first statements out: again,
	// within outageWait.
	var err error
	wait := backoff.Policy{Min: time.Second, Max: 8 * time.Second}
	for attempt, end := 0, time.Now().Add(outageWait); ; attempt++ {
		err = s.start(context.WithoutCancel(ctx))
		if err == nil || time.Now().After(end) || !backoff.Sleep(ctx, wait.Delay(attempt)) {
			break
		}
		r.log.Warn("bench: restart inboxd: trying again", "node", s.addr, "err", err)
	}
	if err != nil {
		r.log.Error("bench: restart inboxd", "node", s.addr, "err", err)
		r.violation(Violation{Kind: "restart", Detail: err.Error()})
		return false
	}
	s.mu.Lock()
	s.restarts++
	s.mu.Unlock()
	r.log.Info("bench: inboxd restarted", "node", s.addr)
	share := max(len(r.users)/len(r.srv.nodes)/2, 1)
	for end := time.Now().Add(outageWait); len(r.usersOn(s.addr)) < share; {
		if time.Now().After(end) {
			r.log.Warn("bench: the restarted node has not taken its share of the users", "node", s.addr, "within", outageWait)
			return true
		}
		select {
		case <-ctx.Done():
			return false
		case <-time.After(50 * time.Millisecond):
		}
	}
	r.log.Info("bench: the restarted node serves its share of the users", "node", s.addr)
	return true
}

// clusterChaos kills -9 a random node Chaos times, one after the other:
// each time it measures the failover, restarts the node and waits until
// it serves users again before the next kill.
func (r *runner) clusterChaos(ctx context.Context, rng *rand.Rand) {
	if !backoff.Sleep(ctx, r.cfg.Duration/10) {
		return
	}
	for range r.cfg.Chaos {
		s := r.srv.nodes[rng.IntN(len(r.srv.nodes))]
		r.outage(ctx, s, "KILL", s.kill)
		r.stats.kills.Add(1)
		if !r.rejoin(ctx, s) {
			return
		}
	}
}

// rolling SIGTERMs each node in turn, measures the handover of its users,
// restarts it and waits until it serves users again before the next.
func (r *runner) rolling(ctx context.Context) {
	if !backoff.Sleep(ctx, r.cfg.Duration/10) {
		return
	}
	for _, s := range r.srv.nodes {
		r.outage(ctx, s, "TERM", s.stop)
		if !r.rejoin(ctx, s) {
			return
		}
	}
}

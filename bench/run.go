package bench

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/inboxd/inboxd/client"
	"github.com/inboxd/inboxd/internal/backoff"
	"github.com/inboxd/inboxd/token"
	"github.com/inboxd/inboxd/wire"
	"github.com/inboxd/inboxd/wire/wirepb"
	"google.golang.org/protobuf/proto"
)

// runner is the state of one Run.
type runner struct {
	cfg    Config
	log    *slog.Logger
	addr   string   // as given: one address, or a comma-separated list of a cluster's nodes
	addrs  []string // addr split
	srv    *fleet   // nil against a server given by address
	model  *Model
	stats  stats
	hists  hists
	t0     time.Time
	nonce  string // in every client msg id: unique across runs
	dials  chan struct{}
	users  []*user
	devs   []*device
	groups []*group
	byConv map[uint64]*group

	everConnected atomic.Int64
	marksInFlight atomic.Int64

	retryMu sync.Mutex
	retryQ  []retryItem

	amendMu   sync.Mutex
	amendable []int   // acknowledged plain sends: what recalls and edits change
	sentAt    []int64 // by send handle: the first attempt's time; set by pace

	vmu        sync.Mutex
	violations []Violation // found while running (a device saw a gap in a SYNC page, …)

	watch   atomic.Pointer[outageWatch] // the node stopped now, in a cluster
	omu     sync.Mutex
	outages []Outage
}

type group struct {
	conv    uint64
	owner   *user   // nil for a direct conversation
	members []*user // of a direct conversation: its two users
	direct  bool
	head    atomic.Uint64 // newest acknowledged conv_seq
}

type retryItem struct {
	send    int
	attempt int // the attempts made so far
	due     time.Time
}

// Run drives the load that cfg describes, then verifies every device's
// inbox against what was sent, and reports. It returns an error only when
// the run could not be made (the server did not start, setup failed); the
// violations the verifier found are in the Report.
func Run(ctx context.Context, cfg Config) (Report, error) {
	if err := cfg.validate(); err != nil {
		return Report{}, err
	}
	r := &runner{cfg: cfg, log: cfg.Logger, model: NewModel(), t0: time.Now(),
		hists: hists{ack: newHist(), delivery: newHist()}, dials: make(chan struct{}, 64),
		nonce: strconv.FormatUint(cfg.Seed%(1<<32), 36), byConv: make(map[uint64]*group)}
	rep := Report{Users: cfg.Users, Devices: cfg.Devices, Connections: cfg.Users * cfg.Devices,
		Groups: FormatGroups(cfg.Groups), DirectPairs: cfg.DirectPairs, Rate: cfg.Rate, Duration: cfg.Duration.Seconds(), Seed: cfg.Seed, Store: "external"}
	if err := raiseNoFile(uint64(cfg.Users*cfg.Devices) + 1024); err != nil {
		r.log.Warn("bench: cannot raise the open file limit", "err", err)
	}

	secret := cfg.Secret
	if cfg.Addr == "" {
		sc := cfg.Server
		if sc.Dir == "" {
			dir, err := os.MkdirTemp("", "inboxd-bench-")
			if err != nil {
				return rep, err
			}
			defer os.RemoveAll(dir)
			sc.Dir = dir
		}
		srv, sec, err := startFleet(ctx, sc, r.log)
		if err != nil {
			return rep, err
		}
		defer srv.close()
		r.srv, r.addr, secret = srv, srv.addrs(), sec
		rep.Store, rep.Nodes = srv.cfg.Store, len(srv.nodes)
		if sc.Bare {
			rep.Store = "bare"
		}
		rep.ServerLog = filepath.Join(sc.Dir, "inboxd.log")
		if len(srv.nodes) > 1 {
			rep.ServerLog = filepath.Join(sc.Dir, "inboxd-*.log")
		}
	} else {
		r.addr = cfg.Addr
	}
	rep.Addr = r.addr
	r.addrs = client.SplitAddrs(r.addr)

	runCtx, stopDevices := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() {
		stopDevices()
		for _, d := range r.devs {
			d.goAway(0)
		}
		wg.Wait()
	}()
	if err := r.setup(runCtx, &wg, secret, &rep); err != nil {
		return rep, err
	}
	r.load(runCtx, &rep)
	r.finish(runCtx, &rep)
	return rep, nil
}

// raiseNoFile lifts the soft limit on open files to at least n (up to the
// hard limit): every simulated device is a socket, and the server started
// as a child inherits the limit.
func raiseNoFile(n uint64) error {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return err
	}
	if lim.Cur >= n {
		return nil
	}
	lim.Cur = min(max(n, lim.Cur), lim.Max)
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return err
	}
	if lim.Cur < n {
		return fmt.Errorf("hard limit %d below the %d files needed", lim.Max, n)
	}
	return nil
}

// now is the time since the run started, in ns: the clock of the send
// times carried in message bodies.
func (r *runner) now() int64 { return int64(time.Since(r.t0)) }

func (r *runner) violation(v Violation) {
	r.vmu.Lock()
	defer r.vmu.Unlock()
	if len(r.violations) < 1000 {
		r.violations = append(r.violations, v)
	}
}

// connected counts a device's connection and reports whether it is a
// reconnection.
func (r *runner) connected(d *device) bool {
	if d.everConnected {
		return true
	}
	d.everConnected = true
	r.everConnected.Add(1)
	return false
}

// setup starts every device and creates the groups.
func (r *runner) setup(runCtx context.Context, wg *sync.WaitGroup, secret []byte, rep *Report) error {
	cfg := r.cfg
	ctx, cancel := context.WithTimeout(runCtx, cfg.SetupTimeout)
	defer cancel()
	exp := time.Now().Add(cfg.Duration + cfg.SetupTimeout + cfg.DrainTimeout + time.Hour)
	for i := range cfg.Users {
		u := &user{id: cfg.UserBase + uint64(i) + 1}
		for j := range cfg.Devices {
			d := &device{r: r, user: u, name: "d" + strconv.Itoa(j), idx: len(r.devs), wake: make(chan struct{}), digest: digestSeed}
			tok, err := token.Sign(secret, token.Claims{User: u.id, Device: d.name, Expiry: exp})
			if err != nil {
				return fmt.Errorf("bench: token: %w", err)
			}
			d.token = tok
			u.devices = append(u.devices, d)
			r.devs = append(r.devs, d)
		}
		r.users = append(r.users, u)
	}
	var before procStats
	if r.srv != nil {
		_, before = r.srv.sample()
	}
	for _, d := range r.devs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d.run(runCtx)
		}()
	}
	for r.everConnected.Load() < int64(len(r.devs)) {
		select {
		case <-ctx.Done():
			return fmt.Errorf("bench: %d of %d devices connected within %v", r.everConnected.Load(), len(r.devs), cfg.SetupTimeout)
		case <-time.After(20 * time.Millisecond):
		}
	}
	if r.srv != nil {
		// Let the server settle, then take its memory per connection.
		time.Sleep(500 * time.Millisecond)
		_, after := r.srv.sample()
		rep.ServerIdleBytesPerConn = float64(after.rss-before.rss) / float64(len(r.devs))
		rep.ServerRSSBeforeConnect, rep.ServerRSSConnected = before.rss, after.rss
	}
	return r.createGroups(ctx)
}

// createGroups creates the groups of the mix, members drawn at random.
func (r *runner) createGroups(ctx context.Context) error {
	rng := rand.New(rand.NewPCG(r.cfg.Seed, 1))
	type plan struct {
		owner   *user
		members []*user
	}
	var plans []plan
	for _, spec := range r.cfg.Groups {
		for range spec.Count {
			perm := rng.Perm(len(r.users))[:spec.Size]
			p := plan{owner: r.users[perm[0]]}
			for _, i := range perm {
				p.members = append(p.members, r.users[i])
			}
			plans = append(plans, p)
		}
	}
	r.groups = make([]*group, len(plans))
	err := inParallel(16, len(plans), func(i int) error {
		// Named uniquely: a create notice names the group it belongs to.
		name := "bench " + r.nonce + " group " + strconv.Itoa(i)
		g, err := r.createGroup(ctx, name, plans[i].owner, plans[i].members)
		r.groups[i] = g
		return err
	})
	if err != nil {
		return err
	}
	for _, g := range r.groups {
		ids := make([]uint64, len(g.members))
		for i, m := range g.members {
			ids[i] = m.id
		}
		r.model.AddGroup(g.conv, g.owner.id, ids)
		r.byConv[g.conv] = g
	}
	r.addDirectPairs(rng)
	return nil
}

// addDirectPairs adds the direct conversations to the send mix: distinct
// pairs of distinct users. Nothing is created: the first send does it.
func (r *runner) addDirectPairs(rng *rand.Rand) {
	for n := 0; n < r.cfg.DirectPairs && n < len(r.users)*(len(r.users)-1)/2; {
		a, b := r.users[rng.IntN(len(r.users))], r.users[rng.IntN(len(r.users))]
		conv := wire.DirectConv(a.id, b.id)
		if a == b || r.byConv[conv] != nil {
			continue
		}
		g := &group{conv: conv, members: []*user{a, b}, direct: true}
		r.groups = append(r.groups, g)
		r.byConv[conv] = g
		r.model.AddDirect(conv, a.id, b.id)
		n++
	}
}

// peer returns the user of direct conversation g who is not u.
func (g *group) peer(u *user) *user {
	if g.members[0] == u {
		return g.members[1]
	}
	return g.members[0]
}

// createGroup creates the group named name. A create refused with a
// retryable code is made again; one that may have taken effect all the
// same (a TIMEOUT, an UNAVAILABLE the store settles later, a connection
// lost with it in flight) is recorded in the model first: made again, it
// may leave a second group, which holds only its create notice.
func (r *runner) createGroup(ctx context.Context, name string, owner *user, members []*user) (*group, error) {
	req := &wirepb.CreateGroupRequest{Name: name}
	ids := make([]uint64, len(members))
	for i, m := range members {
		ids[i] = m.id
		if i > 0 {
			req.Members = append(req.Members, m.id)
		}
	}
	body, err := proto.Marshal(req)
	if err != nil {
		return nil, err
	}
	wait := backoff.Policy{Min: 50 * time.Millisecond, Max: 500 * time.Millisecond}
	for attempt := 0; ; attempt++ {
		d := owner.onlineDevice()
		if d == nil {
			err = errOffline
		} else {
			var resp []byte
			resp, err = d.call(ctx, wire.CmdCreateGroup, func(b []byte) []byte { return append(b, body...) })
			if err == nil {
				var cg wirepb.CreateGroupResponse
				if err := proto.Unmarshal(resp, &cg); err != nil || cg.Group == nil {
					return nil, fmt.Errorf("bench: CREATE_GROUP response: %v", err)
				}
				return &group{conv: cg.Group.Id, owner: owner, members: members}, nil
			}
			// RATE_LIMITED refuses a request before it runs.
			if transient(err) && codeOf(err) != wire.CodeRateLimited {
				r.model.MaybeGroup(name, owner.id, ids)
			}
		}
		if !transient(err) || attempt > 50 || !backoff.Sleep(ctx, max(wait.Delay(attempt), retryWait(err, 0))) {
			return nil, fmt.Errorf("bench: create group: %w", err)
		}
	}
}

// onlineDevice returns a connected device of u, or nil.
func (u *user) onlineDevice() *device {
	for _, d := range u.devices {
		if d.online.Load() {
			return d
		}
	}
	return nil
}

// acked records a send's acknowledgement.
func (r *runner) acked(d *device, req *request, a sendAck) {
	r.stats.acked.Add(1)
	r.ackWatched(d, req)
	if a.duplicate {
		r.stats.duplicateAcks.Add(1)
	}
	r.hists.ack.record(req.send, r.now()-req.start)
	conv := r.model.Ack(req.send, a.msgID, a.convSeq)
	if a.conv != 0 && a.conv != conv {
		r.violation(Violation{Kind: ViolationMismatch, Conv: conv,
			Detail: fmt.Sprintf("send %d acknowledged in conversation %d", req.send, a.conv)})
	}
	// Recalls and edits go to groups' messages only.
	if s := r.model.Send(req.send); s.Op == OpSend && !a.duplicate && (r.byConv[conv] == nil || !r.byConv[conv].direct) {
		r.amendMu.Lock()
		r.amendable = append(r.amendable, req.send)
		r.amendMu.Unlock()
	}
	if g := r.byConv[conv]; g != nil {
		for {
			h := g.head.Load()
			if h >= a.convSeq || g.head.CompareAndSwap(h, a.convSeq) {
				break
			}
		}
	}
}

// minRetryWait is the least wait before a refused or lost request is
// made again, when the server gave no longer retry_after_ms.
const minRetryWait = 50 * time.Millisecond

// maxResendWait caps the backoff of a send made again and again: short,
// as reconnectMax, for a bounded run.
const maxResendWait = time.Second

// retry queues a send whose outcome is unknown, made attempt times
// already, to be sent again under the same client msg id.
func (r *runner) retry(send, attempt int) { r.retryAfter(send, attempt, 0) }

// retryAfter queues send, made attempt times already, to be sent again
// after a backoff that doubles with each attempt, and at least the
// server's wait (docs/protocol.md, "Sending and retries"): the sends of a
// user refused together (RATE_LIMITED by the user's bucket, UNAVAILABLE
// while a node fails over) must not all come back together, ever faster
// than the bucket refills.
func (r *runner) retryAfter(send, attempt int, wait time.Duration) {
	r.stats.retries.Add(1)
	policy := backoff.Policy{Min: minRetryWait, Max: maxResendWait}
	r.retryMu.Lock()
	r.retryQ = append(r.retryQ, retryItem{send: send, attempt: attempt, due: time.Now().Add(max(policy.Delay(attempt-1), wait))})
	r.retryMu.Unlock()
}

// takeRetries removes and returns the retries due by now.
func (r *runner) takeRetries(now time.Time) []retryItem {
	r.retryMu.Lock()
	defer r.retryMu.Unlock()
	var due []retryItem
	keep := r.retryQ[:0]
	for _, it := range r.retryQ {
		if it.due.After(now) {
			keep = append(keep, it)
		} else {
			due = append(due, it)
		}
	}
	r.retryQ = keep
	return due
}

// inParallel runs f(0) … f(n-1) on the given number of goroutines and
// returns the first error (all run regardless).
func inParallel(workers, n int, f func(i int) error) error {
	errs := make(chan error, n)
	work := make(chan int)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for i := range work {
				if err := f(i); err != nil {
					errs <- err
				}
			}
		})
	}
	for i := range n {
		work <- i
	}
	close(work)
	wg.Wait()
	close(errs)
	return <-errs
}

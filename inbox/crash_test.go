package inbox

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/inboxd/inboxd/timeline"
	"github.com/inboxd/inboxd/timeline/pebble"
	"github.com/inboxd/inboxd/wire"
)

// crashHook crashes the committer at its step once, the first time after
// it is armed. The test fails if it never fires: a crash test whose crash
// did not happen tests nothing.
type crashHook struct {
	step         commitStep
	armed, fired atomic.Bool
}

// newCrashHook returns a crash hook at step, not armed; its hook method
// goes in Config.stepHook.
func newCrashHook(t testing.TB, step commitStep) *crashHook {
	h := &crashHook{step: step}
	t.Cleanup(func() {
		if !h.fired.Load() {
			t.Errorf("the crash hook at %v never fired", step)
		}
	})
	return h
}

// crashOnce returns a crash hook that fires at step the first time.
func crashOnce(t testing.TB, step commitStep) func(commitStep) bool {
	h := newCrashHook(t, step)
	h.arm()
	return h.hook
}

func (h *crashHook) arm() { h.armed.Store(true) }

func (h *crashHook) hook(s commitStep) bool {
	return s == h.step && h.armed.Load() && h.fired.CompareAndSwap(false, true)
}

// wait returns once the hook has fired, for a crash the test does not
// cause itself, such as a delivery's apply: the test fails if it does not
// fire in time instead of hanging.
func (h *crashHook) wait(t testing.TB) {
	t.Helper()
	waitFor(t, fmt.Sprintf("the crash hook at %v to fire", h.step), h.fired.Load)
}

// TestCrashPoints stops the committer at each step of a group commit, drops
// every unsynced write as a power cut would, reopens the store and checks
// that a client retrying its send ends with the message exactly once in
// every inbox, and that an acknowledged message was never lost.
func TestCrashPoints(t *testing.T) {
	tests := []struct {
		step  commitStep
		acked bool // the sender got the ack before the crash
		lands bool // the message is in the store after the crash
	}{
		{stepBeforeCommit, false, false},
		{stepAfterCommit, false, true},
		{stepAfterAck, true, true},
	}
	for _, tt := range tests {
		t.Run(tt.step.String(), func(t *testing.T) {
			// A clock a second further at each batch, so that the order
			// of the conversations is known.
			var clock atomic.Int64
			clock.Store(time.Now().UnixMilli())
			tick := func() time.Time { return time.UnixMilli(clock.Add(1000)) }
			e := newEnv(t, Config{Now: tick})
			conv := e.create(1, 2, 3)
			older := e.create(3, 1, 2)
			e.send(1, conv, "m1", "first")

			e.close()
			e.cfg.stepHook = crashOnce(t, tt.step)
			e.open()
			first, err := e.svc.SendGroupMessage(ctx, 2, conv, "m2", wire.KindText, []byte("second"))
			if acked := err == nil; acked != tt.acked {
				t.Fatalf("send before the crash: %+v, %v; acked want %v", first, err, tt.acked)
			}
			e.cfg.stepHook = nil
			e.crash()

			retry := e.send(2, conv, "m2", "second")
			if retry.Duplicate != tt.lands {
				t.Fatalf("retry after crash: duplicate %v, want %v", retry.Duplicate, tt.lands)
			}
			if tt.acked && (retry.MsgID != first.MsgID || retry.ConvSeq != first.ConvSeq) {
				t.Fatalf("retry %+v differs from the acked %+v", retry, first)
			}
			e.send(3, conv, "m3", "third")
			for _, u := range []uint64{1, 2, 3} {
				if got := e.bodies(u, conv); strings.Join(got, ",") != "first,second,third" {
					t.Errorf("user %d has %q", u, got)
				}
				if s := seqs(e.inbox(u)); !contiguous(s) {
					t.Errorf("user %d seqs %v", u, s)
				}
				// The activity index moved with the batch, once.
				var order []uint64
				for _, c := range e.conversations(u) {
					order = append(order, c.Conv)
				}
				if fmt.Sprint(order) != fmt.Sprint([]uint64{conv, older}) {
					t.Errorf("user %d conversations %v, want %v", u, order, []uint64{conv, older})
				}
			}
		})
	}
}

// TestStoreFailureFailsBatch makes the store refuse a commit: every command
// of the batch fails with ErrUnavailable, nothing of it is visible, and the
// service carries on with contiguous seqs once the store is back.
func TestStoreFailureFailsBatch(t *testing.T) {
	e := newEnv(t, Config{})
	conv := e.create(1, 2)
	e.close()
	st, err := pebble.Open(pebble.Options{Dir: "db", FS: e.fs})
	if err != nil {
		t.Fatal(err)
	}
	flaky := &flakyStore{Store: st}
	svc, err := New(ctx, Config{Store: flaky})
	if err != nil {
		t.Fatal(err)
	}
	e.store, e.svc = st, svc

	e.send(1, conv, "a", "a")
	flaky.fail.Store(true)
	if _, err := svc.SendGroupMessage(ctx, 1, conv, "b", wire.KindText, []byte("b")); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("send during outage: %v, want ErrUnavailable", err)
	}
	if err := svc.Invite(ctx, 1, conv, []uint64{3}); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("invite during outage: %v, want ErrUnavailable", err)
	}
	flaky.fail.Store(false)
	e.send(1, conv, "b", "b")
	e.send(2, conv, "c", "c")
	if got := e.bodies(2, conv); strings.Join(got, "") != "abc" {
		t.Fatalf("bodies %q", got)
	}
	if s := seqs(e.inbox(2)); !contiguous(s) || len(s) != 4 {
		t.Fatalf("seqs %v", s)
	}
	// The failed invite left no trace in the cached membership.
	if _, err := svc.SendGroupMessage(ctx, 3, conv, "d", wire.KindText, nil); !errors.Is(err, ErrNotMember) {
		t.Fatalf("user of a failed invite sends: %v", err)
	}
}

type flakyStore struct {
	timeline.Store
	fail atomic.Bool
}

func (f *flakyStore) Commit(ctx context.Context, b *timeline.Batch) error {
	if f.fail.Load() {
		return errors.New("injected outage")
	}
	return f.Store.Commit(ctx, b)
}

// The kill -9 test runs a writer in a child process (this test binary again)
// on a real directory with real fsync, kills it at a random moment, and
// checks in the parent that every send the child reported as acknowledged
// is in every member's inbox once, with contiguous seqs.
const killChildEnv = "INBOXD_KILL_CHILD_DIR"

func TestKill9(t *testing.T) {
	if dir := os.Getenv(killChildEnv); dir != "" {
		killChild(dir)
		return
	}
	dir := t.TempDir()
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 9))
	acked := map[string]SendResult{}
	var conv uint64
	for round := range 4 {
		cmd := exec.Command(os.Args[0], "-test.run=^TestKill9$", "-test.v=false")
		cmd.Env = append(os.Environ(), killChildEnv+"="+dir)
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		lines := bufio.NewScanner(out)
		killAfter := 50 + rng.IntN(400)
		n := 0
		for lines.Scan() {
			f := strings.Fields(lines.Text())
			switch {
			case len(f) == 2 && f[0] == "conv":
				conv, _ = strconv.ParseUint(f[1], 10, 64)
			case len(f) == 4 && f[0] == "ack":
				seq, _ := strconv.ParseUint(f[2], 10, 64)
				id, _ := strconv.ParseUint(f[3], 10, 64)
				acked[f[1]] = SendResult{ConvSeq: seq, MsgID: id}
				if n++; n == killAfter {
					cmd.Process.Signal(syscall.SIGKILL)
				}
			}
		}
		cmd.Wait()
		if n < killAfter {
			t.Fatalf("round %d: child stopped after %d acks before the kill", round, n)
		}
		verifyKilled(t, dir, conv, acked)
	}
	t.Logf("%d acknowledged sends survived 4 kill -9s", len(acked))
}

const killMembers = 5

// killChild sends from several goroutines until killed, printing each ack.
func killChild(dir string) {
	st, err := pebble.Open(pebble.Options{Dir: dir})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	svc, err := New(context.Background(), Config{Store: st})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	conv := uint64(0)
	if cs, _ := st.Conversations(ctx, 1); len(cs) > 0 {
		conv = cs[0].Conv
	} else {
		g, err := svc.CreateGroup(ctx, 1, NewGroup{Members: []uint64{2, 3, 4, 5}})
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		conv = g.ID
	}
	var mu sync.Mutex
	fmt.Printf("conv %d\n", conv)
	var wg sync.WaitGroup
	start := time.Now().UnixNano()
	for w := range 8 {
		wg.Go(func() {
			sender := uint64(w%killMembers + 1)
			for i := 0; time.Since(time.Unix(0, start)) < time.Minute; i++ {
				id := fmt.Sprintf("%d-%d-%d", start, w, i)
				r, err := svc.SendGroupMessage(ctx, sender, conv, id, wire.KindText, []byte(id))
				if err != nil {
					fmt.Fprintln(os.Stderr, err)
					os.Exit(2)
				}
				mu.Lock()
				fmt.Printf("ack %s %d %d\n", id, r.ConvSeq, r.MsgID)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	os.Exit(0)
}

func verifyKilled(t *testing.T, dir string, conv uint64, acked map[string]SendResult) {
	t.Helper()
	st, err := pebble.Open(pebble.Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	msgs, err := st.Messages(ctx, conv, timeline.Range{})
	if err != nil {
		t.Fatal(err)
	}
	byID := map[string]timeline.Message{}
	for i, m := range msgs {
		if m.ConvSeq != uint64(i+1) {
			t.Fatalf("conversation has conv_seq %d at position %d", m.ConvSeq, i)
		}
		if _, dup := byID[m.ClientMsgID]; dup && m.ClientMsgID != "" {
			t.Fatalf("client msg id %q stored twice", m.ClientMsgID)
		}
		byID[m.ClientMsgID] = m
	}
	for id, r := range acked {
		m, ok := byID[id]
		if !ok || m.ConvSeq != r.ConvSeq || m.ID != r.MsgID {
			t.Fatalf("acknowledged send %s (%+v) lost: stored %+v, %v", id, r, m, ok)
		}
	}
	for u := uint64(1); u <= killMembers; u++ {
		rows, err := st.Inbox(ctx, u, timeline.Range{})
		if err != nil {
			t.Fatal(err)
		}
		if len(rows) != len(msgs) {
			t.Fatalf("user %d: %d rows for %d messages", u, len(rows), len(msgs))
		}
		for i, r := range rows {
			if r.Seq != uint64(i+1) || r.ConvSeq != uint64(i+1) {
				t.Fatalf("user %d row %d: %+v", u, i, r)
			}
		}
	}
}

// slowSync is a store whose commits become visible before they are durable,
// as Pebble's do while the WAL syncs: Commit applies the batch, then waits.
type slowSync struct {
	timeline.Store
	hold    atomic.Bool
	applied chan struct{}
	synced  chan struct{}
}

func (s *slowSync) Commit(ctx context.Context, b *timeline.Batch) error {
	if err := s.Store.Commit(ctx, b); err != nil {
		return err
	}
	s.wait()
	return nil
}

// wait holds the first batch after hold is set as if its sync took until
// the test closes synced.
func (s *slowSync) wait() {
	if s.hold.CompareAndSwap(true, false) {
		s.applied <- struct{}{}
		<-s.synced
	}
}

// slowApply is a slowSync that a committer pipelines: its Applies hand the
// batch to Pebble, whose sync the held batch's Wait then outlasts.
type slowApply struct{ *slowSync }

func (s slowApply) Apply(ctx context.Context, b *timeline.Batch) (timeline.Pending, error) {
	p, err := s.Store.(timeline.Applier).Apply(ctx, b)
	if err != nil {
		return nil, err
	}
	return slowPending{p, s.slowSync}, nil
}

type slowPending struct {
	timeline.Pending
	s *slowSync
}

func (p slowPending) Wait() error {
	err := p.Pending.Wait()
	p.s.wait()
	return err
}

// TestReadersSeeOnlyDurableEntries reads while a batch is visible in the
// store but not yet durable: Sync, History and Conversations must not show
// it, or a power cut could take back an entry a client already applied.
// The committer commits serially, or pipelines on a store that applies a
// batch before its sync.
func TestReadersSeeOnlyDurableEntries(t *testing.T) {
	for _, pipelined := range []bool{false, true} {
		t.Run(fmt.Sprintf("pipelined=%v", pipelined), func(t *testing.T) {
			testReadersSeeOnlyDurableEntries(t, pipelined)
		})
	}
}

func testReadersSeeOnlyDurableEntries(t *testing.T, pipelined bool) {
	e := newEnv(t, Config{})
	var slow *slowSync
	conv := e.reopenWrapped(Config{}, func(st timeline.Store) timeline.Store {
		slow = &slowSync{Store: st, applied: make(chan struct{}), synced: make(chan struct{})}
		if pipelined {
			return slowApply{slow}
		}
		return slow
	})
	st, svc := e.store, e.svc

	slow.hold.Store(true)
	release := sync.OnceFunc(func() { close(slow.synced) })
	defer release() // a failed check must not leave the committer waiting
	acked := make(chan error, 1)
	go func() {
		_, err := svc.SendGroupMessage(ctx, 1, conv, "c", wire.KindText, []byte("in flight"))
		acked <- err
	}()
	<-slow.applied
	if rows, _ := st.Inbox(ctx, 2, timeline.Range{From: 4}); len(rows) != 1 {
		t.Fatalf("the store shows %d in-flight rows; the test needs 1", len(rows))
	}
	res, err := svc.Sync(ctx, 2, 0, 0)
	if err != nil || res.Head != 3 || len(res.Entries) != 3 {
		t.Fatalf("Sync during the commit: head %d, %d entries, %v; want 3", res.Head, len(res.Entries), err)
	}
	h, err := svc.History(ctx, 2, conv, 0, 0)
	if err != nil || len(h) != 3 || h[0].ConvSeq != 3 {
		t.Fatalf("History during the commit: %d messages, %v", len(h), err)
	}
	if c := e.conversation(2, conv); c.Head != 3 {
		t.Fatalf("Conversations during the commit: head %d", c.Head)
	}
	release()
	if err := <-acked; err != nil {
		t.Fatal(err)
	}
	if res, _ := svc.Sync(ctx, 2, 0, 0); res.Head != 4 || len(res.Entries) != 4 {
		t.Fatalf("Sync after the commit: head %d, %d entries", res.Head, len(res.Entries))
	}
}

// failingSync is a store that a committer pipelines, whose held batch
// reports a failed sync once the test let the committer build the next
// batch on it.
type failingSync struct {
	timeline.Store
	hold    atomic.Bool
	applied chan struct{}
	proceed chan struct{}
}

func (s *failingSync) Apply(ctx context.Context, b *timeline.Batch) (timeline.Pending, error) {
	p, err := s.Store.(timeline.Applier).Apply(ctx, b)
	if err != nil || !s.hold.CompareAndSwap(true, false) {
		return p, err
	}
	s.applied <- struct{}{}
	<-s.proceed
	return failedPending{p}, nil
}

type failedPending struct{ timeline.Pending }

func (p failedPending) Wait() error {
	return errors.Join(errors.New("injected sync failure"), p.Pending.Wait())
}

// TestPipelinedFailureFailsSuccessor fails the sync of a batch after the
// next batch, built on its seqs, was handed to the store: both must fail,
// and the inbox must stay contiguous after.
func TestPipelinedFailureFailsSuccessor(t *testing.T) {
	e := newEnv(t, Config{})
	var fs *failingSync
	conv := e.reopenWrapped(Config{}, func(st timeline.Store) timeline.Store {
		fs = &failingSync{Store: st, applied: make(chan struct{}), proceed: make(chan struct{})}
		return fs
	})
	svc := e.svc
	before := len(e.inbox(2))

	fs.hold.Store(true)
	send := func(cmid string) <-chan error {
		errc := make(chan error, 1)
		go func() {
			_, err := svc.SendGroupMessage(ctx, 1, conv, cmid, wire.KindText, []byte(cmid))
			errc <- err
		}()
		return errc
	}
	first := send("x")
	<-fs.applied
	second := send("y")
	for len(svc.cmds) == 0 { // the committer picks it up when first is handed over
		runtime.Gosched()
	}
	close(fs.proceed)
	for name, errc := range map[string]<-chan error{"the failed batch": first, "its successor": second} {
		if err := <-errc; !errors.Is(err, ErrUnavailable) {
			t.Errorf("send in %s: %v, want ErrUnavailable", name, err)
		}
	}
	// The failed batches may have landed (here they did): retried, each
	// send is in the inbox once.
	for _, cmid := range []string{"x", "y", "z"} {
		e.send(1, conv, cmid, cmid)
	}
	if s := seqs(e.inbox(2)); !contiguous(s) || len(s) != before+3 {
		t.Fatalf("seqs after the failure %v, want %d contiguous", s, before+3)
	}
}

// TestPipelinedAckWhenDurable makes a batch durable while the committer is
// in the middle of building the next one: the batch's sends are answered
// then, not after the next batch is built and handed over.
func TestPipelinedAckWhenDurable(t *testing.T) {
	e := newHeldCommitter(t, Config{})
	slow, held, hold, synced := e.slow, e.held, e.hold, e.synced
	building, release := make(chan struct{}), [2]chan struct{}{make(chan struct{}), make(chan struct{})}
	t.Cleanup(func() { close(release[0]); close(release[1]) })
	conv := e.create(1, 2)
	e.send(1, conv, "a", "loads the sequencer keys")

	e.armed.Store(true)
	acked := make(chan error, 1)
	go func() {
		_, err := e.svc.SendGroupMessage(ctx, 1, conv, "x", wire.KindText, []byte("x"))
		acked <- err
	}()
	<-held // x's batch is built; two commands of the next one queue
	var steps sync.WaitGroup
	for i, r := range release {
		steps.Go(func() {
			if err := e.svc.do(ctx, 2, func(*txn) error {
				building <- struct{}{}
				<-r
				return nil
			}); err != nil {
				t.Error(err)
			}
		})
		waitFor(t, "the command to queue", func() bool { return len(e.svc.cmds) == i+1 })
	}
	slow.hold.Store(true)
	hold <- struct{}{} // x's batch goes to the store, the next is built
	<-slow.applied
	<-building // the first command of the next batch runs
	commits := samples(t, e.svc.metrics.commits)
	synced() // x's batch is durable
	// Observed once the committer can see it: the next command is taken.
	waitFor(t, "x's commit duration", func() bool { return samples(t, e.svc.metrics.commits) > commits })
	release[0] <- struct{}{}
	<-building // the second command runs: the next batch is not handed over
	select {
	case err := <-acked:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("x is not answered while the next batch is built after x was durable")
	}
	release[1] <- struct{}{}
	steps.Wait()
}

// TestCloseLandsBatchInFlight closes the service while a pipelined batch
// syncs: Close waits for it, its send is acknowledged and stored, and no
// goroutine of the committer is left (goleak, in TestMain).
func TestCloseLandsBatchInFlight(t *testing.T) {
	e := newHeldCommitter(t, Config{})
	slow, synced := e.slow, e.synced
	conv := e.create(1, 2)
	e.send(1, conv, "a", "loads the sequencer keys")
	slow.hold.Store(true)
	acked := make(chan error, 1)
	go func() {
		_, err := e.svc.SendGroupMessage(ctx, 1, conv, "x", wire.KindText, []byte("in flight"))
		acked <- err
	}()
	<-slow.applied
	closed := make(chan struct{})
	go func() {
		e.svc.Close()
		close(closed)
	}()
	waitFor(t, "Close to stop taking calls", func() bool {
		e.svc.mu.RLock()
		defer e.svc.mu.RUnlock()
		return e.svc.closed
	})
	select {
	case <-closed:
		t.Fatal("Close returned while a batch was syncing")
	default:
	}
	synced()
	if err := <-acked; err != nil {
		t.Fatalf("the send in flight at Close: %v", err)
	}
	<-closed
	if got := e.bodies(2, conv); strings.Join(got, ",") != "loads the sequencer keys,in flight" {
		t.Fatalf("stored %q", got)
	}
}

// heldCommitter is an env whose committer pipelines on a slowSync store and,
// once armed, stops before its next hand-over: it sends on held and waits
// for hold.
type heldCommitter struct {
	*env
	slow       *slowSync
	armed      atomic.Bool
	held, hold chan struct{}
	synced     func() // lets the held syncs end, once
}

func newHeldCommitter(t *testing.T, cfg Config) *heldCommitter {
	h := &heldCommitter{
		slow: &slowSync{applied: make(chan struct{}), synced: make(chan struct{})},
		held: make(chan struct{}),
		hold: make(chan struct{}),
	}
	cfg.stepHook = func(step commitStep) bool {
		if step == stepBeforeCommit && h.armed.CompareAndSwap(true, false) {
			h.held <- struct{}{}
			<-h.hold
		}
		return false
	}
	h.env = newWrappedEnv(t, cfg, func(st timeline.Store) timeline.Store {
		h.slow.Store = st
		return slowApply{h.slow}
	})
	h.synced = sync.OnceFunc(func() { close(h.slow.synced) })
	// A failed check must not leave the committer held.
	t.Cleanup(func() { close(h.hold); h.synced() })
	return h
}

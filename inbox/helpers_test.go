package inbox

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"go.uber.org/goleak"

	"github.com/inboxd/inboxd/timeline"
	"github.com/inboxd/inboxd/timeline/pebble"
	"github.com/inboxd/inboxd/wire"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// env is a service on an in-memory store.
type env struct {
	t     *testing.T
	fs    vfs.FS
	store timeline.Store // the Pebble store, unwrapped
	svc   *Service
	cfg   Config
	// wrap, when set, wraps the store the service is given at each open.
	wrap func(timeline.Store) timeline.Store
}

func newEnv(t *testing.T, cfg Config) *env {
	t.Helper()
	return newWrappedEnv(t, cfg, nil)
}

// newWrappedEnv is newEnv with a service on wrap's wrapper of the store.
func newWrappedEnv(t *testing.T, cfg Config, wrap func(timeline.Store) timeline.Store) *env {
	t.Helper()
	e := &env{t: t, fs: vfs.NewCrashableMem(), cfg: cfg, wrap: wrap}
	e.open()
	t.Cleanup(e.close)
	return e
}

func (e *env) open() {
	e.t.Helper()
	st, err := pebble.Open(pebble.Options{Dir: "db", FS: e.fs})
	if err != nil {
		e.t.Fatalf("open store: %v", err)
	}
	cfg := e.cfg
	cfg.Store = st
	if e.wrap != nil {
		cfg.Store = e.wrap(st)
	}
	svc, err := New(context.Background(), cfg)
	if err != nil {
		st.Close()
		e.t.Fatalf("new service: %v", err)
	}
	e.store, e.svc = st, svc
}

// reopenWrapped gives user 2 a durable message from user 1 in a new group,
// then reopens e with the service on cfg and on wrap's wrapper of the store,
// and sends once more so that the sequencer's keys are loaded before a test
// holds the wrapper. It returns the group.
func (e *env) reopenWrapped(cfg Config, wrap func(timeline.Store) timeline.Store) uint64 {
	e.t.Helper()
	conv := e.create(1, 2)
	e.send(1, conv, "a", "durable")
	e.close()
	e.cfg, e.wrap = cfg, wrap
	e.open()
	e.send(1, conv, "b", "loads the sequencer keys")
	return conv
}

func (e *env) close() {
	if e.svc == nil {
		return
	}
	e.svc.Close()
	e.store.Close()
	e.svc, e.store = nil, nil
}

// crash stops the service as if the process died: only what was synced
// survives, and the store is reopened on what is left.
func (e *env) crash() {
	e.t.Helper()
	e.close()
	e.fs = e.fs.(*vfs.MemFS).CrashClone(vfs.CrashCloneCfg{})
	e.open()
}

var ctx = context.Background()

func (e *env) create(owner uint64, members ...uint64) uint64 {
	e.t.Helper()
	g, err := e.svc.CreateGroup(ctx, owner, NewGroup{Members: members})
	if err != nil {
		e.t.Fatalf("CreateGroup(%d, %v): %v", owner, members, err)
	}
	return g.ID
}

func (e *env) send(sender, conv uint64, cmid, body string) SendResult {
	e.t.Helper()
	r, err := e.svc.SendGroupMessage(ctx, sender, conv, cmid, wire.KindText, []byte(body))
	if err != nil {
		e.t.Fatalf("send %q from %d to %d: %v", cmid, sender, conv, err)
	}
	return r
}

// inbox reads the user's whole inbox through Sync, a page at a time.
func (e *env) inbox(user uint64) []Entry {
	e.t.Helper()
	var all []Entry
	var after uint64
	for {
		res, err := e.svc.Sync(ctx, user, after, 7)
		if err != nil {
			e.t.Fatalf("Sync(%d, %d): %v", user, after, err)
		}
		all = append(all, res.Entries...)
		if !res.HasMore {
			if len(all) > 0 && res.Head != all[len(all)-1].Row.Seq {
				e.t.Fatalf("user %d: head %d but last row %d", user, res.Head, all[len(all)-1].Row.Seq)
			}
			return all
		}
		after = res.Entries[len(res.Entries)-1].Row.Seq
	}
}

// bodies returns the bodies of the user's text messages in conv, in inbox order.
func (e *env) bodies(user, conv uint64) []string {
	var out []string
	for _, en := range e.inbox(user) {
		if en.Row.Conv == conv && en.Row.Kind == wire.KindText {
			out = append(out, string(en.Msg.Body))
		}
	}
	return out
}

// conversations reads the user's whole conversation list, in pages of 3.
func (e *env) conversations(user uint64) []ConversationInfo {
	e.t.Helper()
	var all []ConversationInfo
	for {
		page, err := e.svc.Conversations(ctx, user, len(all), 3)
		if err != nil {
			e.t.Fatalf("Conversations(%d, %d): %v", user, len(all), err)
		}
		all = append(all, page.Conversations...)
		if !page.HasMore {
			return all
		}
	}
}

func (e *env) conversation(user, conv uint64) ConversationInfo {
	e.t.Helper()
	for _, c := range e.conversations(user) {
		if c.Conv == conv {
			return c
		}
	}
	e.t.Fatalf("user %d has no conversation %d", user, conv)
	return ConversationInfo{}
}

// recorder is a Notifier and OfflinePusher that records what it is given.
type recorder struct {
	mu      sync.Mutex
	online  map[uint64]bool
	pushed  map[uint64][]Entry
	offline map[uint64][]Entry
}

func newRecorder(online ...uint64) *recorder {
	r := &recorder{online: map[uint64]bool{}, pushed: map[uint64][]Entry{}, offline: map[uint64][]Entry{}}
	for _, u := range online {
		r.online[u] = true
	}
	return r
}

func (r *recorder) Notify(user uint64, es []Entry) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.pushed[user] = append(r.pushed[user], es...)
	return r.online[user]
}

func (r *recorder) PushOffline(user uint64, e Entry) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.offline[user] = append(r.offline[user], e)
}

// waitFor polls cond: the dispatcher runs after the ack.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func seqs(es []Entry) []uint64 {
	out := make([]uint64, len(es))
	for i, e := range es {
		out[i] = e.Row.Seq
	}
	return out
}

func contiguous(s []uint64) bool {
	for i, n := range s {
		if n != uint64(i+1) {
			return false
		}
	}
	return true
}

// gate holds the committer before it writes a batch, so that the commands
// a test sends meanwhile queue up and land together in the next batch. Its
// hook goes in Config.stepHook.
type gate struct {
	release chan struct{}
	armed   atomic.Bool
}

func newGate() *gate { return &gate{release: make(chan struct{})} }

func (g *gate) hook(step commitStep) bool {
	if step == stepBeforeCommit && g.armed.CompareAndSwap(true, false) {
		<-g.release
	}
	return false
}

// hold sends a message of sender to conv and returns once the committer
// holds its batch; the send's result arrives on the channel after open.
func (g *gate) hold(t testing.TB, e *env, sender, conv uint64) <-chan SendResult {
	t.Helper()
	g.armed.Store(true)
	res := make(chan SendResult, 1)
	go func() { res <- e.send(sender, conv, "blocker", "holds the committer") }()
	waitFor(t, "the committer to hold", func() bool { return !g.armed.Load() })
	return res
}

// open lets the held batch and everything queued behind it go.
func (g *gate) open() { close(g.release) }

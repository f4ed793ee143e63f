package inbox

import (
	"cmp"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/inboxd/inboxd/timeline"
	"github.com/inboxd/inboxd/wire"
)

// TestRandomizedModel runs random group operations from many goroutines,
// with simulated crashes at random commit steps followed by a power-cut
// reopen, and checks the store against a model rebuilt from scratch: replay
// each conversation's notices to know who was a member of every message, and
// derive what every inbox, marker and unread count must be.
//
// A failure names its seed; -seed replays it:
//
//	go test ./inbox -run TestRandomizedModel -seed 12345
//
// (Goroutine scheduling and crash timing still vary between runs, so a
// replay repeats the operations and crash points, not every interleaving.)
func TestRandomizedModel(t *testing.T) {
	seed := modelSeedFor(t)
	m := newModel(seed)
	steps := []commitStep{stepBeforeCommit, stepAfterCommit, stepAfterAck}
	var armed atomic.Uint32    // the commitStep to crash at; 0 when disarmed
	var countdown atomic.Int32 // commits to pass at that step first
	crashed := make(chan struct{}, 1)
	crashes := 0
	// A group cache of two or three groups: groups are evicted and reloaded
	// all the time, also in the middle of a batch.
	e := newEnv(t, Config{MaxGroupSize: 8, GroupCacheBytes: 4 << 10, stepHook: func(step commitStep) bool {
		if armed.Load() != uint32(step) || countdown.Add(-1) > 0 {
			return false
		}
		armed.Store(0)
		crashed <- struct{}{}
		return true
	}})

	// Each worker runs ops operations, and more (up to maxOps) until the
	// workload has acknowledged minAcked sends: on a loaded machine, crashes
	// fail bigger group commits and fewer of the first ops succeed.
	const workers, ops, maxOps, minAcked, users = 6, 250, 2500, 150, 12
	var mu sync.RWMutex // write-held while the service is reopened
	var wg sync.WaitGroup
	var done atomic.Int32
	for w := range workers {
		rng := rand.New(rand.NewPCG(seed, uint64(w)))
		wg.Go(func() {
			defer done.Add(1)
			for i := 0; i < maxOps && (i < ops || m.ackedSends() < minAcked); i++ {
				mu.RLock()
				m.step(t, func(uint64) *Service { return e.svc }, rng, w, i, users)
				mu.RUnlock()
			}
		})
	}
	for done.Load() < workers {
		countdown.Store(int32(10 + m.intn(40)))
		armed.Store(uint32(steps[m.intn(len(steps))]))
		select {
		case <-crashed:
			crashes++
		case <-waitAll(&wg):
		}
		mu.Lock()
		e.crash()
		m.verify(t, e.store, e.conversations, users)
		m.verifyReceipts(t, e.store, func(uint64) *Service { return e.svc }, users)
		mu.Unlock()
	}
	wg.Wait()
	armed.Store(0)
	m.verifyReceipts(t, e.store, func(uint64) *Service { return e.svc }, users)
	m.verify(t, e.store, e.conversations, users)
	t.Logf("%d sends acknowledged, %d recalls and edits, %d groups (%d direct), %d crashes", len(m.acked), m.amends, len(m.groups), len(m.direct), crashes)
	if len(m.acked) < minAcked || crashes == 0 {
		t.Fatalf("the workload did too little to test anything")
	}
}

// modelSeed replays a run of a randomized model test; 0 picks a random seed.
var modelSeed = flag.Uint64("seed", 0, "seed of the randomized model tests (0: random)")

// modelSeedFor returns the seed of t's run, and logs how to replay it.
func modelSeedFor(t *testing.T) uint64 {
	seed := *modelSeed
	if seed == 0 {
		seed = rand.Uint64N(1<<63) + 1
	}
	t.Logf("seed %d (replay with -seed %d)", seed, seed)
	return seed
}

func newModel(seed uint64) *model {
	return &model{rng: rand.New(rand.NewPCG(seed, seed>>1)), acked: map[dedupKey]SendResult{}, stored: map[dedupKey]bool{}}
}

func waitAll(wg *sync.WaitGroup) <-chan struct{} {
	c := make(chan struct{})
	go func() { wg.Wait(); close(c) }()
	return c
}

type modelGroup struct {
	id      uint64
	members []uint64
}

type model struct {
	mu     sync.Mutex
	rng    *rand.Rand
	groups []modelGroup
	acked  map[dedupKey]SendResult // first acknowledged result per send
	stored map[dedupKey]bool       // a call returned Duplicate false
	sent   []dedupKey              // for resends
	sentTo map[dedupKey]uint64
	// directTo holds the recipient of each direct send, which a resend
	// sends again with SendDirect; direct lists the direct conversations
	// among groups.
	directTo map[dedupKey]uint64
	direct   map[uint64]bool
	// mentioned holds the mentions each send asked for, sorted, with 0
	// for @all.
	mentioned map[dedupKey][]uint64
	amends    int // recall and edit entries stored, at the last verify
	ackedList []dedupKey
}

func (m *model) ackedSends() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.acked)
}

func (m *model) intn(n int) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.rng.IntN(n)
}

// expectedErr reports whether err is an outcome the workload provokes on
// purpose: a rejected command, or a crash that leaves the outcome unknown.
func expectedErr(err error) bool {
	for _, e := range []error{ErrNotMember, ErrForbidden, ErrGroupFull, ErrInvalid, ErrDismissed, ErrMuted, ErrBlocked, ErrClosed, ErrUnavailable, errCrashed, ErrTooLate} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// step runs one random operation, on the service that route names for the
// conversation or user it is for (users and conversations share one shard
// space).
func (m *model) step(t *testing.T, route func(id uint64) *Service, rng *rand.Rand, w, i, users int) {
	user := func() uint64 { return uint64(rng.IntN(users) + 1) }
	m.mu.Lock()
	var conv uint64
	var likely []uint64 // members at creation: usually still members
	if len(m.groups) > 0 {
		g := m.groups[rng.IntN(len(m.groups))]
		conv, likely = g.id, g.members
	}
	var resend, stored dedupKey
	if len(m.sent) > 0 {
		resend = m.sent[rng.IntN(len(m.sent))]
	}
	if len(m.ackedList) > 0 {
		stored = m.ackedList[rng.IntN(len(m.ackedList))]
	}
	m.mu.Unlock()

	var err error
	switch op := rng.IntN(100); {
	case conv == 0 || op < 6:
		var g timeline.Group
		owner, members := user(), []uint64{user(), user(), user()}
		g, err = route(owner).CreateGroup(ctx, owner, NewGroup{Members: members, Open: rng.IntN(2) == 0})
		if err == nil {
			m.mu.Lock()
			m.groups = append(m.groups, modelGroup{g.ID, append(members, owner)})
			m.mu.Unlock()
		}
	case op < 14:
		err = route(conv).Invite(ctx, user(), conv, []uint64{user(), user()})
	case op < 20:
		err = route(conv).Join(ctx, user(), conv)
	case op < 26:
		err = route(conv).Leave(ctx, user(), conv)
	case op < 29:
		err = route(conv).Kick(ctx, user(), conv, user())
	case op < 30:
		err = route(conv).Dismiss(ctx, user(), conv)
	case op < 36:
		u := user()
		_, err = route(u).MarkRead(ctx, u, conv, uint64(rng.IntN(40)))
	case op < 44 && resend.id != "":
		m.mu.Lock()
		to, peer := m.sentTo[resend], m.directTo[resend]
		m.mu.Unlock()
		if peer != 0 {
			err = m.sendDirect(route(to), resend, peer)
		} else {
			err = m.send(route(to), resend, to)
		}
	case op < 50:
		u := user()
		var after uint64
		if r, serr := route(u).Sync(ctx, u, 0, 1); serr == nil {
			after = r.Head / 2
		}
		err = checkSyncPage(route(u), u, after)
	case op < 56:
		// Users 1–4 only, so that pairs meet again and again; now and
		// then to oneself (ErrInvalid).
		sender, to := uint64(rng.IntN(4)+1), uint64(rng.IntN(4)+1)
		err = m.sendDirect(route(wire.DirectConv(sender, to)), dedupKey{sender, fmt.Sprintf("w%d-%d", w, i)}, to)
	case op < 58:
		u, peer := uint64(rng.IntN(4)+1), uint64(rng.IntN(4)+1)
		err = route(wire.DirectConv(u, peer)).Block(ctx, u, peer, rng.IntN(3) == 0)
	case op < 60:
		name, ann := fmt.Sprintf("g%d", rng.IntN(3)), fmt.Sprintf("a%d", rng.IntN(2))
		err = route(conv).SetGroupProfile(ctx, user(), conv, Profile{Name: &name, Announcement: &ann})
	case op < 66 && stored.id != "":
		// A recall or an edit of a message sent before, mostly by its
		// sender, sometimes by anyone (the owner, or a refusal), half of
		// them with a retry key.
		m.mu.Lock()
		to, first := m.sentTo[stored], m.acked[stored]
		m.mu.Unlock()
		actor := stored.sender
		if rng.IntN(4) == 0 {
			actor = user()
		}
		var id string
		if rng.IntN(2) == 0 {
			id = fmt.Sprintf("a%d-%d", w, i)
		}
		if rng.IntN(3) == 0 {
			_, err = route(to).Recall(ctx, actor, to, first.ConvSeq, id)
		} else {
			_, err = route(to).Edit(ctx, actor, to, first.ConvSeq, id, fmt.Appendf(nil, "edit %d-%d", w, i))
		}
	case op < 72:
		// A send that mentions members, sometimes a non-member (INVALID)
		// or everyone (FORBIDDEN but for owners and admins).
		sender := likely[rng.IntN(len(likely))]
		mentions := []uint64{likely[rng.IntN(len(likely))]}
		if rng.IntN(5) == 0 {
			mentions = append(mentions, user())
		}
		err = m.sendMentions(route(conv), dedupKey{sender, fmt.Sprintf("w%d-%d", w, i)}, conv, mentions, rng.IntN(4) == 0)
	default:
		sender := likely[rng.IntN(len(likely))]
		if rng.IntN(10) == 0 {
			sender = user()
		}
		err = m.send(route(conv), dedupKey{sender, fmt.Sprintf("w%d-%d", w, i)}, conv)
	}
	if err != nil && !expectedErr(err) {
		t.Errorf("worker %d op %d: %v", w, i, err)
	}
}

func (m *model) send(svc *Service, k dedupKey, conv uint64) error {
	return m.sendMentions(svc, k, conv, nil, false)
}

// sendDirect is send by SendDirect to the user to. A direct conversation
// joins the model's groups, for the group commands to be refused in it and
// for SEND to reach it.
func (m *model) sendDirect(svc *Service, k dedupKey, to uint64) error {
	conv := wire.DirectConv(k.sender, to)
	r, err := svc.SendDirect(ctx, k.sender, to, k.id, wire.KindText, []byte(k.id))
	m.mu.Lock()
	if m.directTo == nil {
		m.directTo, m.direct = map[dedupKey]uint64{}, map[uint64]bool{}
	}
	m.directTo[k] = to
	if err == nil && !m.direct[conv] {
		m.direct[conv] = true
		m.groups = append(m.groups, modelGroup{conv, []uint64{k.sender, to}})
	}
	m.mu.Unlock()
	if err == nil && r.Conv != conv {
		return fmt.Errorf("direct send %v to %d went to conversation %d, not %d", k, to, r.Conv, conv)
	}
	return m.sent1(k, conv, r, err, nil, false)
}

func (m *model) sendMentions(svc *Service, k dedupKey, conv uint64, mentions []uint64, all bool) error {
	r, err := svc.SendMessage(ctx, k.sender, conv, Outgoing{ClientMsgID: k.id, Kind: wire.KindText, Body: []byte(k.id),
		Mentions: mentions, MentionAll: all})
	return m.sent1(k, conv, r, err, mentions, all)
}

// sent1 records the outcome of a send of k to conv, which asked for
// mentions (all: @all).
func (m *model) sent1(k dedupKey, conv uint64, r SendResult, err error, mentions []uint64, all bool) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err == nil && !r.Duplicate {
		// The call that stored the message gave its mentions.
		if m.mentioned == nil {
			m.mentioned = map[dedupKey][]uint64{}
		}
		want := uniqueIDs(mentions, 0)
		if all {
			want = append([]uint64{0}, want...)
		}
		m.mentioned[k] = want
	}
	if m.sentTo == nil {
		m.sentTo = map[dedupKey]uint64{}
	}
	if _, ok := m.sentTo[k]; !ok {
		m.sentTo[k] = conv
		m.sent = append(m.sent, k)
	}
	if err != nil {
		return err
	}
	// One call stores the message (Duplicate false); the others return its
	// result. Two resends racing after a lost ack may return in either
	// order: the one that found the dedup record may be counted first.
	if !r.Duplicate {
		if m.stored[k] {
			return fmt.Errorf("send %v stored twice: %+v", k, r)
		}
		m.stored[k] = true
	}
	if first, ok := m.acked[k]; ok {
		if first.MsgID != r.MsgID || first.ConvSeq != r.ConvSeq {
			return fmt.Errorf("resend of %v returned %+v, first ack was %+v", k, r, first)
		}
		return nil
	}
	m.acked[k] = r
	m.ackedList = append(m.ackedList, k)
	return nil
}

// checkSyncPage reads a page concurrently with the writers: it must start
// right after after and have no hole, each row with its message.
func checkSyncPage(svc *Service, user, after uint64) error {
	res, err := svc.Sync(ctx, user, after, 50)
	if err != nil {
		return err
	}
	for i, en := range res.Entries {
		if en.Row.Seq != after+uint64(i)+1 {
			return fmt.Errorf("user %d: sync after %d returned seq %d at %d", user, after, en.Row.Seq, i)
		}
		if en.Row.Kind.HasMessage() && (en.Msg == nil || en.Msg.ConvSeq != en.Row.ConvSeq || en.Msg.ID != en.Row.MsgID) {
			return fmt.Errorf("user %d: row %+v with message %+v", user, en.Row, en.Msg)
		}
	}
	return nil
}

// verify rebuilds what every inbox must hold from the conversations and
// compares it with the store.
func (m *model) verify(t *testing.T, st timeline.Store, conversations func(user uint64) []ConversationInfo, users int) {
	t.Helper()
	m.mu.Lock()
	defer m.mu.Unlock()
	convs := map[uint64]bool{}
	lists := map[uint64][]timeline.Conversation{}
	for u := 1; u <= users; u++ {
		cs, err := st.Conversations(ctx, uint64(u))
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range cs {
			convs[c.Conv] = true
		}
		lists[uint64(u)] = cs
	}
	times := map[timeline.MessageKey]time.Time{}
	heads := map[uint64]uint64{}
	want := map[uint64][]timeline.MessageKey{} // per user, in conv_seq order per conv
	marker := map[userConv]uint64{}
	stored := map[dedupKey]timeline.Message{}
	mentionOf := map[timeline.MessageKey]timeline.Message{} // messages that mention someone
	for conv := range convs {
		msgs, err := st.Messages(ctx, conv, timeline.Range{})
		if err != nil {
			t.Fatal(err)
		}
		g, err := st.Group(ctx, conv)
		if err != nil {
			t.Fatal(err)
		}
		members := map[uint64]bool{}
		heads[conv] = uint64(len(msgs))
		for i, msg := range msgs {
			times[timeline.MessageKey{Conv: conv, ConvSeq: msg.ConvSeq}] = msg.Time
			if msg.ConvSeq != uint64(i+1) {
				t.Fatalf("conv %d: conv_seq %d at position %d", conv, msg.ConvSeq, i)
			}
			recipients, after := replay(t, members, msg)
			if g.IsDirect() && msg.Kind == wire.KindNotice {
				t.Fatalf("direct conv %d of %v: a notice at conv_seq %d: %s", conv, g.Direct, msg.ConvSeq, msg.Body)
			}
			if g.IsDirect() && i == 0 {
				// Both users of a direct conversation join with its first
				// message, which is no notice.
				if msg.Kind != wire.KindText || (msg.Sender != g.Direct[0] && msg.Sender != g.Direct[1]) {
					t.Fatalf("direct conv %d of %v opened by %+v", conv, g.Direct, msg)
				}
				after = map[uint64]bool{g.Direct[0]: true, g.Direct[1]: true}
				recipients, members = g.Direct[:], after
			}
			if (msg.Kind == wire.KindText || msg.Kind == wire.KindRecall || msg.Kind == wire.KindEdit) && !members[msg.Sender] {
				t.Fatalf("conv %d seq %d: non-member %d sent kind %#x", conv, msg.ConvSeq, msg.Sender, uint16(msg.Kind))
			}
			for _, u := range msg.Mentions {
				if !members[u] {
					t.Fatalf("conv %d seq %d mentions non-member %d", conv, msg.ConvSeq, u)
				}
			}
			if len(msg.Mentions) > 0 || msg.MentionAll {
				mentionOf[timeline.MessageKey{Conv: conv, ConvSeq: msg.ConvSeq}] = msg
			}
			for _, u := range recipients {
				want[u] = append(want[u], timeline.MessageKey{Conv: conv, ConvSeq: msg.ConvSeq})
			}
			for u := range after {
				if !members[u] { // joined with this message
					marker[userConv{u, conv}] = max(marker[userConv{u, conv}], msg.ConvSeq-1)
				}
			}
			if after[msg.Sender] {
				marker[userConv{msg.Sender, conv}] = msg.ConvSeq
			}
			members = after
			if msg.ClientMsgID != "" {
				k := dedupKey{msg.Sender, msg.ClientMsgID}
				if _, dup := stored[k]; dup {
					t.Fatalf("send %v stored twice", k)
				}
				stored[k] = msg
			}
		}
	}
	var amends int
	for conv := range convs {
		msgs, err := st.Messages(ctx, conv, timeline.Range{})
		if err != nil {
			t.Fatal(err)
		}
		amends += checkAmends(t, msgs)
	}
	m.amends = amends
	for k, want := range m.mentioned {
		s, ok := stored[k]
		if !ok {
			continue
		}
		got := slices.Clone(s.Mentions)
		if s.MentionAll {
			got = append([]uint64{0}, got...)
		}
		if !slices.Equal(got, want) {
			t.Fatalf("send %v stored mentions %v, sent %v", k, got, want)
		}
	}
	for k, r := range m.acked {
		if s, ok := stored[k]; !ok || s.ID != r.MsgID || s.ConvSeq != r.ConvSeq {
			t.Fatalf("acknowledged send %v (%+v) lost: stored %+v", k, r, s)
		}
	}
	for u := uint64(1); u <= uint64(users); u++ {
		rows, err := st.Inbox(ctx, u, timeline.Range{})
		if err != nil {
			t.Fatal(err)
		}
		var got []timeline.MessageKey
		for i, r := range rows {
			if r.Seq != uint64(i+1) {
				t.Fatalf("user %d: seq %d at position %d", u, r.Seq, i)
			}
			if r.Kind == wire.KindRead {
				k := userConv{u, r.Conv}
				marker[k] = max(marker[k], r.ConvSeq)
				continue
			}
			got = append(got, timeline.MessageKey{Conv: r.Conv, ConvSeq: r.ConvSeq})
		}
		// Inbox order interleaves conversations; each one's messages must
		// come in conv_seq order, and the lists must match exactly.
		if !slices.Equal(byConv(got), byConv(want[u])) {
			t.Fatalf("user %d inbox\n got %v\nwant %v", u, got, want[u])
		}
		cs := conversations(u)
		checkActivityOrder(t, u, cs, lists[u], times, heads)
		for _, c := range cs {
			if c.ReadSeq != marker[userConv{u, c.Conv}] {
				t.Fatalf("user %d conv %d: marker %d, model %d", u, c.Conv, c.ReadSeq, marker[userConv{u, c.Conv}])
			}
			if c.Unread != c.Head-min(c.Head, c.ReadSeq) {
				t.Fatalf("user %d conv %d: unread %d, head %d, marker %d", u, c.Conv, c.Unread, c.Head, c.ReadSeq)
			}
			var mentions uint64
			for seq := max(c.ReadSeq+1, c.JoinedAt); seq <= c.Head; seq++ {
				if msg, ok := mentionOf[timeline.MessageKey{Conv: c.Conv, ConvSeq: seq}]; ok && mentionsUser(&msg, u) {
					mentions++
				}
			}
			if c.MentionUnread != min(mentions, wire.MaxMentionUnread) {
				t.Fatalf("user %d conv %d: mention_unread %d, model %d", u, c.Conv, c.MentionUnread, mentions)
			}
		}
	}
}

func mentionsUser(m *timeline.Message, u uint64) bool {
	return m.MentionAll || slices.Contains(m.Mentions, u)
}

// checkAmends replays a conversation's recall and edit entries and checks
// the messages they name: each names an earlier message of an application
// kind, a message is recalled at most once and never edited after, and the
// stored original is in the state its last entry left: recalled without a
// body, or with the last edit's body, time and conv_seq; a recalled
// message's edit entries have lost their text. (Each entry reaches every
// member's inbox once, in conv_seq order: the inbox check covers it like
// any message.)
func checkAmends(t *testing.T, msgs []timeline.Message) (entries int) {
	t.Helper()
	type state struct {
		recalled bool
		last     *timeline.Message // the newest edit entry
		edits    []uint64
	}
	states := map[uint64]*state{}
	for i := range msgs {
		e := &msgs[i]
		if e.Kind != wire.KindRecall && e.Kind != wire.KindEdit {
			continue
		}
		entries++
		a, err := wire.ParseAmend(e.Body)
		if err != nil || a.ConvSeq == 0 || a.ConvSeq >= e.ConvSeq {
			t.Fatalf("conv %d entry %d names %+v (%v)", e.Conv, e.ConvSeq, a, err)
		}
		orig := &msgs[a.ConvSeq-1]
		if !orig.Kind.Amendable() || orig.ID != a.MsgID || a.Actor != e.Sender {
			t.Fatalf("conv %d entry %d (%+v) changes %+v", e.Conv, e.ConvSeq, a, orig)
		}
		st := states[a.ConvSeq]
		if st == nil {
			st = new(state)
			states[a.ConvSeq] = st
		}
		if st.recalled {
			t.Fatalf("conv %d: entry %d changes message %d after its recall", e.Conv, e.ConvSeq, a.ConvSeq)
		}
		if e.Kind == wire.KindRecall {
			st.recalled = true
			continue
		}
		var want uint64
		if st.last != nil {
			want = st.last.ConvSeq
		}
		if a.Prev != want {
			t.Fatalf("conv %d: edit %d of %d has prev %d, want %d", e.Conv, e.ConvSeq, a.ConvSeq, a.Prev, want)
		}
		st.last = e
		st.edits = append(st.edits, e.ConvSeq)
	}
	for seq, st := range states {
		orig := &msgs[seq-1]
		switch {
		case st.recalled && (!orig.Recalled || len(orig.Body) != 0):
			t.Fatalf("conv %d: recalled message %d stored as %+v", orig.Conv, seq, orig)
		case !st.recalled && orig.Recalled:
			t.Fatalf("conv %d: message %d recalled without a recall entry", orig.Conv, seq)
		case st.last != nil && (!orig.Edited.Equal(st.last.Time) || orig.LastEdit != st.last.ConvSeq):
			t.Fatalf("conv %d: message %d edited by %d stored as %+v", orig.Conv, seq, st.last.ConvSeq, orig)
		}
		if st.last != nil && !st.recalled {
			a, _ := wire.ParseAmend(st.last.Body)
			if string(orig.Body) != string(a.Body) {
				t.Fatalf("conv %d: message %d has body %q, its last edit %q", orig.Conv, seq, orig.Body, a.Body)
			}
		}
		for _, es := range st.edits {
			e := &msgs[es-1]
			a, _ := wire.ParseAmend(e.Body)
			if e.Recalled != st.recalled || (st.recalled && len(a.Body) != 0) {
				t.Fatalf("conv %d: edit entry %d of message %d (recalled %v) stored as %+v", e.Conv, es, seq, st.recalled, e)
			}
		}
	}
	return entries
}

// checkActivityOrder checks a user's conversation list, read through the
// activity index, against the order derived from the conversation entries
// and the messages: the newest message the user has, then the conv id.
func checkActivityOrder(t *testing.T, user uint64, got []ConversationInfo, entries []timeline.Conversation,
	times map[timeline.MessageKey]time.Time, heads map[uint64]uint64) {
	t.Helper()
	type ranked struct {
		conv uint64
		at   int64
	}
	var want []ranked
	for _, c := range entries {
		last := cmp.Or(c.LeftAt, heads[c.Conv])
		want = append(want, ranked{c.Conv, times[timeline.MessageKey{Conv: c.Conv, ConvSeq: last}].UnixMilli()})
	}
	slices.SortFunc(want, func(a, b ranked) int { return cmp.Or(cmp.Compare(b.at, a.at), cmp.Compare(b.conv, a.conv)) })
	var gotConvs, wantConvs []uint64
	for _, c := range got {
		gotConvs = append(gotConvs, c.Conv)
	}
	for _, r := range want {
		wantConvs = append(wantConvs, r.conv)
	}
	if !slices.Equal(gotConvs, wantConvs) {
		t.Fatalf("user %d: conversations by activity %v, want %v", user, gotConvs, wantConvs)
	}
}

// byConv stably groups keys by conversation, keeping each one's order.
func byConv(keys []timeline.MessageKey) []timeline.MessageKey {
	out := slices.Clone(keys)
	slices.SortStableFunc(out, func(a, b timeline.MessageKey) int {
		switch {
		case a.Conv < b.Conv:
			return -1
		case a.Conv > b.Conv:
			return 1
		}
		return 0
	})
	return out
}

// replay applies msg to the membership before it and returns who receives
// it and the membership after it.
func replay(t *testing.T, before map[uint64]bool, msg timeline.Message) ([]uint64, map[uint64]bool) {
	after := map[uint64]bool{}
	for u := range before {
		after[u] = true
	}
	recipients := func(set map[uint64]bool) []uint64 {
		var out []uint64
		for u := range set {
			out = append(out, u)
		}
		return out
	}
	if msg.Kind != wire.KindNotice {
		return recipients(before), after
	}
	var n wire.Notice
	if err := json.Unmarshal(msg.Body, &n); err != nil {
		t.Fatalf("notice %d: %v", msg.ConvSeq, err)
	}
	switch n.Type {
	case "create":
		after[n.Actor] = true
		fallthrough
	case "invite":
		for _, u := range n.Users {
			after[u] = true
		}
		return recipients(after), after
	case "join":
		after[n.Actor] = true
		return recipients(after), after
	case "leave":
		delete(after, n.Actor)
	case "kick":
		for _, u := range n.Users {
			delete(after, u)
		}
	case "dismiss":
		clear(after)
	}
	return recipients(before), after
}

package inbox

import (
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/inboxd/inboxd/timeline"
	"github.com/inboxd/inboxd/wire"
)

// clock is a settable test clock.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func newClock() *clock { return &clock{now: time.Now().Truncate(time.Millisecond)} }

// history reads conv's messages as user, oldest first.
func (e *env) history(user, conv uint64) []timeline.Message {
	e.t.Helper()
	msgs, err := e.svc.History(ctx, user, conv, 0, wire.MaxHistoryLimit)
	if err != nil {
		e.t.Fatalf("History(%d, %d): %v", user, conv, err)
	}
	slices.Reverse(msgs)
	return msgs
}

// at returns the message at convSeq of msgs.
func at(t *testing.T, msgs []timeline.Message, convSeq uint64) timeline.Message {
	t.Helper()
	for _, m := range msgs {
		if m.ConvSeq == convSeq {
			return m
		}
	}
	t.Fatalf("no message at conv_seq %d", convSeq)
	return timeline.Message{}
}

// TestRecallAndEdit: each is a new entry of the conversation and of every
// member's inbox, after the original; HISTORY and SYNC serve the original
// with its latest text, then recalled without a body, and the edit
// entries lose their text with the recall.
func TestRecallAndEdit(t *testing.T) {
	clk := newClock()
	e := newEnv(t, Config{Now: clk.Now})
	conv := e.create(1, 2, 3)
	sent := e.send(2, conv, "m", "helo")

	clk.add(time.Hour)
	ed, err := e.svc.Edit(ctx, 2, conv, sent.ConvSeq, "", []byte("hello"))
	if err != nil {
		t.Fatal(err)
	}
	ed2, err := e.svc.Edit(ctx, 2, conv, sent.ConvSeq, "", []byte("hello!"))
	if err != nil {
		t.Fatal(err)
	}
	if ed.ConvSeq != sent.ConvSeq+1 || ed2.ConvSeq != sent.ConvSeq+2 {
		t.Fatalf("edits at conv_seq %d, %d after the message at %d", ed.ConvSeq, ed2.ConvSeq, sent.ConvSeq)
	}
	for _, user := range []uint64{1, 2, 3} {
		orig := at(t, e.history(user, conv), sent.ConvSeq)
		if string(orig.Body) != "hello!" || !orig.Edited.Equal(clk.Now()) || orig.Recalled {
			t.Fatalf("user %d: edited message served as %+v", user, orig)
		}
		var kinds []wire.Kind
		for _, en := range e.inbox(user) {
			if en.Row.Conv == conv && en.Row.ConvSeq >= sent.ConvSeq {
				kinds = append(kinds, en.Row.Kind)
			}
		}
		if want := []wire.Kind{wire.KindText, wire.KindEdit, wire.KindEdit}; !slices.Equal(kinds, want) {
			t.Fatalf("user %d: inbox kinds from the message on %v, want %v", user, kinds, want)
		}
	}
	// Edit entries count as unread like any entry of the conversation
	// (docs/protocol.md, "Read markers and unread counts"), and an edit
	// moves its author's marker as a send does.
	if c := e.conversation(3, conv); c.Unread != ed2.ConvSeq || c.Head != ed2.ConvSeq {
		t.Fatalf("user 3: unread %d, head %d; want both %d", c.Unread, c.Head, ed2.ConvSeq)
	}
	if c := e.conversation(2, conv); c.Unread != 0 || c.ReadSeq != ed2.ConvSeq {
		t.Fatalf("the editor: unread %d, marker %d; want 0, %d", c.Unread, c.ReadSeq, ed2.ConvSeq)
	}
	a, err := wire.ParseAmend(at(t, e.history(3, conv), ed2.ConvSeq).Body)
	if err != nil || a.ConvSeq != sent.ConvSeq || a.MsgID != sent.MsgID || a.Actor != 2 || string(a.Body) != "hello!" || a.Prev != ed.ConvSeq {
		t.Fatalf("second edit entry = %+v, %v", a, err)
	}

	// The owner recalls it long after the sender's window: the message and
	// both edit entries lose their text.
	clk.add(48 * time.Hour)
	rc, err := e.svc.Recall(ctx, 1, conv, sent.ConvSeq, "r-1")
	if err != nil {
		t.Fatal(err)
	}
	e.crash() // what is served comes from the store
	msgs := e.history(3, conv)
	if orig := at(t, msgs, sent.ConvSeq); !orig.Recalled || len(orig.Body) != 0 {
		t.Fatalf("recalled message served as %+v", orig)
	}
	for _, seq := range []uint64{ed.ConvSeq, ed2.ConvSeq} {
		m := at(t, msgs, seq)
		a, err := wire.ParseAmend(m.Body)
		if !m.Recalled || err != nil || len(a.Body) != 0 || a.ConvSeq != sent.ConvSeq {
			t.Fatalf("edit entry %d after the recall: %+v (%+v, %v)", seq, m, a, err)
		}
	}
	for _, en := range e.inbox(2) {
		if en.Msg != nil && en.Row.ConvSeq >= sent.ConvSeq && en.Row.Kind != wire.KindRecall && !en.Msg.Recalled {
			t.Fatalf("sync serves %+v unrecalled", en.Msg)
		}
	}
	// The retry key answers the first result; nothing new is stored.
	again, err := e.svc.Recall(ctx, 1, conv, sent.ConvSeq, "r-1")
	if err != nil || !again.Duplicate || again.ConvSeq != rc.ConvSeq {
		t.Fatalf("retried recall = %+v, %v", again, err)
	}
	if head := e.conversation(3, conv).Head; head != rc.ConvSeq {
		t.Fatalf("head %d after a retried recall, want %d", head, rc.ConvSeq)
	}
}

// TestAmendRejections: bad recalls and edits each get their error and
// store nothing.
func TestAmendRejections(t *testing.T) {
	clk := newClock()
	e := newEnv(t, Config{Now: clk.Now, RecallWindow: time.Minute, EditWindow: time.Hour})
	conv := e.create(1, 2, 3)
	old := e.send(2, conv, "old", "old")
	clk.add(2 * time.Minute)
	fresh := e.send(2, conv, "fresh", "fresh")
	recalled := e.send(2, conv, "gone", "gone")
	if _, err := e.svc.Recall(ctx, 2, conv, recalled.ConvSeq, ""); err != nil {
		t.Fatal(err)
	}
	other := e.create(1, 2)
	head := e.conversation(2, conv).Head
	long := make([]byte, wire.DefaultMaxBody+1)

	cases := []struct {
		name string
		do   func() error
		want error
	}{
		{"recall by another member", func() error { return errOnly(e.svc.Recall(ctx, 3, conv, fresh.ConvSeq, "")) }, ErrForbidden},
		{"edit by another member", func() error { return errOnly(e.svc.Edit(ctx, 3, conv, fresh.ConvSeq, "", []byte("x"))) }, ErrForbidden},
		{"recall out of the window", func() error { return errOnly(e.svc.Recall(ctx, 2, conv, old.ConvSeq, "")) }, ErrTooLate},
		{"recall of a notice", func() error { return errOnly(e.svc.Recall(ctx, 1, conv, 1, "")) }, ErrInvalid},
		{"edit of a notice", func() error { return errOnly(e.svc.Edit(ctx, 1, conv, 1, "", []byte("x"))) }, ErrInvalid},
		{"recall of a recalled message", func() error { return errOnly(e.svc.Recall(ctx, 1, conv, recalled.ConvSeq, "")) }, ErrInvalid},
		{"edit of a recalled message", func() error { return errOnly(e.svc.Edit(ctx, 2, conv, recalled.ConvSeq, "", []byte("x"))) }, ErrInvalid},
		{"recall of a recall entry", func() error { return errOnly(e.svc.Recall(ctx, 1, conv, head, "")) }, ErrInvalid},
		{"conv_seq that does not exist", func() error { return errOnly(e.svc.Recall(ctx, 1, conv, head+1, "")) }, ErrInvalid},
		{"conv_seq 0", func() error { return errOnly(e.svc.Edit(ctx, 1, conv, 0, "", nil)) }, ErrInvalid},
		{"message of another conversation", func() error { return errOnly(e.svc.Recall(ctx, 2, other, fresh.ConvSeq, "")) }, ErrInvalid},
		{"by a non-member", func() error { return errOnly(e.svc.Recall(ctx, 9, conv, fresh.ConvSeq, "")) }, ErrNotMember},
		{"edit body too large", func() error { return errOnly(e.svc.Edit(ctx, 2, conv, fresh.ConvSeq, "", long)) }, ErrInvalid},
		// The retry key is the actor's across conversations, as in a send.
		{"retry key used in another conversation", func() error { return errOnly(e.svc.Recall(ctx, 1, conv, fresh.ConvSeq, "o")) }, ErrInvalid},
	}
	e.send(1, other, "o", "x")
	for _, c := range cases {
		if err := c.do(); !errors.Is(err, c.want) {
			t.Errorf("%s: got %v, want %v", c.name, err, c.want)
		}
	}
	if got := e.conversation(2, conv).Head; got != head {
		t.Fatalf("head moved from %d to %d: a refused command stored something", head, got)
	}
	if m := at(t, e.history(2, conv), fresh.ConvSeq); string(m.Body) != "fresh" || m.Recalled || !m.Edited.IsZero() {
		t.Fatalf("refused commands changed the message: %+v", m)
	}
	// A muted sender may recall but not edit.
	if err := e.svc.MuteMember(ctx, 1, conv, 2, clk.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.Edit(ctx, 2, conv, fresh.ConvSeq, "", []byte("x")); !errors.Is(err, ErrMuted) {
		t.Fatalf("edit while muted: %v", err)
	}
	if _, err := e.svc.Recall(ctx, 2, conv, fresh.ConvSeq, ""); err != nil {
		t.Fatalf("recall while muted: %v", err)
	}
	// Out of the edit window the sender is too late; the owner is not.
	clk.add(2 * time.Hour)
	if _, err := e.svc.Edit(ctx, 2, conv, old.ConvSeq, "", []byte("x")); !errors.Is(err, ErrTooLate) {
		t.Fatalf("edit out of the window: %v", err)
	}
	if _, err := e.svc.Edit(ctx, 1, conv, old.ConvSeq, "", []byte("by the owner")); err != nil {
		t.Fatalf("owner edits an old message: %v", err)
	}
}

// TestAmendInOneBatch: a recall in the batch that posts the message, and
// in the batch of an edit of it, leaves the message recalled, and its push
// carries no body.
func TestAmendInOneBatch(t *testing.T) {
	rec := newRecorder(1, 2)
	gt := newGate()
	e := newEnv(t, Config{Notifier: rec, stepHook: gt.hook})
	conv := e.create(1, 2)
	sent := e.send(2, conv, "a", "first")
	// The batch of a send is held; the edit and the recall queue up behind
	// it and commit together.
	gt.hold(t, e, 1, conv)
	errs := make(chan error, 2)
	go func() { errs <- errOnly(e.svc.Edit(ctx, 2, conv, sent.ConvSeq, "", []byte("second"))) }()
	waitFor(t, "the edit to queue", func() bool { return len(e.svc.cmds) == 1 })
	go func() { errs <- errOnly(e.svc.Recall(ctx, 2, conv, sent.ConvSeq, "")) }()
	waitFor(t, "the recall to queue", func() bool { return len(e.svc.cmds) == 2 })
	gt.open()
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	msgs := e.history(1, conv)
	if m := at(t, msgs, sent.ConvSeq); !m.Recalled || len(m.Body) != 0 {
		t.Fatalf("message after an edit and a recall in one batch: %+v", m)
	}
	edit := msgs[len(msgs)-2]
	if a, err := wire.ParseAmend(edit.Body); edit.Kind != wire.KindEdit || err != nil || len(a.Body) != 0 || !edit.Recalled {
		t.Fatalf("edit entry after a recall in its batch: %+v", edit)
	}
	waitFor(t, "the pushes", func() bool {
		rec.mu.Lock()
		defer rec.mu.Unlock()
		return slices.ContainsFunc(rec.pushed[1], func(en Entry) bool { return en.Row.Kind == wire.KindRecall })
	})
	rec.mu.Lock()
	defer rec.mu.Unlock()
	for _, en := range rec.pushed[1] {
		if en.Row.Kind == wire.KindEdit && (!en.Msg.Recalled || string(en.Msg.Body) != string(edit.Body)) {
			t.Fatalf("pushed edit entry %+v still holds its text", en.Msg)
		}
	}
}

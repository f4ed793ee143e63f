package client

import (
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/inboxd/inboxd/gateway"
	"github.com/inboxd/inboxd/inbox"
	"github.com/inboxd/inboxd/internal/gatewaytest"
	"github.com/inboxd/inboxd/wire"
	"github.com/inboxd/inboxd/wire/wirepb"
)

// testClock is the inbox service's clock, moved by the test.
type testClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *testClock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// startServerClock is startServer with the inbox service on clk.
func startServerClock(t *testing.T, clk *testClock) string {
	t.Helper()
	gw, err := gateway.New(gateway.Config{Addr: gatewaytest.Addr, Secret: []byte(gatewaytest.Secret), SingleLoop: true})
	if err != nil {
		t.Fatal(err)
	}
	_, addr := gatewaytest.StartConfig(t, gw, inbox.Config{Now: clk.Now}, func(svc *inbox.Service) error { return gw.Serve(svc) })
	return addr
}

// messageAt returns the message at convSeq of conv, read by HISTORY.
func messageAt(t *testing.T, c *Client, conv, convSeq uint64) *wirepb.Message {
	t.Helper()
	msgs, err := c.History(ctxT(t), conv, convSeq+1, 1)
	if err != nil || len(msgs) != 1 || msgs[0].ConvSeq != convSeq {
		t.Fatalf("History at %d: %v, %v", convSeq, msgs, err)
	}
	return msgs[0]
}

// TestE2ERecallEditMentions runs mentions, EDIT and RECALL over TCP: the
// entries every member receives, what HISTORY, SYNC and CONVERSATIONS serve
// afterwards to a member who was offline, and each refusal's code.
func TestE2ERecallEditMentions(t *testing.T) {
	clk := &testClock{now: time.Now().Truncate(time.Millisecond)}
	addr := startServerClock(t, clk)
	ctx := ctxT(t)
	alice, aliceLog := e2eClient(t, addr, 1, "phone", Config{})
	g, err := alice.CreateGroup(ctx, &wirepb.CreateGroupRequest{Name: "ops", Members: []uint64{2, 3}})
	if err != nil {
		t.Fatal(err)
	}
	bob, _ := e2eClient(t, addr, 2, "phone", Config{})

	sent, err := bob.SendMessage(ctx, &wirepb.SendRequest{Conv: g.Id, Kind: uint32(wire.KindText), Body: []byte("@alice @carol helo"),
		Mentions: []uint64{3, 1}})
	if err != nil {
		t.Fatal(err)
	}
	all, err := alice.SendMessage(ctx, &wirepb.SendRequest{Conv: g.Id, Kind: uint32(wire.KindText), Body: []byte("@all"), MentionAll: true})
	if err != nil {
		t.Fatal(err)
	}
	if m := messageAt(t, alice, g.Id, sent.ConvSeq); !slices.Equal(m.Mentions, []uint64{1, 3}) || m.MentionAll {
		t.Fatalf("message with mentions served as %v", m)
	}

	edit, err := bob.Edit(ctx, g.Id, sent.ConvSeq, "", []byte("@alice @carol hello"))
	if err != nil {
		t.Fatal(err)
	}
	if m := messageAt(t, alice, g.Id, sent.ConvSeq); string(m.Body) != "@alice @carol hello" || m.EditedMs != clk.Now().UnixMilli() {
		t.Fatalf("edited message served as %v", m)
	}
	eventually(t, func() bool { return slices.Contains(aliceLog.kinds(), wire.KindEdit) })
	for _, e := range aliceLog.entries {
		if e.Kind != uint32(wire.KindEdit) {
			continue
		}
		a, err := wire.ParseAmend(e.Message.Body)
		if err != nil || e.ConvSeq != edit.ConvSeq || a.ConvSeq != sent.ConvSeq || a.MsgID != sent.MsgId || string(a.Body) != "@alice @carol hello" {
			t.Fatalf("pushed edit entry %v: %+v, %v", e, a, err)
		}
	}

	// Past bob's window only the owner may recall; refusals store nothing.
	clk.add(3 * time.Minute)
	refusals := []struct {
		name string
		err  error
		want error
	}{
		{"sender after the window", errOf(bob.Recall(ctx, g.Id, sent.ConvSeq, "")), ErrTooLate},
		{"recall of a notice", errOf(alice.Recall(ctx, g.Id, 1, "")), ErrInvalid},
		{"recall of a conv_seq past the head", errOf(alice.Recall(ctx, g.Id, 99, "")), ErrInvalid},
		{"edit of another's message", errOf(bob.Edit(ctx, g.Id, all.ConvSeq, "", []byte("x"))), ErrForbidden},
		{"mention of a non-member", errOf(bob.SendMessage(ctx, &wirepb.SendRequest{Conv: g.Id, Kind: 1, Mentions: []uint64{9}})), ErrInvalid},
		{"@all by a member", errOf(bob.SendMessage(ctx, &wirepb.SendRequest{Conv: g.Id, Kind: 1, MentionAll: true})), ErrForbidden},
		{"too many mentions", errOf(bob.SendMessage(ctx, &wirepb.SendRequest{Conv: g.Id, Kind: 1, Mentions: make([]uint64, wire.MaxMentions+1)})), ErrInvalid},
	}
	for _, r := range refusals {
		if !errors.Is(r.err, r.want) {
			t.Errorf("%s: %v, want %v", r.name, r.err, r.want)
		}
	}
	recall, err := alice.Recall(ctx, g.Id, sent.ConvSeq, "recall-1")
	if err != nil || recall.ConvSeq != all.ConvSeq+2 {
		t.Fatalf("owner's recall = %v, %v", recall, err)
	}
	if again, err := alice.Recall(ctx, g.Id, sent.ConvSeq, "recall-1"); err != nil || !again.Duplicate || again.ConvSeq != recall.ConvSeq {
		t.Fatalf("recall resent with its id = %v, %v", again, err)
	}

	// Carol was offline throughout: SYNC brings each entry once, in order,
	// with the original and the edit served recalled.
	carol, carolLog := e2eClient(t, addr, 3, "phone", Config{})
	if err := carol.WaitSynced(ctx); err != nil {
		t.Fatal(err)
	}
	want := []wire.Kind{wire.KindNotice, wire.KindText, wire.KindText, wire.KindEdit, wire.KindRecall}
	if got := carolLog.kinds(); !slices.Equal(got, want) {
		t.Fatalf("carol's entries %v, want %v", got, want)
	}
	for _, e := range carolLog.entries {
		if e.ConvSeq == sent.ConvSeq || e.Kind == uint32(wire.KindEdit) {
			if !e.Message.Recalled || (e.ConvSeq == sent.ConvSeq && len(e.Message.Body) != 0) {
				t.Fatalf("synced %v after the recall", e)
			}
			if a, err := wire.ParseAmend(e.Message.Body); e.Kind == uint32(wire.KindEdit) && (err != nil || len(a.Body) != 0) {
				t.Fatalf("synced edit entry keeps its text: %+v, %v", a, err)
			}
		}
	}
	convs, err := carol.Conversations(ctx)
	if err != nil || len(convs) != 1 || convs[0].MentionUnread != 2 || convs[0].Unread != recall.ConvSeq {
		t.Fatalf("carol's conversations %v, %v; want 2 unread mentions", convs, err)
	}
	if _, err := carol.MarkRead(ctx, g.Id, all.ConvSeq); err != nil {
		t.Fatal(err)
	}
	if convs, err := carol.Conversations(ctx); err != nil || convs[0].MentionUnread != 0 {
		t.Fatalf("after MARK_READ past the mentions: %v, %v", convs, err)
	}
}

func errOf[T any](_ T, err error) error { return err }

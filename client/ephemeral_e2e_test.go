package client

import (
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

// End-to-end tests of READ_RECEIPTS, TYPING and PRESENCE over loopback TCP.

// typingLog records the typing events a client delivers.
type typingLog struct {
	mu  sync.Mutex
	evs []*wirepb.TypingEvent
}

func (l *typingLog) add(ev *wirepb.TypingEvent) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.evs = append(l.evs, ev)
}

// typists returns the users of the events delivered, in order.
func (l *typingLog) typists() []uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []uint64
	for _, ev := range l.evs {
		out = append(out, ev.User)
	}
	return out
}

// waitFor waits until an event of user came and returns the typists up to
// and including it. Pushes to one connection keep their order, so an event
// missing before a later one was never sent.
func (l *typingLog) waitFor(t *testing.T, user uint64) []uint64 {
	t.Helper()
	var got []uint64
	eventually(t, func() bool {
		got = l.typists()
		return slices.Contains(got, user)
	})
	return got[:slices.Index(got, user)+1]
}

// typingClient dials user's device with a typing log.
func typingClient(t *testing.T, addr string, user uint64, device string) (*Client, *typingLog) {
	t.Helper()
	l := new(typingLog)
	c, _ := e2eClient(t, addr, user, device, Config{OnTyping: l.add})
	return c, l
}

// startServerAt runs a gateway with cfg's limits and clock over an inbox.
func startServerAt(t *testing.T, cfg gateway.Config) string {
	t.Helper()
	cfg.Addr, cfg.Secret, cfg.SingleLoop = gatewaytest.Addr, []byte(gatewaytest.Secret), true
	gw, err := gateway.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	_, addr := gatewaytest.Start(t, gw, func(svc *inbox.Service) error { return gw.Serve(svc) })
	return addr
}

func TestE2EReadReceipts(t *testing.T) {
	addr := startServer(t)
	ctx := ctxT(t)
	alice, _ := e2eClient(t, addr, 1, "phone", Config{})
	bob, _ := e2eClient(t, addr, 2, "phone", Config{})
	dave, _ := e2eClient(t, addr, 4, "phone", Config{})
	g, err := alice.CreateGroup(ctx, &wirepb.CreateGroupRequest{Members: []uint64{2, 3}})
	if err != nil {
		t.Fatal(err)
	}
	ack, err := alice.Send(ctx, g.Id, "", 1, []byte("hi"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bob.MarkRead(ctx, g.Id, ack.ConvSeq); err != nil {
		t.Fatal(err)
	}
	r, err := alice.ReadReceipts(ctx, &wirepb.ReadReceiptsRequest{Conv: g.Id, ConvSeq: ack.ConvSeq})
	if err != nil {
		t.Fatal(err)
	}
	if r.Members != 2 || r.Read != 1 || !slices.Equal(r.Users, []uint64{2}) || r.NextAfter != 0 {
		t.Errorf("receipts %v, want bob of 2", r)
	}
	r, err = bob.ReadReceipts(ctx, &wirepb.ReadReceiptsRequest{Conv: g.Id, ConvSeq: ack.ConvSeq, Unread: true})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(r.Users, []uint64{3}) {
		t.Errorf("not read by %v, want [3]", r.Users)
	}

	_, err = alice.ReadReceipts(ctx, &wirepb.ReadReceiptsRequest{Conv: g.Id, ConvSeq: ack.ConvSeq + 1})
	errIs(t, err, ErrInvalid)
	_, err = dave.ReadReceipts(ctx, &wirepb.ReadReceiptsRequest{Conv: g.Id, ConvSeq: ack.ConvSeq})
	errIs(t, err, ErrNotMember)
	_, err = alice.ReadReceipts(ctx, &wirepb.ReadReceiptsRequest{ConvSeq: 1})
	errIs(t, err, ErrInvalid)
}

func TestE2ETyping(t *testing.T) {
	addr := startServer(t)
	ctx := ctxT(t)
	alice, aliceLog := typingClient(t, addr, 1, "phone")
	_, laptopLog := typingClient(t, addr, 1, "laptop")
	bob, bobLog := typingClient(t, addr, 2, "phone")
	_, carolLog := typingClient(t, addr, 3, "phone")
	dave, daveLog := typingClient(t, addr, 4, "phone")
	g, err := alice.CreateGroup(ctx, &wirepb.CreateGroupRequest{Members: []uint64{2, 3}})
	if err != nil {
		t.Fatal(err)
	}
	other, err := dave.CreateGroup(ctx, &wirepb.CreateGroupRequest{Members: []uint64{1, 2, 3}})
	if err != nil {
		t.Fatal(err)
	}

	if err := alice.Typing(ctx, g.Id); err != nil {
		t.Fatal(err)
	}
	errIs(t, dave.Typing(ctx, g.Id), ErrNotMember)
	errIs(t, dave.Typing(ctx, 987654321), ErrNoGroup)
	// Bob types next: everyone sees his event after alice's, and alice's
	// devices and dave (no member) never see hers.
	if err := bob.Typing(ctx, g.Id); err != nil {
		t.Fatal(err)
	}
	if err := dave.Typing(ctx, other.Id); err != nil { // dave's only event
		t.Fatal(err)
	}
	for name, tt := range map[string]struct {
		log  *typingLog
		last uint64
		want []uint64
	}{
		"carol":        {carolLog, 2, []uint64{1, 2}},
		"alice phone":  {aliceLog, 2, []uint64{2}},
		"alice laptop": {laptopLog, 2, []uint64{2}},
		"bob":          {bobLog, 4, []uint64{1, 4}},
	} {
		if got := tt.log.waitFor(t, tt.last); !slices.Equal(got, tt.want) {
			t.Errorf("%s saw typists %v, want %v", name, got, tt.want)
		}
	}
	if got := daveLog.typists(); len(got) != 0 {
		t.Errorf("dave saw typists %v of a group he is not in", got)
	}
	bobLog.mu.Lock()
	defer bobLog.mu.Unlock()
	if ev := bobLog.evs[0]; ev.Conv != g.Id {
		t.Errorf("bob's first event %v, want one of group %d", ev, g.Id)
	}
}

// TestE2ETypingFlood: past the burst, TYPING is RATE_LIMITED with a retry
// hint, and the refused events reach nobody; the connection stays usable.
func TestE2ETypingFlood(t *testing.T) {
	now := time.Now()
	addr := startServerAt(t, gateway.Config{Now: func() time.Time { return now }})
	ctx := ctxT(t)
	alice, _ := typingClient(t, addr, 1, "phone")
	_, bobLog := typingClient(t, addr, 2, "phone")
	carol, _ := typingClient(t, addr, 3, "phone")
	g, err := alice.CreateGroup(ctx, &wirepb.CreateGroupRequest{Members: []uint64{2, 3}})
	if err != nil {
		t.Fatal(err)
	}
	for range wire.DefaultTypingBurst {
		if err := alice.Typing(ctx, g.Id); err != nil {
			t.Fatal(err)
		}
	}
	for range 3 {
		err := alice.Typing(ctx, g.Id)
		errIs(t, err, ErrRateLimited)
		if e := err.(*Error); e.RetryAfter <= 0 {
			t.Errorf("RATE_LIMITED without a retry hint: %v", e)
		}
	}
	if err := carol.Typing(ctx, g.Id); err != nil { // carol's own bucket
		t.Fatal(err)
	}
	want := append(slices.Repeat([]uint64{1}, wire.DefaultTypingBurst), 3)
	if got := bobLog.waitFor(t, 3); !slices.Equal(got, want) {
		t.Errorf("bob saw typists %v, want %v", got, want)
	}
	if _, err := alice.Send(ctx, g.Id, "", 1, []byte("still here")); err != nil {
		t.Fatal(err)
	}
}

func TestE2EPresence(t *testing.T) {
	addr := startServer(t)
	ctx := ctxT(t)
	alice, _ := e2eClient(t, addr, 1, "phone", Config{})
	e2eClient(t, addr, 1, "laptop", Config{})
	bob, _ := e2eClient(t, addr, 2, "phone", Config{})
	e2eClient(t, addr, 3, "phone", Config{})

	online, err := alice.Presence(ctx, 3, 2, 1, 4, 2)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(online, []uint64{1, 2, 3}) {
		t.Errorf("online %v, want [1 2 3]", online)
	}
	bob.Close()
	eventually(t, func() bool {
		online, err = alice.Presence(ctx, 2, 3)
		return err == nil && slices.Equal(online, []uint64{3})
	})

	tooMany := make([]uint64, wire.MaxPresenceUsers+1)
	for i := range tooMany {
		tooMany[i] = uint64(i + 1)
	}
	_, err = alice.Presence(ctx, tooMany...)
	errIs(t, err, ErrInvalid)
	if _, err := alice.Presence(ctx, tooMany[:wire.MaxPresenceUsers]...); err != nil {
		t.Errorf("presence of %d users: %v", wire.MaxPresenceUsers, err)
	}
	_, err = alice.Presence(ctx, 2, 0)
	errIs(t, err, ErrInvalid)
}

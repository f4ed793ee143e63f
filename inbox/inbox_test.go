package inbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/inboxd/inboxd/timeline"
	"github.com/inboxd/inboxd/wire"
)

func TestCreateGroupPostsNotice(t *testing.T) {
	e := newEnv(t, Config{})
	conv := e.create(1, 2, 3, 4, 2)

	for _, u := range []uint64{1, 2, 3, 4} {
		in := e.inbox(u)
		if len(in) != 1 || in[0].Row.Seq != 1 || in[0].Row.Kind != wire.KindNotice || in[0].Row.ConvSeq != 1 {
			t.Fatalf("user %d inbox = %+v, want the creation notice at seq 1", u, in)
		}
		var n wire.Notice
		if err := json.Unmarshal(in[0].Msg.Body, &n); err != nil {
			t.Fatal(err)
		}
		if n.Type != "create" || n.Text != "1 invited 2, 3 and 4 to join the group" || !slices.Equal(n.Users, []uint64{2, 3, 4}) {
			t.Fatalf("notice = %+v", n)
		}
	}
	info, err := e.svc.Group(ctx, 3, conv)
	if err != nil {
		t.Fatal(err)
	}
	if info.Name != "1, 2, 3 and 4" || info.Owner != 1 || len(info.Members) != 4 {
		t.Fatalf("group = %+v", info)
	}
	if got := e.conversation(1, conv).Unread; got != 0 {
		t.Errorf("owner unread = %d, want 0 (the creator sent the notice)", got)
	}
	if got := e.conversation(2, conv).Unread; got != 1 {
		t.Errorf("invitee unread = %d, want 1", got)
	}
	if _, err := e.svc.Group(ctx, 9, conv); !errors.Is(err, ErrNotMember) {
		t.Errorf("non-member Group: %v, want ErrNotMember", err)
	}
}

func TestGroupNames(t *testing.T) {
	tests := []struct {
		members []uint64
		want    string
	}{
		{nil, "7"},
		{[]uint64{8}, "7 and 8"},
		{[]uint64{8, 9, 10}, "7, 8, 9 and 10"},
		{[]uint64{8, 9, 10, 11}, "7, 8, 9 and others"},
	}
	for _, tt := range tests {
		if got := groupName(7, tt.members); got != tt.want {
			t.Errorf("groupName(7, %v) = %q, want %q", tt.members, got, tt.want)
		}
	}
}

func TestSendFansOutToEveryMember(t *testing.T) {
	rec := newRecorder(1, 2)
	e := newEnv(t, Config{Notifier: rec, OfflinePusher: rec})
	conv := e.create(1, 2, 3)
	var results []SendResult
	for i := range 5 {
		results = append(results, e.send(uint64(i%3+1), conv, fmt.Sprint("m", i), fmt.Sprint("hello ", i)))
	}
	for i, r := range results {
		if r.ConvSeq != uint64(i+2) || r.Duplicate || r.MsgID == 0 {
			t.Fatalf("send %d result %+v", i, r)
		}
		if i > 0 && r.MsgID <= results[i-1].MsgID {
			t.Fatalf("msg ids not increasing: %d then %d", results[i-1].MsgID, r.MsgID)
		}
	}
	want := []string{"hello 0", "hello 1", "hello 2", "hello 3", "hello 4"}
	for _, u := range []uint64{1, 2, 3} {
		in := e.inbox(u)
		if !contiguous(seqs(in)) || len(in) != 6 {
			t.Fatalf("user %d seqs %v", u, seqs(in))
		}
		if got := e.bodies(u, conv); !slices.Equal(got, want) {
			t.Fatalf("user %d bodies %q", u, got)
		}
	}
	// Online users get every entry pushed in seq order; user 3 is offline
	// and gets offline pushes for the messages others sent.
	waitFor(t, "pushes", func() bool {
		rec.mu.Lock()
		defer rec.mu.Unlock()
		return len(rec.pushed[1]) == 6 && len(rec.pushed[3]) == 6
	})
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if got := seqs(rec.pushed[2]); !contiguous(got) {
		t.Errorf("user 2 pushes out of order: %v", got)
	}
	if len(rec.offline[1]) != 0 || len(rec.offline[2]) != 0 {
		t.Errorf("online users got offline pushes: %d, %d", len(rec.offline[1]), len(rec.offline[2]))
	}
	// Offline pushes for user 3: the creation notice and the 4 messages
	// others sent, not the one user 3 sent.
	var kinds []wire.Kind
	for _, en := range rec.offline[3] {
		if en.Msg.Sender == 3 {
			t.Errorf("offline push of the user's own message %+v", en.Row)
		}
		kinds = append(kinds, en.Row.Kind)
	}
	if len(kinds) != 5 {
		t.Errorf("user 3 offline pushes %v, want 5", kinds)
	}
}

func TestResendReturnsFirstResult(t *testing.T) {
	e := newEnv(t, Config{})
	conv := e.create(1, 2)
	first := e.send(2, conv, "same", "once")
	var wg sync.WaitGroup
	res := make([]SendResult, 16)
	for i := range res {
		wg.Go(func() { res[i] = e.send(2, conv, "same", "changed body") })
	}
	wg.Wait()
	for _, r := range res {
		if !r.Duplicate || r.MsgID != first.MsgID || r.ConvSeq != first.ConvSeq || !r.Time.Equal(first.Time) {
			t.Fatalf("resend = %+v, want duplicate of %+v", r, first)
		}
	}
	// A fresh id from another sender is not a duplicate.
	if r := e.send(1, conv, "same", "other sender"); r.Duplicate {
		t.Fatal("same client msg id from another sender deduplicated")
	}
	for _, u := range []uint64{1, 2} {
		if got := e.bodies(u, conv); !slices.Equal(got, []string{"once", "other sender"}) {
			t.Fatalf("user %d bodies %q", u, got)
		}
	}
}

// TestConcurrentDuplicatesStoreOnce holds the committer while 32 copies of
// one send queue up, so that they all land in one group commit and only the
// committer's own dedup can keep the second copy out.
func TestConcurrentDuplicatesStoreOnce(t *testing.T) {
	gt := newGate()
	e := newEnv(t, Config{stepHook: gt.hook})
	conv := e.create(1, 2)
	gt.hold(t, e, 2, conv)

	var wg sync.WaitGroup
	res := make([]SendResult, 32)
	for i := range res {
		wg.Go(func() { res[i] = e.send(1, conv, "dup", "x") })
	}
	waitFor(t, "32 queued sends", func() bool { return len(e.svc.cmds) == len(res) })
	gt.open()
	wg.Wait()
	firsts := 0
	for _, r := range res {
		if !r.Duplicate {
			firsts++
		}
		if r.ConvSeq != res[0].ConvSeq {
			t.Fatalf("results disagree: %+v vs %+v", r, res[0])
		}
	}
	if firsts != 1 {
		t.Fatalf("%d sends reported as first, want 1", firsts)
	}
	waitFor(t, "the blocker", func() bool { return len(e.bodies(2, conv)) == 2 })
	if got := e.bodies(2, conv); got[0] != "holds the committer" || got[1] != "x" {
		t.Fatalf("stored %q", got)
	}
}

// TestAbandonedSendNeverRuns gives up on a send while it waits behind a held
// commit. Its command must not run once its caller has returned: it would
// write the caller's result after the caller read it (a data race under
// -race), and store a message whose sender was told it failed before the
// committer even looked at it.
func TestAbandonedSendNeverRuns(t *testing.T) {
	gt := newGate()
	e := newEnv(t, Config{stepHook: gt.hook})
	conv := e.create(1, 2)
	blocker := gt.hold(t, e, 2, conv)

	gaveUp, cancel := context.WithCancel(ctx)
	queued := make(chan error)
	go func() {
		_, err := e.svc.SendGroupMessage(gaveUp, 1, conv, "abandoned", wire.KindText, []byte("x"))
		queued <- err
	}()
	waitFor(t, "the queued send", func() bool { return len(e.svc.cmds) == 1 })
	cancel()
	if err := <-queued; !errors.Is(err, context.Canceled) {
		t.Fatalf("abandoned send: %v, want context.Canceled", err)
	}
	gt.open()
	<-blocker
	e.send(1, conv, "after", "y")
	if got := e.bodies(2, conv); len(got) != 2 || got[0] != "holds the committer" || got[1] != "y" {
		t.Fatalf("stored %q, want the blocker and the send after the abandoned one", got)
	}
}

func TestRejections(t *testing.T) {
	e := newEnv(t, Config{MaxGroupSize: 4, MaxBodySize: 10})
	conv := e.create(1, 2, 3)
	if err := e.svc.SetRole(ctx, 1, conv, 2, wire.RoleAdmin); err != nil {
		t.Fatal(err)
	}
	closed := e.create(5)
	dismissed := e.create(1, 4)
	if err := e.svc.Dismiss(ctx, 1, dismissed); err != nil {
		t.Fatal(err)
	}
	send := func(sender, conv uint64, kind wire.Kind, body, cmid string) error {
		_, err := e.svc.SendGroupMessage(ctx, sender, conv, cmid, kind, []byte(body))
		return err
	}
	tests := []struct {
		name string
		err  error
		want error
	}{
		{"non-member sends", send(9, conv, wire.KindText, "x", "a"), ErrNotMember},
		{"unknown group", send(1, 12345, wire.KindText, "x", "a"), ErrNoGroup},
		{"dismissed group", send(1, dismissed, wire.KindText, "x", "a"), ErrDismissed},
		{"system kind", send(1, conv, wire.KindNotice, "x", "a"), ErrInvalid},
		{"zero kind", send(1, conv, 0, "x", "a"), ErrInvalid},
		{"body too large", send(1, conv, wire.KindText, "12345678901", "a"), ErrInvalid},
		{"no client msg id", send(1, conv, wire.KindText, "x", ""), ErrInvalid},
		{"client msg id too long", send(1, conv, wire.KindText, "x", string(make([]byte, 65))), ErrInvalid},
		{"group too big", errOnly(e.svc.CreateGroup(ctx, 1, NewGroup{Members: []uint64{2, 3, 4, 5}})), ErrGroupFull},
		{"invite beyond max", e.svc.Invite(ctx, 1, conv, []uint64{4, 5}), ErrGroupFull},
		{"invite only members", e.svc.Invite(ctx, 1, conv, []uint64{2, 3}), ErrAlreadyMember},
		{"invite by non-member", e.svc.Invite(ctx, 9, conv, []uint64{8}), ErrNotMember},
		{"join invitation-only", e.svc.Join(ctx, 6, closed), ErrForbidden},
		{"member kicks", e.svc.Kick(ctx, 3, conv, 2), ErrForbidden},
		{"admin kicks owner", e.svc.Kick(ctx, 2, conv, 1), ErrForbidden},
		{"kick non-member", e.svc.Kick(ctx, 1, conv, 9), ErrNoSuchMember},
		{"member kicks non-member", e.svc.Kick(ctx, 3, conv, 9), ErrForbidden},
		{"member mutes non-member", e.svc.MuteMember(ctx, 3, conv, 9, time.Now().Add(time.Hour)), ErrForbidden},
		{"admin sets role", e.svc.SetRole(ctx, 2, conv, 3, wire.RoleAdmin), ErrForbidden},
		{"bad role", e.svc.SetRole(ctx, 1, conv, 3, 9), ErrInvalid},
		{"admin dismisses", e.svc.Dismiss(ctx, 2, conv), ErrForbidden},
		{"member mutes", e.svc.MuteMember(ctx, 3, conv, 2, time.Now().Add(time.Hour)), ErrForbidden},
		{"member mutes group", e.svc.MuteGroup(ctx, 3, conv, time.Now().Add(time.Hour)), ErrForbidden},
		{"mark read never member", errOnly(e.svc.MarkRead(ctx, 9, conv, 1)), ErrNotMember},
		{"history non-member", errOnly(e.svc.History(ctx, 9, conv, 0, 0)), ErrNotMember},
	}
	for _, tt := range tests {
		if !errors.Is(tt.err, tt.want) {
			t.Errorf("%s: err = %v, want %v", tt.name, tt.err, tt.want)
		}
	}
	// None of the rejected calls wrote anything: user 3 has the creation
	// notice and the role change only.
	if in := e.inbox(3); len(in) != 2 {
		t.Errorf("user 3 has %d rows after rejected calls, want 2", len(in))
	}
}

func errOnly[T any](_ T, err error) error { return err }

func TestMute(t *testing.T) {
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	clock := now
	var mu sync.Mutex
	e := newEnv(t, Config{Now: func() time.Time { mu.Lock(); defer mu.Unlock(); return clock }})
	conv := e.create(1, 2, 3)
	if err := e.svc.SetRole(ctx, 1, conv, 2, wire.RoleAdmin); err != nil {
		t.Fatal(err)
	}
	if err := e.svc.MuteMember(ctx, 2, conv, 3, now.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.SendGroupMessage(ctx, 3, conv, "a", wire.KindText, nil); !errors.Is(err, ErrMuted) {
		t.Fatalf("muted member sent: %v", err)
	}
	mu.Lock()
	clock = now.Add(2 * time.Minute) // the mute expires
	mu.Unlock()
	e.send(3, conv, "b", "free again")

	if err := e.svc.MuteGroup(ctx, 1, conv, now.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.SendGroupMessage(ctx, 3, conv, "c", wire.KindText, nil); !errors.Is(err, ErrMuted) {
		t.Fatalf("member sent to a muted group: %v", err)
	}
	e.send(2, conv, "d", "admins speak")
	if err := e.svc.MuteGroup(ctx, 2, conv, time.Time{}); err != nil {
		t.Fatal(err)
	}
	e.send(3, conv, "e", "unmuted")
	if got := e.bodies(1, conv); !slices.Equal(got, []string{"free again", "admins speak", "unmuted"}) {
		t.Fatalf("bodies %q", got)
	}
}

func TestMembershipBoundsDelivery(t *testing.T) {
	e := newEnv(t, Config{})
	conv := e.create(1, 2)
	e.send(1, conv, "a", "before 3")
	if err := e.svc.Invite(ctx, 2, conv, []uint64{3}); err != nil {
		t.Fatal(err)
	}
	e.send(1, conv, "b", "with 3")
	if err := e.svc.Leave(ctx, 3, conv); err != nil {
		t.Fatal(err)
	}
	e.send(1, conv, "c", "after 3 left")
	if err := e.svc.Invite(ctx, 1, conv, []uint64{3}); err != nil {
		t.Fatal(err)
	}
	e.send(2, conv, "d", "3 is back")
	if err := e.svc.Kick(ctx, 1, conv, 3); err != nil {
		t.Fatal(err)
	}
	e.send(2, conv, "e", "3 kicked")

	if got := e.bodies(3, conv); !slices.Equal(got, []string{"with 3", "3 is back"}) {
		t.Fatalf("user 3 got %q", got)
	}
	if got := e.bodies(2, conv); len(got) != 5 {
		t.Fatalf("user 2 got %q", got)
	}
	// User 3 received the notices of its own leave and kick, last.
	var notices []wire.NoticeType
	for _, en := range e.inbox(3) {
		if en.Row.Kind == wire.KindNotice {
			var n wire.Notice
			json.Unmarshal(en.Msg.Body, &n)
			notices = append(notices, n.Type)
		}
	}
	if !slices.Equal(notices, []wire.NoticeType{wire.NoticeInvite, wire.NoticeLeave, wire.NoticeInvite, wire.NoticeKick}) {
		t.Fatalf("user 3 notices %q", notices)
	}
	if _, err := e.svc.History(ctx, 3, conv, 0, 0); !errors.Is(err, ErrNotMember) {
		t.Fatalf("kicked user reads history: %v", err)
	}
	if _, err := e.svc.SendGroupMessage(ctx, 3, conv, "f", wire.KindText, nil); !errors.Is(err, ErrNotMember) {
		t.Fatalf("kicked user sends: %v", err)
	}
	// A left conversation stays in the list, frozen where the user left.
	c := e.conversation(3, conv)
	if c.LeftAt == 0 || c.Head != c.LeftAt || c.Last == nil || c.Last.Kind != wire.KindNotice {
		t.Fatalf("left conversation %+v", c)
	}
}

func TestOwnerLeavesHandsOver(t *testing.T) {
	e := newEnv(t, Config{})
	conv := e.create(1, 2, 3, 4)
	if err := e.svc.SetRole(ctx, 1, conv, 4, wire.RoleAdmin); err != nil {
		t.Fatal(err)
	}
	if err := e.svc.Leave(ctx, 1, conv); err != nil {
		t.Fatal(err)
	}
	info, err := e.svc.Group(ctx, 2, conv)
	if err != nil {
		t.Fatal(err)
	}
	if info.Owner != 4 || len(info.Members) != 3 {
		t.Fatalf("after the owner left: %+v", info)
	}
	for _, u := range []uint64{4, 2, 3} {
		if err := e.svc.Leave(ctx, u, conv); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := e.svc.SendGroupMessage(ctx, 4, conv, "x", wire.KindText, nil); !errors.Is(err, ErrDismissed) {
		t.Fatalf("group with nobody left: %v, want ErrDismissed", err)
	}
}

func TestTransferOwnership(t *testing.T) {
	e := newEnv(t, Config{})
	conv := e.create(1, 2)
	if err := e.svc.SetRole(ctx, 1, conv, 2, wire.RoleOwner); err != nil {
		t.Fatal(err)
	}
	info, _ := e.svc.Group(ctx, 1, conv)
	roles := map[uint64]wire.Role{}
	for _, m := range info.Members {
		roles[m.User] = m.Role
	}
	if info.Owner != 2 || roles[2] != wire.RoleOwner || roles[1] != wire.RoleAdmin {
		t.Fatalf("after transfer: owner %d roles %v", info.Owner, roles)
	}
	if err := e.svc.Dismiss(ctx, 1, conv); !errors.Is(err, ErrForbidden) {
		t.Fatalf("old owner dismisses: %v", err)
	}
}

func TestDismiss(t *testing.T) {
	e := newEnv(t, Config{})
	conv := e.create(1, 2, 3)
	if err := e.svc.Dismiss(ctx, 1, conv); err != nil {
		t.Fatal(err)
	}
	for _, u := range []uint64{1, 2, 3} {
		in := e.inbox(u)
		last := in[len(in)-1]
		if last.Row.Kind != wire.KindNotice || !json.Valid(last.Msg.Body) {
			t.Fatalf("user %d last row %+v", u, last.Row)
		}
		if c := e.conversation(u, conv); c.LeftAt != last.Row.ConvSeq {
			t.Fatalf("user %d conversation %+v", u, c)
		}
	}
	if err := e.svc.Join(ctx, 4, conv); !errors.Is(err, ErrDismissed) {
		t.Fatalf("join dismissed: %v", err)
	}
}

func TestOpenGroupJoin(t *testing.T) {
	e := newEnv(t, Config{})
	g, err := e.svc.CreateGroup(ctx, 1, NewGroup{Name: "open", Open: true})
	if err != nil {
		t.Fatal(err)
	}
	e.send(1, g.ID, "a", "before")
	if err := e.svc.Join(ctx, 2, g.ID); err != nil {
		t.Fatal(err)
	}
	if err := e.svc.Join(ctx, 2, g.ID); !errors.Is(err, ErrInvalid) {
		t.Fatalf("second join: %v", err)
	}
	e.send(1, g.ID, "b", "after")
	if got := e.bodies(2, g.ID); !slices.Equal(got, []string{"after"}) {
		t.Fatalf("joiner got %q", got)
	}
	// The joiner sent the join notice, so it and all before it count as
	// read: unread is the one message after.
	if c := e.conversation(2, g.ID); c.Unread != 1 || c.ReadSeq != 3 || c.Name != "open" {
		t.Fatalf("joiner conversation %+v", c)
	}
}

func TestUnreadAndMarkRead(t *testing.T) {
	e := newEnv(t, Config{})
	conv := e.create(1, 2)
	for i := range 5 {
		e.send(1, conv, fmt.Sprint(i), "x")
	}
	if c := e.conversation(2, conv); c.Unread != 6 || c.Head != 6 {
		t.Fatalf("user 2 %+v, want 6 unread", c)
	}
	if c := e.conversation(1, conv); c.Unread != 0 {
		t.Fatalf("sender unread %d, want 0", c.Unread)
	}
	steps := []struct{ mark, want uint64 }{
		{3, 3},
		{2, 3},  // never backwards
		{3, 3},  // no move, no event
		{99, 6}, // capped at the head
		{0, 6},
	}
	for _, s := range steps {
		got, err := e.svc.MarkRead(ctx, 2, conv, s.mark)
		if err != nil || got != s.want {
			t.Fatalf("MarkRead(%d) = %d, %v; want %d", s.mark, got, err, s.want)
		}
		if c := e.conversation(2, conv); c.ReadSeq != s.want || c.Unread != 6-s.want {
			t.Fatalf("after MarkRead(%d): %+v", s.mark, c)
		}
	}
	// Each move reached the user's inbox once, for the other devices.
	var reads []uint64
	for _, en := range e.inbox(2) {
		if en.Row.Kind == wire.KindRead {
			if en.Msg != nil || en.Row.Conv != conv {
				t.Fatalf("read row %+v", en)
			}
			reads = append(reads, en.Row.ConvSeq)
		}
	}
	if !slices.Equal(reads, []uint64{3, 6}) {
		t.Fatalf("read events %v, want [3 6]", reads)
	}
	// Sending moves the sender's marker too.
	e.send(1, conv, "z", "x")
	e.send(2, conv, "y", "x")
	if c := e.conversation(2, conv); c.ReadSeq != 8 || c.Unread != 0 {
		t.Fatalf("after own send: %+v", c)
	}
	if c := e.conversation(1, conv); c.Unread != 1 {
		t.Fatalf("user 1 unread %d, want 1", c.Unread)
	}
}

func TestConversationsOrder(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var mu sync.Mutex
	tick := func() time.Time { mu.Lock(); defer mu.Unlock(); now = now.Add(time.Second); return now }
	e := newEnv(t, Config{Now: tick})
	a, b, c := e.create(1, 2), e.create(1, 3), e.create(1, 4)
	e.send(2, a, "1", "x")
	e.send(4, c, "2", "x")
	var order []uint64
	for _, ci := range e.conversations(1) {
		order = append(order, ci.Conv)
	}
	if !slices.Equal(order, []uint64{c, a, b}) {
		t.Fatalf("order %v, want %v", order, []uint64{c, a, b})
	}
}

// TestConversationsOrderWithinWindow: messages a 70th of a second apart,
// several within a tenth of a second (the Pebble store keys its activity
// index by the tenth), keep the list in its millisecond order on every
// page, whatever the page's limit and wherever a tenth begins.
func TestConversationsOrderWithinWindow(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var mu sync.Mutex
	tick := func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		now = now.Add(time.Second / 70)
		return now
	}
	e := newEnv(t, Config{Now: tick})
	groups := make([]uint64, 9)
	for i := range groups {
		groups[i] = e.create(1, 2)
	}
	// want ends as the order of the list: a group moves to the front when
	// it gets a message.
	want := slices.Clone(groups)
	slices.Reverse(want)
	for i, g := range []int{3, 0, 5, 1, 8, 4, 2, 0, 3, 7} {
		e.send(2, groups[g], fmt.Sprint("m", i), "x")
		want = append([]uint64{groups[g]}, slices.DeleteFunc(want, func(c uint64) bool { return c == groups[g] })...)
	}
	for _, limit := range []int{1, 2, 3, 4, 5, len(want)} {
		for offset := range want {
			page, err := e.svc.Conversations(ctx, 1, offset, limit)
			if err != nil {
				t.Fatal(err)
			}
			var got []uint64
			for _, c := range page.Conversations {
				got = append(got, c.Conv)
			}
			end := min(offset+limit, len(want))
			if !slices.Equal(got, want[offset:end]) || page.HasMore != (end < len(want)) {
				t.Fatalf("Conversations(offset %d, limit %d) = %v (more %v), want %v (more %v)",
					offset, limit, got, page.HasMore, want[offset:end], end < len(want))
			}
		}
	}
}

func TestDND(t *testing.T) {
	rec := newRecorder()
	e := newEnv(t, Config{Notifier: rec, OfflinePusher: rec})
	conv := e.create(1, 2, 3)
	if err := e.svc.SetDND(ctx, 2, conv, true); err != nil {
		t.Fatal(err)
	}
	e.send(1, conv, "a", "quiet")
	waitFor(t, "offline push to 3", func() bool {
		rec.mu.Lock()
		defer rec.mu.Unlock()
		return len(rec.offline[3]) == 2
	})
	rec.mu.Lock()
	n2 := len(rec.offline[2])
	rec.mu.Unlock()
	if n2 != 1 { // the creation notice came before do-not-disturb
		t.Fatalf("user 2 with do-not-disturb got %d offline pushes, want 1", n2)
	}
	if c := e.conversation(2, conv); !c.DND {
		t.Fatal("DND not in the conversation list")
	}
	// The setting survives a restart: the committer reloads the group, and
	// do-not-disturb with its members.
	e.crash()
	if !e.conversation(2, conv).DND {
		t.Fatal("DND lost on restart")
	}
	e.send(1, conv, "b", "still quiet")
	waitFor(t, "offline push to 3", func() bool {
		rec.mu.Lock()
		defer rec.mu.Unlock()
		return len(rec.offline[3]) == 3
	})
	rec.mu.Lock()
	n2 = len(rec.offline[2])
	rec.mu.Unlock()
	if n2 != 1 {
		t.Fatalf("after a restart user 2 with do-not-disturb got %d offline pushes, want 1", n2)
	}
}

// TestDNDSync: a change of do-not-disturb reaches the user's other devices
// as a KindDND row, pushed and synced without a message; setting what is
// set already writes nothing.
func TestDNDSync(t *testing.T) {
	rec := newRecorder(2)
	e := newEnv(t, Config{Notifier: rec})
	conv := e.create(1, 2)
	type setting struct {
		conv, value uint64
	}
	dndRows := func(entries []Entry) []setting {
		var out []setting
		for _, en := range entries {
			if en.Row.Kind == wire.KindDND {
				if en.Msg != nil || en.Row.MsgID != 0 {
					t.Errorf("KindDND row %+v carries a message", en.Row)
				}
				out = append(out, setting{en.Row.Conv, en.Row.ConvSeq})
			}
		}
		return out
	}
	for _, on := range []bool{true, true, false, false, true} {
		if err := e.svc.SetDND(ctx, 2, conv, on); err != nil {
			t.Fatal(err)
		}
	}
	want := []setting{{conv, 1}, {conv, 0}, {conv, 1}}
	if got := dndRows(e.inbox(2)); !slices.Equal(got, want) {
		t.Fatalf("synced KindDND rows %v, want %v", got, want)
	}
	waitFor(t, "the pushes", func() bool {
		rec.mu.Lock()
		defer rec.mu.Unlock()
		return len(dndRows(rec.pushed[2])) == len(want)
	})
	rec.mu.Lock()
	pushed := dndRows(rec.pushed[2])
	rec.mu.Unlock()
	if !slices.Equal(pushed, want) {
		t.Fatalf("pushed KindDND rows %v, want %v", pushed, want)
	}
	if got := dndRows(e.inbox(1)); len(got) != 0 {
		t.Fatalf("another member got %v", got)
	}
	if !e.conversation(2, conv).DND {
		t.Fatal("the conversation list lost the last setting")
	}
}

func TestSyncAndHistoryPaging(t *testing.T) {
	e := newEnv(t, Config{})
	conv := e.create(1, 2)
	for i := range 45 {
		e.send(1, conv, fmt.Sprint(i), fmt.Sprint(i))
	}
	res, err := e.svc.Sync(ctx, 2, 0, 10)
	if err != nil || len(res.Entries) != 10 || !res.HasMore || res.Head != 46 {
		t.Fatalf("Sync = %d entries, more %v, head %d, %v", len(res.Entries), res.HasMore, res.Head, err)
	}
	res, err = e.svc.Sync(ctx, 2, 40, 10)
	if err != nil || len(res.Entries) != 6 || res.HasMore {
		t.Fatalf("tail Sync = %d entries, more %v, %v", len(res.Entries), res.HasMore, err)
	}
	if res, _ := e.svc.Sync(ctx, 2, 46, 0); len(res.Entries) != 0 || res.HasMore || res.Head != 46 {
		t.Fatalf("Sync at head = %+v", res)
	}

	// Scroll back through history 20 at a time: 46 messages in 3 pages.
	var got []uint64
	var before uint64
	for {
		page, err := e.svc.History(ctx, 2, conv, before, 0)
		if err != nil {
			t.Fatal(err)
		}
		if len(page) == 0 {
			break
		}
		if len(page) > wire.DefaultHistoryLimit {
			t.Fatalf("page of %d", len(page))
		}
		for _, m := range page {
			got = append(got, m.ConvSeq)
		}
		before = page[len(page)-1].ConvSeq
	}
	for i, n := range got {
		if n != uint64(46-i) {
			t.Fatalf("history %v is not 46..1", got)
		}
	}
	if len(got) != 46 {
		t.Fatalf("history has %d messages", len(got))
	}
}

func TestHistoryStartsAtJoin(t *testing.T) {
	e := newEnv(t, Config{})
	conv := e.create(1)
	for i := range 5 {
		e.send(1, conv, fmt.Sprint(i), "old")
	}
	if err := e.svc.Invite(ctx, 1, conv, []uint64{2}); err != nil {
		t.Fatal(err)
	}
	e.send(1, conv, "new", "new")
	h, err := e.svc.History(ctx, 2, conv, 0, 50)
	if err != nil {
		t.Fatal(err)
	}
	if len(h) != 2 || h[0].ConvSeq != 8 || h[1].ConvSeq != 7 {
		t.Fatalf("history of a late joiner: %+v", h)
	}
	if h, _ := e.svc.History(ctx, 2, conv, 7, 50); len(h) != 0 {
		t.Fatalf("history before the join point: %d messages", len(h))
	}
}

func TestClose(t *testing.T) {
	e := newEnv(t, Config{})
	conv := e.create(1, 2)
	e.svc.Close()
	if _, err := e.svc.SendGroupMessage(ctx, 1, conv, "x", wire.KindText, nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("send after Close: %v", err)
	}
	if err := e.svc.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestLeaveAndRejoinInOneBatch queues a leave and a new invitation of the
// same user into one group commit: the batch must end with the user a
// member, in the store as in the cache.
func TestLeaveAndRejoinInOneBatch(t *testing.T) {
	gt := newGate()
	e := newEnv(t, Config{stepHook: gt.hook})
	conv := e.create(1, 2, 3)
	gt.hold(t, e, 1, conv)
	errs := make(chan error, 2)
	go func() { errs <- e.svc.Leave(ctx, 3, conv) }()
	waitFor(t, "the leave to queue", func() bool { return len(e.svc.cmds) == 1 })
	go func() { errs <- e.svc.Invite(ctx, 1, conv, []uint64{3}) }()
	waitFor(t, "the invite to queue", func() bool { return len(e.svc.cmds) == 2 })
	gt.open()
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	e.crash() // reload membership from the store
	e.send(3, conv, "back", "member again")
	info, err := e.svc.Group(ctx, 3, conv)
	if err != nil || len(info.Members) != 3 {
		t.Fatalf("group after leave and rejoin: %+v, %v", info, err)
	}
}

// TestConversationsOrderIgnoresSettings pins "latest activity": the time of
// the newest message the user has in the conversation. Moving the read
// marker or do-not-disturb writes inbox entries but no message, and leaves
// the order as it was.
func TestConversationsOrderIgnoresSettings(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var mu sync.Mutex
	tick := func() time.Time { mu.Lock(); defer mu.Unlock(); now = now.Add(time.Second); return now }
	e := newEnv(t, Config{Now: tick})
	a, b := e.create(1, 2), e.create(1, 3)
	e.send(2, a, "1", "x")
	order := func() []uint64 {
		page, err := e.svc.Conversations(ctx, 1, 0, 0)
		if err != nil {
			t.Fatal(err)
		}
		var out []uint64
		for _, c := range page.Conversations {
			out = append(out, c.Conv)
		}
		return out
	}
	if got := order(); !slices.Equal(got, []uint64{a, b}) {
		t.Fatalf("order %v, want %v", got, []uint64{a, b})
	}
	if _, err := e.svc.MarkRead(ctx, 1, b, 1); err != nil {
		t.Fatal(err)
	}
	if err := e.svc.SetDND(ctx, 1, b, true); err != nil {
		t.Fatal(err)
	}
	if got := order(); !slices.Equal(got, []uint64{a, b}) {
		t.Fatalf("order after MARK_READ and SET_DND %v, want %v", got, []uint64{a, b})
	}
	e.send(3, b, "2", "x")
	if got := order(); !slices.Equal(got, []uint64{b, a}) {
		t.Fatalf("order after a message %v, want %v", got, []uint64{b, a})
	}
}

// TestRejoinReadsFromLatestJoin pins what a rejoined member reads: HISTORY
// and joined_at start at the notice of the latest join; what the user
// received in an earlier membership stays in their inbox.
func TestRejoinReadsFromLatestJoin(t *testing.T) {
	e := newEnv(t, Config{})
	conv := e.create(1, 2)                            // 1: create
	e.send(1, conv, "a", "a")                         // 2
	if err := e.svc.Leave(ctx, 2, conv); err != nil { // 3: leave
		t.Fatal(err)
	}
	e.send(1, conv, "b", "while away")                              // 4
	if err := e.svc.Invite(ctx, 1, conv, []uint64{2}); err != nil { // 5: invite
		t.Fatal(err)
	}
	e.send(1, conv, "c", "c") // 6
	if c := e.conversation(2, conv); c.JoinedAt != 5 || c.LeftAt != 0 || c.ReadSeq != 4 {
		t.Fatalf("conversation after rejoin %+v", c.Conversation)
	}
	info, err := e.svc.Group(ctx, 2, conv)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range info.Members {
		if m.User == 2 && m.JoinedAt != 5 {
			t.Fatalf("member joined_at %d, want 5", m.JoinedAt)
		}
	}
	h, err := e.svc.History(ctx, 2, conv, 0, 50)
	if err != nil {
		t.Fatal(err)
	}
	var got []uint64
	for _, m := range h {
		got = append(got, m.ConvSeq)
	}
	if !slices.Equal(got, []uint64{6, 5}) {
		t.Fatalf("history after rejoin: conv_seqs %v, want [6 5]", got)
	}
	var inInbox []uint64
	for _, en := range e.inbox(2) {
		inInbox = append(inInbox, en.Row.ConvSeq)
	}
	if !slices.Equal(inInbox, []uint64{1, 2, 3, 5, 6}) {
		t.Fatalf("inbox conv_seqs %v, want [1 2 3 5 6]", inInbox)
	}
}

func TestGroupFullNamesTheLimit(t *testing.T) {
	e := newEnv(t, Config{MaxGroupSize: 3})
	_, err := e.svc.CreateGroup(ctx, 1, NewGroup{Members: []uint64{2, 3, 4}})
	if !errors.Is(err, ErrGroupFull) || !strings.Contains(err.Error(), "at most 3 members") {
		t.Fatalf("create: %v", err)
	}
	conv := e.create(1, 2, 3)
	err = e.svc.Invite(ctx, 1, conv, []uint64{4})
	if !errors.Is(err, ErrGroupFull) || !strings.Contains(err.Error(), "at most 3 members") {
		t.Fatalf("invite: %v", err)
	}
}

// readCounter counts the bytes (timeline.Message.Size) of the messages the
// store returns to the service, and the inbox rows.
type readCounter struct {
	timeline.Store
	bytes atomic.Int64
	rows  atomic.Int64
}

func (r *readCounter) Inbox(ctx context.Context, user uint64, rg timeline.Range) ([]timeline.Row, error) {
	rows, err := r.Store.Inbox(ctx, user, rg)
	r.rows.Add(int64(len(rows)))
	return rows, err
}

func (r *readCounter) count(msgs []timeline.Message) {
	for i := range msgs {
		r.bytes.Add(int64(msgs[i].Size()))
	}
}

func (r *readCounter) Messages(ctx context.Context, conv uint64, rg timeline.Range) ([]timeline.Message, error) {
	msgs, err := r.Store.Messages(ctx, conv, rg)
	r.count(msgs)
	return msgs, err
}

func (r *readCounter) MessagesByKey(ctx context.Context, keys []timeline.MessageKey, maxBytes int) ([]timeline.Message, error) {
	msgs, err := r.Store.MessagesByKey(ctx, keys, maxBytes)
	r.count(msgs)
	return msgs, err
}

// TestReadsStopAtPageBudget: a page of large messages costs the store what
// the page returns, not the entry limit's worth, and paging on still
// returns every entry once.
func TestReadsStopAtPageBudget(t *testing.T) {
	const budget, body = 200 << 10, 60 << 10
	e := newEnv(t, Config{MaxReadBytes: budget})
	conv := e.create(1, 2)
	for i := range 30 {
		e.send(1, conv, fmt.Sprint(i), strings.Repeat(fmt.Sprint(i%10), body))
	}
	counter := &readCounter{Store: e.store}
	e.svc.store = counter

	// Every page holds what the budget takes, the last what is left.
	check := func(what string, sizes []int, last bool) {
		t.Helper()
		total := 0
		for _, n := range sizes {
			total += n
		}
		if total > budget || !last && len(sizes) != budget/(body+timeline.MessageOverhead+2) {
			t.Fatalf("%s: page of %d messages, %d bytes; budget %d", what, len(sizes), total, budget)
		}
		if read := counter.bytes.Swap(0); read != int64(total) {
			t.Fatalf("%s: the store returned %d bytes for a page of %d", what, read, total)
		}
	}

	var synced []uint64
	for after := uint64(1); after < 31; {
		res, err := e.svc.Sync(ctx, 2, after, wire.MaxSyncLimit)
		if err != nil {
			t.Fatal(err)
		}
		var sizes []int
		for _, en := range res.Entries {
			sizes = append(sizes, en.Msg.Size())
			synced = append(synced, en.Row.Seq)
		}
		after = res.Entries[len(res.Entries)-1].Row.Seq
		check(fmt.Sprintf("sync to %d", after), sizes, after == 31)
		if res.HasMore != (after < 31) {
			t.Fatalf("sync to %d: has_more %v", after, res.HasMore)
		}
	}
	if !slices.Equal(synced, seqRange(2, 31)) {
		t.Fatalf("synced seqs %v, want 2..31", synced)
	}

	counter.bytes.Store(0)
	var history []uint64
	for before := uint64(0); ; {
		page, err := e.svc.History(ctx, 2, conv, before, wire.MaxHistoryLimit)
		if err != nil {
			t.Fatal(err)
		}
		if len(page) == 0 {
			break
		}
		var sizes []int
		for _, m := range page {
			sizes = append(sizes, m.Size())
			history = append(history, m.ConvSeq)
		}
		before = page[len(page)-1].ConvSeq
		check(fmt.Sprintf("history to %d", before), sizes, before == 1)
	}
	if want := seqRange(31, 1); !slices.Equal(history, want) {
		t.Fatalf("history %v, want 31..1", history)
	}
}

// TestSyncReadsRowsInRounds: a page that the byte budget ends early reads
// the inbox rows of its first round, not the entry limit's worth.
func TestSyncReadsRowsInRounds(t *testing.T) {
	const budget, body = 20 << 10, 6 << 10
	e := newEnv(t, Config{MaxReadBytes: budget})
	conv := e.create(1, 2)
	for i := range 2 * syncFirstRows {
		e.send(1, conv, fmt.Sprint(i), strings.Repeat("x", body))
	}
	counter := &readCounter{Store: e.store}
	e.svc.store = counter
	res, err := e.svc.Sync(ctx, 2, 0, wire.MaxSyncLimit)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Entries) > 1+budget/body || !res.HasMore { // the group's creation notice, and what fits
		t.Fatalf("page of %d entries, has_more %v", len(res.Entries), res.HasMore)
	}
	if rows := counter.rows.Load(); rows > syncFirstRows+1 {
		t.Fatalf("%d rows read for a page of %d entries", rows, len(res.Entries))
	}
}

// seqRange returns from..to, counting down when from > to.
func seqRange(from, to uint64) []uint64 {
	var out []uint64
	for n := from; ; {
		out = append(out, n)
		if n == to {
			return out
		}
		if from < to {
			n++
		} else {
			n--
		}
	}
}

// TestSyncPagesPastFirstRound: a page longer than the first read of rows
// (syncFirstRows) continues with the next rows, without a hole, up to the
// limit.
func TestSyncPagesPastFirstRound(t *testing.T) {
	e := newEnv(t, Config{})
	conv := e.create(1, 2)
	const n = 3*syncFirstRows + 5
	for i := range n {
		e.send(1, conv, fmt.Sprint(i), fmt.Sprint(i))
	}
	for _, tc := range []struct {
		limit int
		want  int
		more  bool
	}{
		{wire.MaxSyncLimit, n + 1, false},
		{2*syncFirstRows + 3, 2*syncFirstRows + 3, true},
		{n + 1, n + 1, false},
	} {
		res, err := e.svc.Sync(ctx, 2, 0, tc.limit)
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Entries) != tc.want || res.HasMore != tc.more || res.Head != n+1 {
			t.Fatalf("Sync(limit %d) = %d entries, more %v, head %d; want %d, %v, %d",
				tc.limit, len(res.Entries), res.HasMore, res.Head, tc.want, tc.more, n+1)
		}
		if s := seqs(res.Entries); !contiguous(s) || s[0] != 1 {
			t.Fatalf("Sync(limit %d) seqs %v", tc.limit, s)
		}
	}
}

// TestConversationsPageBudget: a page of conversations whose last messages
// are large stops at the byte budget, reads little past it, and paging on
// lists every conversation once, in activity order.
func TestConversationsPageBudget(t *testing.T) {
	const budget, body = 200 << 10, 60 << 10
	var clock atomic.Int64
	clock.Store(time.Now().UnixMilli())
	e := newEnv(t, Config{MaxReadBytes: budget, Now: func() time.Time { return time.UnixMilli(clock.Add(1000)) }})
	var want []uint64
	for i := range 12 {
		conv := e.create(1, 2)
		e.send(2, conv, fmt.Sprint(i), strings.Repeat("x", body))
		want = append([]uint64{conv}, want...)
	}
	counter := &readCounter{Store: e.store}
	e.svc.store = counter
	var got []uint64
	for {
		page, err := e.svc.Conversations(ctx, 1, len(got), 0)
		if err != nil {
			t.Fatal(err)
		}
		total := 0
		for _, c := range page.Conversations {
			got = append(got, c.Conv)
			total += c.size()
		}
		if total > budget {
			t.Fatalf("page of %d conversations, %d bytes; budget %d", len(page.Conversations), total, budget)
		}
		// The store returned the page's last messages and at most one
		// round (conversationReaders) more.
		if read := counter.bytes.Swap(0); read > int64(budget+conversationReaders*(body+timeline.MessageOverhead+2)) {
			t.Fatalf("the store returned %d bytes for a page of %d", read, total)
		}
		if !page.HasMore {
			break
		}
	}
	if !slices.Equal(got, want) {
		t.Fatalf("conversations %v, want %v", got, want)
	}
}

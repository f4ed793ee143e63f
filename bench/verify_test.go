package bench

import (
	"fmt"
	"slices"
	"testing"

	"github.com/inboxd/inboxd/wire"
)

// scenario is a fabricated run: group 7 of users 1 (owner) and 2, three
// messages acknowledged, the third sent by user 2. fix returns each user's
// correct inbox and CONVERSATIONS; a test breaks one and feeds the verifier.
type scenario struct {
	m      *Model
	inbox  map[uint64][]InboxEntry
	convs  map[uint64][]ConvState
	device map[uint64]bool // feed a device stream equal to the inbox
}

func newScenario() *scenario {
	m := NewModel()
	m.AddGroup(7, 1, []uint64{1, 2})
	m.AddGroup(9, 2, []uint64{2}) // a group user 1 is not in
	senders := []uint64{1, 1, 2}
	entries := []InboxEntry{{Conv: 7, ConvSeq: 1, MsgID: 100, Kind: wire.KindNotice, Sender: 1}}
	for i, s := range senders {
		cmid := fmt.Sprintf("c%d", i)
		h := m.NewSend(7, s, cmid)
		m.Ack(h, uint64(101+i), uint64(2+i))
		entries = append(entries, InboxEntry{Conv: 7, ConvSeq: uint64(2 + i), MsgID: uint64(101 + i), Kind: wire.KindText, Sender: s, ClientMsgID: cmid})
	}
	sc := &scenario{m: m, inbox: map[uint64][]InboxEntry{}, convs: map[uint64][]ConvState{}}
	for _, u := range []uint64{1, 2} {
		in := slices.Clone(entries)
		for i := range in {
			in[i].Seq = uint64(i + 1)
		}
		sc.inbox[u] = in
	}
	// User 1 sent conv_seq 3, user 2 conv_seq 4: 4 − 3 = 1 unread for user 1.
	sc.convs[1] = []ConvState{{Conv: 7, Head: 4, ReadSeq: 3, Unread: 1}}
	sc.convs[2] = []ConvState{{Conv: 7, Head: 4, ReadSeq: 4, Unread: 0}}
	// User 2's own group: only its create notice.
	sc.inbox[2] = append(sc.inbox[2], InboxEntry{Seq: 5, Conv: 9, ConvSeq: 1, MsgID: 200, Kind: wire.KindNotice, Sender: 2})
	sc.convs[2] = append(sc.convs[2], ConvState{Conv: 9, Head: 1, ReadSeq: 1})
	return sc
}

func (sc *scenario) verify(t *testing.T) []Violation {
	t.Helper()
	return sc.verifyDevices(t, sc.inbox)
}

// verifyDevices feeds the verifier the scenario's inboxes, with device
// streams equal to devices.
func (sc *scenario) verifyDevices(t *testing.T, devices map[uint64][]InboxEntry) []Violation {
	t.Helper()
	v := NewVerifier(sc.m, 0)
	for _, u := range []uint64{1, 2} {
		v.Inbox(u, sc.inbox[u])
		v.Conversations(u, sc.convs[u])
		d := uint64(digestSeed)
		for _, e := range devices[u] {
			d = Digest(d, e.Seq, e.Conv, e.ConvSeq, e.MsgID, e.Kind)
		}
		v.Device(u, "phone", uint64(len(devices[u])), d)
	}
	out, more := v.Finish()
	if more != 0 {
		t.Fatalf("%d violations dropped", more)
	}
	return out
}

func kinds(vs []Violation) []string {
	var ks []string
	for _, v := range vs {
		if !slices.Contains(ks, v.Kind) {
			ks = append(ks, v.Kind)
		}
	}
	slices.Sort(ks)
	return ks
}

func TestVerifierAcceptsCorrectRun(t *testing.T) {
	if vs := newScenario().verify(t); len(vs) != 0 {
		t.Fatalf("violations in a correct run: %v", vs)
	}
}

func TestVerifierCatches(t *testing.T) {
	tests := []struct {
		name    string
		corrupt func(sc *scenario)
		want    []string
	}{
		{"gap in seqs", func(sc *scenario) {
			sc.inbox[1][3].Seq = 5 // 1 2 3 5
		}, []string{ViolationDevice, ViolationSeqGap}},
		{"duplicate message", func(sc *scenario) {
			e := sc.inbox[1][2]
			e.Seq = 5
			sc.inbox[1] = append(sc.inbox[1], e)
		}, []string{ViolationDevice, ViolationDuplicate}},
		{"missing acknowledged message", func(sc *scenario) {
			sc.inbox[2] = slices.Delete(sc.inbox[2], 3, 4) // conv_seq 4, user 2's own
			for i := range sc.inbox[2] {
				sc.inbox[2][i].Seq = uint64(i + 1)
			}
			sc.convs[2][0] = ConvState{Conv: 7, Head: 3, ReadSeq: 3}
		}, []string{ViolationMissing, ViolationUnread}},
		{"out-of-order conv_seq", func(sc *scenario) {
			in := sc.inbox[1]
			in[1].ConvSeq, in[2].ConvSeq = in[2].ConvSeq, in[1].ConvSeq
			in[1].MsgID, in[2].MsgID = in[2].MsgID, in[1].MsgID
			in[1].ClientMsgID, in[2].ClientMsgID = in[2].ClientMsgID, in[1].ClientMsgID
		}, []string{ViolationConvGap, ViolationOrder}},
		{"wrong unread count", func(sc *scenario) {
			sc.convs[1][0] = ConvState{Conv: 7, Head: 4, ReadSeq: 2, Unread: 2}
		}, []string{ViolationUnread}},
		{"message from a group the user is not in", func(sc *scenario) {
			sc.inbox[1] = append(sc.inbox[1], InboxEntry{Seq: 5, Conv: 9, ConvSeq: 1, MsgID: 200, Kind: wire.KindNotice, Sender: 2})
		}, []string{ViolationDevice, ViolationUnexpected}},
		{"the same send stored twice", func(sc *scenario) {
			// conv_seq 5 holds user 2's "c2" again, unacknowledged: both inboxes have it.
			for _, u := range []uint64{1, 2} {
				e := InboxEntry{Seq: 5, Conv: 7, ConvSeq: 5, MsgID: 999, Kind: wire.KindText, Sender: 2, ClientMsgID: "c2"}
				if u == 2 {
					e.Seq = 6
				}
				sc.inbox[u] = append(sc.inbox[u], e)
			}
			sc.convs[1][0].Head, sc.convs[1][0].Unread = 5, 2
			sc.convs[2][0].Head, sc.convs[2][0].ReadSeq = 5, 5
			// The model places user 2's marker at its one real send.
		}, []string{ViolationDuplicate, ViolationUnread}},
		{"a stored but unacknowledged send missing for one member", func(sc *scenario) {
			h := sc.m.NewSend(7, 1, "lost-ack")
			_ = h // its ack was lost in a crash: only user 1's inbox shows it
			sc.inbox[1] = append(sc.inbox[1], InboxEntry{Seq: 5, Conv: 7, ConvSeq: 5, MsgID: 500, Kind: wire.KindText, Sender: 1, ClientMsgID: "lost-ack"})
			sc.convs[1][0] = ConvState{Conv: 7, Head: 5, ReadSeq: 5}
		}, []string{ViolationMissing}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sc := newScenario()
			tt.corrupt(sc)
			// The device streams are the correct ones of newScenario:
			// recompute digests from the broken inbox except where the
			// test wants a divergence (it lists ViolationDevice).
			got := sc.verifyWithDevices(t, slices.Contains(tt.want, ViolationDevice))
			if !slices.Equal(kinds(got), tt.want) {
				t.Fatalf("got violation kinds %v, want %v:\n%v", kinds(got), tt.want, got)
			}
		})
	}
}

// verifyWithDevices is verify, with device streams that are the correct
// run's (diverging) or the inbox as fed (agreeing).
func (sc *scenario) verifyWithDevices(t *testing.T, diverge bool) []Violation {
	t.Helper()
	if !diverge {
		return sc.verify(t)
	}
	return sc.verifyDevices(t, newScenario().inbox)
}

func TestVerifierLostAckStoredOnceIsFine(t *testing.T) {
	sc := newScenario()
	sc.m.NewSend(7, 2, "lost") // no ack: the crash took it, but it was stored
	for _, u := range []uint64{1, 2} {
		sc.inbox[u] = append(sc.inbox[u], InboxEntry{Seq: uint64(len(sc.inbox[u]) + 1), Conv: 7, ConvSeq: 5, MsgID: 555, Kind: wire.KindText, Sender: 2, ClientMsgID: "lost"})
	}
	sc.convs[1][0] = ConvState{Conv: 7, Head: 5, ReadSeq: 3, Unread: 2}
	sc.convs[2][0] = ConvState{Conv: 7, Head: 5, ReadSeq: 5}
	if vs := sc.verify(t); len(vs) != 0 {
		t.Fatalf("violations: %v", vs)
	}
}

// TestVerifierInboxOnlyEntries: a do-not-disturb entry carries no message
// (msg_id 0, conv_seq the setting), so it is neither a duplicate nor out
// of conv_seq order.
func TestVerifierInboxOnlyEntries(t *testing.T) {
	sc := newScenario()
	for _, on := range []uint64{1, 0} {
		sc.inbox[1] = append(sc.inbox[1], InboxEntry{Seq: uint64(len(sc.inbox[1]) + 1), Conv: 7, ConvSeq: on, Kind: wire.KindDND})
	}
	if vs := sc.verify(t); len(vs) != 0 {
		t.Fatalf("violations: %v", vs)
	}
}

// newFeatureScenario extends the scenario: user 1 edits conv_seq 2 (the
// entry at 5) and recalls conv_seq 3 (at 6), then user 2 sends a message
// mentioning user 1 (at 7), which user 1 has not read.
func newFeatureScenario() *scenario {
	sc := newScenario()
	sends := []Send{
		{Conv: 7, Sender: 1, ClientMsgID: "e", Op: OpEdit, Target: 2},
		{Conv: 7, Sender: 1, ClientMsgID: "r", Op: OpRecall, Target: 3},
		{Conv: 7, Sender: 2, ClientMsgID: "m", Mentions: []uint64{1}},
	}
	kinds := []wire.Kind{wire.KindEdit, wire.KindRecall, wire.KindText}
	for i, s := range sends {
		h := sc.m.New(s)
		sc.m.Ack(h, uint64(105+i), uint64(5+i))
		for _, u := range []uint64{1, 2} {
			// After the group's four entries, before user 2's other group.
			e := InboxEntry{Conv: 7, ConvSeq: uint64(5 + i), MsgID: uint64(105 + i), Kind: kinds[i], Sender: s.Sender, ClientMsgID: s.ClientMsgID}
			sc.inbox[u] = slices.Insert(sc.inbox[u], 4+i, e)
		}
	}
	for _, u := range []uint64{1, 2} {
		for i := range sc.inbox[u] {
			sc.inbox[u][i].Seq = uint64(i + 1)
			switch sc.inbox[u][i].ConvSeq {
			case 2:
				sc.inbox[u][i].Edited = sc.inbox[u][i].Conv == 7
			case 3:
				sc.inbox[u][i].Recalled = sc.inbox[u][i].Conv == 7
			}
		}
	}
	sc.convs[1][0] = ConvState{Conv: 7, Head: 7, ReadSeq: 6, Unread: 1, MentionUnread: 1}
	sc.convs[2][0] = ConvState{Conv: 7, Head: 7, ReadSeq: 7}
	return sc
}

func TestVerifierFeatures(t *testing.T) {
	if vs := newFeatureScenario().verify(t); len(vs) != 0 {
		t.Fatalf("violations in a correct run with recalls, edits and mentions: %v", vs)
	}
	at := func(sc *scenario, u, convSeq uint64) *InboxEntry {
		i := slices.IndexFunc(sc.inbox[u], func(e InboxEntry) bool { return e.Conv == 7 && e.ConvSeq == convSeq })
		return &sc.inbox[u][i]
	}
	tests := []struct {
		name    string
		corrupt func(sc *scenario)
		want    []string
	}{
		{"recall not applied", func(sc *scenario) {
			at(sc, 1, 3).Recalled, at(sc, 2, 3).Recalled = false, false
		}, []string{ViolationAmend}},
		{"members disagree on a recall", func(sc *scenario) {
			at(sc, 2, 3).Recalled = false
		}, []string{ViolationMismatch}},
		{"edit not applied", func(sc *scenario) {
			at(sc, 1, 2).Edited, at(sc, 2, 2).Edited = false, false
		}, []string{ViolationAmend}},
		{"a message recalled that nobody recalled", func(sc *scenario) {
			at(sc, 1, 4).Recalled, at(sc, 2, 4).Recalled = true, true
		}, []string{ViolationAmend}},
		{"a recall stored as an edit", func(sc *scenario) {
			at(sc, 1, 6).Kind, at(sc, 2, 6).Kind = wire.KindEdit, wire.KindEdit
		}, []string{ViolationDevice, ViolationMismatch}},
		{"unread mention not counted", func(sc *scenario) {
			sc.convs[1][0].MentionUnread = 0
		}, []string{ViolationMention}},
		{"a mention counted for the unmentioned", func(sc *scenario) {
			sc.convs[2][0].MentionUnread = 1
		}, []string{ViolationMention}},
	}
	for _, tt := range tests {
		sc := newFeatureScenario()
		devices := map[uint64][]InboxEntry{1: slices.Clone(sc.inbox[1]), 2: slices.Clone(sc.inbox[2])}
		tt.corrupt(sc)
		if got := kinds(sc.verifyDevices(t, devices)); !slices.Equal(got, tt.want) {
			t.Errorf("%s: violations %v, want %v", tt.name, got, tt.want)
		}
	}
}

// TestVerifierDirect: a direct conversation of users 1 and 2 opened by
// user 2's message at conv_seq 1 (no notice), and another never written
// to, which nobody lists; a notice in a direct conversation is unexpected,
// and so is a direct conversation that is not listed once it has messages.
func TestVerifierDirect(t *testing.T) {
	direct := func(sc *scenario) {
		sc.m.AddDirect(20, 1, 2)
		sc.m.AddDirect(21, 1, 2) // never written to
		h := sc.m.NewSend(20, 2, "d1")
		sc.m.Ack(h, 300, 1)
		for _, u := range []uint64{1, 2} {
			sc.inbox[u] = append(sc.inbox[u], InboxEntry{Seq: uint64(len(sc.inbox[u]) + 1), Conv: 20, ConvSeq: 1, MsgID: 300, Kind: wire.KindText, Sender: 2, ClientMsgID: "d1"})
		}
		sc.convs[1] = append(sc.convs[1], ConvState{Conv: 20, Head: 1, Unread: 1})
		sc.convs[2] = append(sc.convs[2], ConvState{Conv: 20, Head: 1, ReadSeq: 1})
	}
	sc := newScenario()
	direct(sc)
	if vs := sc.verify(t); len(vs) != 0 {
		t.Fatalf("violations in a correct run: %v", vs)
	}

	sc = newScenario()
	direct(sc)
	for _, u := range []uint64{1, 2} {
		sc.inbox[u] = append(sc.inbox[u], InboxEntry{Seq: uint64(len(sc.inbox[u]) + 1), Conv: 20, ConvSeq: 2, MsgID: 301, Kind: wire.KindNotice, Sender: 1})
	}
	sc.convs[1][1], sc.convs[2][1] = ConvState{Conv: 20, Head: 2, ReadSeq: 0, Unread: 2}, ConvState{Conv: 20, Head: 2, ReadSeq: 1, Unread: 1}
	sc.convs[2] = slices.DeleteFunc(sc.convs[2], func(c ConvState) bool { return c.Conv == 20 })
	if got := kinds(sc.verify(t)); !slices.Equal(got, []string{ViolationUnexpected, ViolationUnread}) {
		t.Fatalf("violation kinds %v, want unexpected (the notice) and unread (not listed)", got)
	}
}

// TestVerifierStrayGroup: a CREATE_GROUP made again after an answer that
// left its outcome unknown may have created a second group besides the one
// the run uses (Model.MaybeGroup). Its create notice, in each of its
// members' inboxes, is accepted; anything else of it, or of a group the run
// never asked for, is not.
func TestVerifierStrayGroup(t *testing.T) {
	notice := InboxEntry{Conv: 50, ConvSeq: 1, MsgID: 500, Kind: wire.KindNotice, Sender: 1, GroupName: "g"}
	add := func(sc *scenario, u uint64, e InboxEntry) {
		e.Seq = uint64(len(sc.inbox[u]) + 1)
		sc.inbox[u] = append(sc.inbox[u], e)
	}
	tests := []struct {
		name    string
		maybe   []uint64 // the members MaybeGroup records; nil: no call
		corrupt func(sc *scenario)
		want    []string
	}{
		{"in every member's inbox", []uint64{1, 2}, func(sc *scenario) {
			add(sc, 1, notice)
			add(sc, 2, notice)
		}, nil},
		{"never retried", nil, func(sc *scenario) {
			add(sc, 1, notice)
			add(sc, 2, notice)
		}, []string{ViolationUnexpected}},
		{"in a non-member's inbox", []uint64{1}, func(sc *scenario) {
			add(sc, 1, notice)
			add(sc, 2, notice)
		}, []string{ViolationUnexpected}},
		{"missing from a member", []uint64{1, 2}, func(sc *scenario) {
			add(sc, 1, notice)
		}, []string{ViolationMissing}},
		{"twice in an inbox", []uint64{1, 2}, func(sc *scenario) {
			add(sc, 1, notice)
			add(sc, 1, notice)
			add(sc, 2, notice)
		}, []string{ViolationDuplicate}},
		{"a message after its notice", []uint64{1, 2}, func(sc *scenario) {
			add(sc, 1, notice)
			add(sc, 2, notice)
			add(sc, 2, InboxEntry{Conv: 50, ConvSeq: 2, MsgID: 501, Kind: wire.KindText, Sender: 2, ClientMsgID: "x"})
		}, []string{ViolationUnexpected}},
		{"by another user", []uint64{1, 2}, func(sc *scenario) {
			e := notice
			e.Sender = 2
			add(sc, 1, e)
			add(sc, 2, e)
		}, []string{ViolationUnexpected}},
		{"of another name", []uint64{1, 2}, func(sc *scenario) {
			e := notice
			e.GroupName = "h"
			add(sc, 1, e)
			add(sc, 2, e)
		}, []string{ViolationUnexpected}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			sc := newScenario()
			if tc.maybe != nil {
				sc.m.MaybeGroup("g", 1, tc.maybe)
			}
			tc.corrupt(sc)
			if got := kinds(sc.verify(t)); !slices.Equal(got, tc.want) {
				t.Fatalf("violations of kinds %v, want %v", got, tc.want)
			}
		})
	}
}

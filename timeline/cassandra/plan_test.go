package cassandra

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/inboxd/inboxd/timeline"
	"github.com/inboxd/inboxd/wire"
)

// planner returns a store that can plan batches but reaches no cluster, with
// buckets of 4 inbox seqs and 3 conv_seqs.
func planner() *Store {
	s := &Store{q: newQueries("ks"), buckets: bucketCache{max: 1000}}
	s.q.inbox.bucketSize, s.q.messages.bucketSize = 4, 3
	return s
}

// summary describes a plan's writes, phase by phase and chain by chain, as
// "table key/bucket: seqs" for timeline writes and "table args" otherwise.
func summary(p *plan) [3][]string {
	var out [3][]string
	for i, phase := range p.phases {
		for _, c := range phase {
			var ws []string
			for _, w := range c {
				var parts []string
				for _, st := range w {
					table := strings.Fields(strings.SplitN(st.cql, "ks.", 2)[1])[0]
					switch table {
					case "inbox", "messages":
						parts = append(parts, fmt.Sprintf("%s %d/%d:%d", table, st.args[0], st.args[1], st.args[2]))
					default:
						parts = append(parts, fmt.Sprintf("%s %v", table, st.args[:2]))
					}
				}
				ws = append(ws, strings.Join(parts, " "))
			}
			out[i] = append(out[i], strings.Join(ws, " | "))
		}
	}
	return out
}

// TestPlanOrder: entries go bucket by bucket in seq order, a timeline's new
// buckets into its index first, in the phases the package doc names, each
// batch-wide write once.
func TestPlanOrder(t *testing.T) {
	s := planner()
	var b timeline.Batch
	for _, seq := range rand.Perm(6) {
		b.Messages = append(b.Messages, timeline.Message{Conv: 7, ConvSeq: uint64(seq + 1)})
		b.Rows = append(b.Rows, timeline.Row{User: 9, Seq: uint64(seq + 2)})
	}
	b.Markers = []timeline.Marker{{User: 9, Conv: 7, ReadSeq: 1}}
	b.Dedups = []timeline.Dedup{{Sender: 9, ClientMsgID: "a"}}
	want := [3][]string{
		{
			"message_buckets [7 0] message_buckets [7 1] message_buckets [7 2] | " +
				"messages 7/0:1 messages 7/0:2 | messages 7/1:3 messages 7/1:4 messages 7/1:5 | messages 7/2:6",
		},
		{
			"inbox_buckets [9 0] inbox_buckets [9 1] | " +
				"inbox 9/0:2 inbox 9/0:3 | inbox 9/1:4 inbox 9/1:5 inbox 9/1:6 inbox 9/1:7",
			"conversations [1 9]",
		},
		{"dedups [9 [97]]"},
	}
	p := s.plan(&b)
	if got := summary(p); !reflect.DeepEqual(got, want) {
		t.Fatalf("plan:\n got %q\nwant %q", got, want)
	}

	// Once a commit is through, its buckets are known and not written
	// into the index again.
	s.buckets.add(p.buckets)
	for i := range 2 {
		want[i][0] = want[i][0][strings.Index(want[i][0], "| ")+2:]
	}
	if got := summary(s.plan(&b)); !reflect.DeepEqual(got, want) {
		t.Fatalf("plan of the same batch again:\n got %q\nwant %q", got, want)
	}
}

// TestPlanPack: a fan-out's single writes, each partition's alone in its
// chain, go packed into few writes, within the bounds, every statement
// once and each partition's statements in one write; a chain of several
// writes is left as it is.
func TestPlanPack(t *testing.T) {
	const members = 25
	s := planner()
	fanout := func(seq uint64, newcomer uint64) *timeline.Batch {
		b := &timeline.Batch{Messages: []timeline.Message{{Conv: 7, ConvSeq: seq, Body: make([]byte, 100)}},
			Markers: []timeline.Marker{{User: 1, Conv: 7, ReadSeq: seq}},
			Dedups:  []timeline.Dedup{{Sender: 1, ClientMsgID: fmt.Sprint(seq)}}, ClockNode: 1, Clock: seq}
		at := time.UnixMilli(int64(1e12 + seq))
		for u := uint64(1); u <= members; u++ {
			b.Rows = append(b.Rows, timeline.Row{User: u, Seq: seq, Conv: 7, ConvSeq: seq})
			b.Activities = append(b.Activities, timeline.Activity{User: u, Conv: 7, At: at, Prev: at.Add(-time.Second)})
		}
		if newcomer != 0 {
			b.Rows = append(b.Rows, timeline.Row{User: newcomer, Seq: 1, Conv: 7, ConvSeq: seq})
		}
		return b
	}
	s.buckets.add(s.plan(fanout(1, 0)).buckets)
	p := s.plan(fanout(2, 99)) // the newcomer's bucket is new to the store
	// Phase 2: the rows, the newcomer's index row and row, the moves, the
	// marker, the clock.
	const statements = members + 2 + 2*members + 1 + 1
	if n := len(p.phases[1]); n > (statements+packStatements-1)/packStatements+2 {
		t.Errorf("phase 2 in %d chains, want the %d statements packed in tens", n, statements)
	}
	seen := 0
	for i, phase := range p.phases {
		for _, c := range phase {
			if i == 1 && len(c) == 2 {
				if len(c[0]) != 1 || len(c[1]) != 1 || c[1][0].args[0] != uint64(99) {
					t.Errorf("the newcomer's chain: %v", c)
				}
				seen += 2
				continue
			}
			if len(c) != 1 {
				t.Fatalf("phase %d: a chain of %d writes", i+1, len(c))
			}
			w := c[0]
			if len(w) > packStatements || w.size() > packBytes {
				t.Errorf("phase %d: a write of %d statements, about %d bytes", i+1, len(w), w.size())
			}
			moves := make(map[any]int) // user: deletes minus inserts of the activity index
			for _, st := range w {
				switch {
				case st.cql == s.q.deleteActivity:
					moves[st.args[0]]++
				case st.cql == s.q.insertActivity:
					moves[st.args[0]]--
				}
			}
			for u, n := range moves {
				if n != 0 {
					t.Errorf("phase %d: user %v's move split across writes", i+1, u)
				}
			}
			seen += len(w)
		}
	}
	if want := 1 + statements + 1; seen != want { // the message, phase 2, the dedup record
		t.Errorf("%d statements planned, want %d", seen, want)
	}
}

// TestPlanSplit: a partition's rows beyond maxWriteBytes go in more writes,
// in seq order, in one chain.
func TestPlanSplit(t *testing.T) {
	s := planner()
	s.q.messages.bucketSize = 1000
	var b timeline.Batch
	for seq := range uint64(10) {
		b.Messages = append(b.Messages, timeline.Message{Conv: 1, ConvSeq: seq, Body: make([]byte, maxWriteBytes/4)})
	}
	p := s.plan(&b)
	if len(p.phases[0]) != 1 {
		t.Fatalf("%d chains, want 1", len(p.phases[0]))
	}
	var seqs []any
	for i, w := range p.phases[0][0][1:] {
		if len(w) > 3 || i < 3 && len(w) != 3 {
			t.Errorf("write %d holds %d messages of a quarter of maxWriteBytes", i, len(w))
		}
		for _, st := range w {
			seqs = append(seqs, st.args[2])
		}
	}
	if want := []any{uint64(0), uint64(1), uint64(2), uint64(3), uint64(4), uint64(5), uint64(6), uint64(7), uint64(8), uint64(9)}; !reflect.DeepEqual(seqs, want) {
		t.Fatalf("messages written in order %v", seqs)
	}
}

// TestPlanLastWins: of two writes of one key in a batch only the last is
// planned, since they would share a timestamp; removals all stay.
func TestPlanLastWins(t *testing.T) {
	s := planner()
	b := timeline.Batch{
		Members: []timeline.Member{
			{Conv: 1, User: 2, Role: wire.RoleAdmin},
			{Conv: 1, User: 3, Role: wire.RoleMember},
			{Conv: 1, User: 2, Role: wire.RoleMember},
		},
		RemoveMembers: []timeline.MemberKey{{Conv: 1, User: 3}},
		Markers:       []timeline.Marker{{User: 5, Conv: 1, ReadSeq: 3}, {User: 5, Conv: 1, ReadSeq: 4}},
	}
	var got []string
	for _, phase := range s.plan(&b).phases {
		for _, c := range phase {
			for _, w := range c {
				for _, st := range w {
					got = append(got, fmt.Sprint(st.args[:min(3, len(st.args))]))
				}
			}
		}
	}
	want := []string{"[1 3 1]", "[1 2 1]", "[1 3]", "[4 5 1]"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("planned %q, want %q", got, want)
	}
}

// TestPlanBindsNoNull: every value bound is non-nil, so that no write stores
// a null, which Cassandra keeps as a tombstone.
func TestPlanBindsNoNull(t *testing.T) {
	b := timeline.Batch{
		Messages:      []timeline.Message{{Conv: 1, ConvSeq: 1, Kind: wire.KindNotice}},
		Rows:          []timeline.Row{{User: 1, Seq: 1, Kind: wire.KindRead}},
		Groups:        []timeline.Group{{ID: 1}},
		Members:       []timeline.Member{{Conv: 1, User: 1}},
		RemoveMembers: []timeline.MemberKey{{Conv: 1, User: 2}},
		Conversations: []timeline.Conversation{{User: 1, Conv: 1}},
		Markers:       []timeline.Marker{{User: 1, Conv: 1}},
		Dedups:        []timeline.Dedup{{Sender: 1}},
		ClockNode:     1,
		Clock:         1,
	}
	for _, phase := range planner().plan(&b).phases {
		for _, c := range phase {
			for _, w := range c {
				for _, st := range w {
					for i, arg := range st.args {
						if bs, ok := arg.([]byte); arg == nil || ok && bs == nil {
							t.Errorf("%s: value %d is nil", st.cql, i)
						}
						if _, ok := arg.(time.Time); ok {
							t.Errorf("%s: value %d is a time.Time, which the driver sends as null when zero", st.cql, i)
						}
					}
				}
			}
		}
	}
}

package cassandratest

import (
	"fmt"
	"time"

	"github.com/inboxd/inboxd/timeline"
	"github.com/inboxd/inboxd/wire"
)

// Fanout builds batches shaped like the inbox's group commits of sends to
// one group by its first member, for the benchmarks that compare the store
// with raw driver writes: per message, the message (a 100-byte body), a row
// in every member's inbox, the sender's read marker and dedup record; per
// batch, the snowflake clock and the move of every member's activity index
// entry.
type Fanout struct {
	conv    uint64
	users   []uint64
	seqs    map[uint64]uint64
	convSeq uint64
	active  time.Time // where the members' activity entries stand
}

// NewFanout returns the traffic of a group of members users whose ids, and
// the group's, start at base: callers sharing a keyspace pass bases far
// apart.
func NewFanout(base uint64, members int) *Fanout {
	f := &Fanout{conv: base, seqs: make(map[uint64]uint64)}
	for i := range uint64(members) {
		f.users = append(f.users, base+1+i)
	}
	return f
}

// Members returns the number of members, the inbox rows of each message.
func (f *Fanout) Members() int { return len(f.users) }

// Next resets b to the batch of the next messages sends.
func (f *Fanout) Next(b *timeline.Batch, messages int) {
	b.Reset()
	f.Add(b, messages)
}

// Add appends the next messages sends to b, beside what b holds: the sends
// of several groups' Fanouts in one batch, as a group commit holds sends to
// several groups. The clock is the last group's.
func (f *Fanout) Add(b *timeline.Batch, messages int) {
	now := time.Now().Truncate(time.Millisecond)
	if !now.After(f.active) {
		now = f.active.Add(time.Millisecond)
	}
	for range messages {
		f.convSeq++
		sender := f.users[0]
		m := timeline.Message{Conv: f.conv, ConvSeq: f.convSeq, ID: f.conv<<8 + f.convSeq, Sender: sender,
			ClientMsgID: fmt.Sprintf("bench-%d", f.convSeq), Kind: wire.KindText,
			Body: fmt.Appendf(nil, "%-100d", f.convSeq), Time: now}
		b.Messages = append(b.Messages, m)
		for _, u := range f.users {
			f.seqs[u]++
			b.Rows = append(b.Rows, timeline.Row{User: u, Seq: f.seqs[u], Conv: f.conv, ConvSeq: m.ConvSeq, MsgID: m.ID, Kind: m.Kind})
		}
		b.Markers = append(b.Markers, timeline.Marker{User: sender, Conv: f.conv, ReadSeq: m.ConvSeq})
		b.Dedups = append(b.Dedups, timeline.Dedup{Sender: sender, ClientMsgID: m.ClientMsgID, Conv: f.conv,
			ConvSeq: m.ConvSeq, MsgID: m.ID, Time: now})
	}
	for _, u := range f.users {
		b.Activities = append(b.Activities, timeline.Activity{User: u, Conv: f.conv, At: now, Prev: f.active})
	}
	f.active = now
	b.ClockNode, b.Clock = 1, f.conv<<8+f.convSeq
}

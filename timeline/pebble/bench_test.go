package pebble_test

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/inboxd/inboxd/timeline"
	"github.com/inboxd/inboxd/timeline/pebble"
	"github.com/inboxd/inboxd/wire"
)

// fanoutBatch is the batch a group commit writes for messages sends, each to
// a group of its own with members users: per message one message, one dedup
// record and the sender's read marker, and one inbox row per member.
func fanoutBatch(messages, members int) *timeline.Batch {
	b := new(timeline.Batch)
	body := make([]byte, 100)
	for m := range uint64(messages) {
		conv := 1 + m
		sender := m * uint64(members)
		b.Messages = append(b.Messages, timeline.Message{
			Conv: conv, ConvSeq: 1, ID: 1<<40 + m, Sender: sender, ClientMsgID: fmt.Sprintf("c%d", m),
			Kind: wire.KindText, Body: body, Time: time.UnixMilli(1748779200000),
		})
		b.Dedups = append(b.Dedups, timeline.Dedup{Sender: sender, ClientMsgID: fmt.Sprintf("c%d", m), Conv: conv, ConvSeq: 1, MsgID: 1<<40 + m})
		b.Markers = append(b.Markers, timeline.Marker{User: sender, Conv: conv, ReadSeq: 1})
		for u := range uint64(members) {
			b.Rows = append(b.Rows, timeline.Row{User: sender + u, Seq: 1, Conv: conv, ConvSeq: 1, MsgID: 1<<40 + m, Kind: wire.KindText})
		}
	}
	return b
}

// next turns b into the following send of the same messages: every seq one
// higher. (The dedup keys stay: overwriting costs what inserting does.)
func next(b *timeline.Batch) {
	for i := range b.Messages {
		b.Messages[i].ConvSeq++
		b.Messages[i].ID += 1 << 20
		b.Dedups[i].ConvSeq++
		b.Markers[i].ReadSeq++
	}
	for i := range b.Rows {
		b.Rows[i].Seq++
		b.Rows[i].ConvSeq++
	}
}

// BenchmarkCommit commits fan-out batches to the OS filesystem with fsync
// on, as inboxd runs, and reports inbox rows committed per second.
//
//	go test -run '^$' -bench BenchmarkCommit -benchtime 5s ./timeline/pebble
func BenchmarkCommit(b *testing.B) {
	for _, shape := range []struct {
		messages, members, writers int
		// pipelined applies each batch before waiting for the previous
		// one's sync, as a pipelined committer would.
		pipelined bool
	}{
		{1, 100, 1, false},  // one send, committed alone
		{1, 100, 1, true},   // the same, pipelined
		{50, 100, 1, false}, // a group commit of 50 sends: 5000 rows
		{50, 100, 1, true},  // the same, pipelined
		{50, 100, 4, false}, // four such writers at once, sharing fsyncs
	} {
		name := fmt.Sprintf("%dx%d/writers=%d", shape.messages, shape.members, shape.writers)
		if shape.pipelined {
			name += "/pipelined"
		}
		b.Run(name, func(b *testing.B) {
			s := open(b, pebble.Options{Dir: b.TempDir()})
			batches := make([]*timeline.Batch, shape.writers)
			for w := range batches {
				batches[w] = fanoutBatch(shape.messages, shape.members)
				for i := range batches[w].Rows { // writers own disjoint users
					batches[w].Rows[i].User += uint64(w) << 32
				}
			}
			rows := len(batches[0].Rows)
			b.ReportAllocs()
			b.ResetTimer()
			var wg sync.WaitGroup
			for w, batch := range batches {
				wg.Go(func() {
					var prev timeline.Pending
					for i := w; i < b.N; i += shape.writers {
						next(batch)
						p, err := s.Apply(b.Context(), batch)
						switch {
						case shape.pipelined && prev != nil:
							err = errors.Join(err, prev.Wait())
						case !shape.pipelined && err == nil:
							err = p.Wait()
							p = nil
						}
						if err != nil {
							if p != nil {
								_ = p.Wait() // err is reported already
							}
							b.Error(err)
							return
						}
						prev = p
					}
					if prev != nil {
						if err := prev.Wait(); err != nil {
							b.Error(err)
						}
					}
				})
			}
			wg.Wait()
			b.ReportMetric(float64(rows*b.N)/b.Elapsed().Seconds(), "rows/s")
		})
	}
}

// BenchmarkMessagesByKey reads inbox pages the way SYNC does: 200 messages
// named by the rows of a user in 5 busy conversations, interleaved.
//
//	go test -run '^$' -bench BenchmarkMessagesByKey ./timeline/pebble
func BenchmarkMessagesByKey(b *testing.B) {
	s, err := pebble.Open(pebble.Options{Dir: b.TempDir(), NoSync: true})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	const convs, perConv, page = 5, 2000, 200
	body := make([]byte, 100)
	for seq := uint64(1); seq <= perConv; seq += 100 {
		batch := new(timeline.Batch)
		for c := range uint64(convs) {
			for k := range uint64(100) {
				batch.Messages = append(batch.Messages, timeline.Message{Conv: 1 + c, ConvSeq: seq + k, ID: 1 << 40,
					Sender: 9, ClientMsgID: "c", Kind: wire.KindText, Body: body, Time: time.UnixMilli(1748779200000)})
			}
		}
		if err := s.Commit(b.Context(), batch); err != nil {
			b.Fatal(err)
		}
	}
	var keys []timeline.MessageKey // the rows of one page, round robin over the conversations
	for k := range uint64(page / convs) {
		for c := range uint64(convs) {
			keys = append(keys, timeline.MessageKey{Conv: 1 + c, ConvSeq: 1000 + k})
		}
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.MessagesByKey(b.Context(), keys, 0); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(keys)), "ns/message")
}

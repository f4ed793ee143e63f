package pebble_test

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/inboxd/inboxd/timeline"
	"github.com/inboxd/inboxd/timeline/pebble"
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
			Kind: timeline.KindText, Body: body, Time: time.UnixMilli(1748779200000),
		})
		b.Dedups = append(b.Dedups, timeline.Dedup{Sender: sender, ClientMsgID: fmt.Sprintf("c%d", m), Conv: conv, ConvSeq: 1, MsgID: 1<<40 + m})
		b.Markers = append(b.Markers, timeline.Marker{User: sender, Conv: conv, ReadSeq: 1})
		for u := range uint64(members) {
			b.Rows = append(b.Rows, timeline.Row{User: sender + u, Seq: 1, Conv: conv, ConvSeq: 1, MsgID: 1<<40 + m, Kind: timeline.KindText})
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
	for _, shape := range []struct{ messages, members, writers int }{
		{1, 100, 1},  // one send, committed alone
		{50, 100, 1}, // a group commit of 50 sends: 5000 rows
		{50, 100, 4}, // four such writers at once, sharing fsyncs
	} {
		b.Run(fmt.Sprintf("%dx%d/writers=%d", shape.messages, shape.members, shape.writers), func(b *testing.B) {
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
					for i := w; i < b.N; i += shape.writers {
						next(batch)
						if err := s.Commit(b.Context(), batch); err != nil {
							b.Error(err)
							return
						}
					}
				})
			}
			wg.Wait()
			b.ReportMetric(float64(rows*b.N)/b.Elapsed().Seconds(), "rows/s")
		})
	}
}

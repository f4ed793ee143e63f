package inbox

import (
	"testing"

	"github.com/inboxd/inboxd/wire"
)

// BenchmarkReadReceipts500: READ_RECEIPTS of a message in a group of 500
// (the default maximum), half of whose members have read it, against a
// baseline in the same run: the store reading the same members and their
// read markers one after another, with nothing else (what any pull of
// receipts from the markers has to read). docs/benchmarks.md has the
// figures.
//
//	go test -run '^$' -bench ReadReceipts500 -benchtime 2000x ./inbox
func BenchmarkReadReceipts500(b *testing.B) {
	svc, st := benchService(b)
	members := make([]uint64, wire.DefaultMaxGroupSize-1)
	for i := range members {
		members[i] = uint64(i + 2)
	}
	conv := benchGroup(b, svc, 1, members...)
	m, err := svc.SendGroupMessage(ctx, 1, conv, "m", wire.KindText, []byte("read me"))
	if err != nil {
		b.Fatal(err)
	}
	for _, u := range members[:len(members)/2] {
		if _, err := svc.MarkRead(ctx, u, conv, m.ConvSeq); err != nil {
			b.Fatal(err)
		}
	}
	q := ReceiptsQuery{Conv: conv, ConvSeq: m.ConvSeq}
	b.Run("ReadReceipts", func(b *testing.B) {
		var r Receipts
		for b.Loop() {
			if r, err = svc.ReadReceipts(ctx, 1, q); err != nil {
				b.Fatal(err)
			}
		}
		if r.Members != len(members) || r.Read != len(members)/2 {
			b.Fatalf("read by %d of %d", r.Read, r.Members)
		}
		b.ReportMetric(float64(r.Members), "markers/op")
	})
	b.Run("Baseline", func(b *testing.B) {
		for b.Loop() {
			ms, err := st.Members(ctx, conv)
			if err != nil {
				b.Fatal(err)
			}
			read := 0
			for _, mb := range ms {
				c, err := st.Conversation(ctx, mb.User, conv)
				if err != nil {
					b.Fatal(err)
				}
				if c.ReadSeq >= m.ConvSeq {
					read++
				}
			}
			if read != len(members)/2+1 { // the sender's marker too
				b.Fatalf("read by %d", read)
			}
		}
		b.ReportMetric(float64(len(members)+1), "markers/op")
	})
}

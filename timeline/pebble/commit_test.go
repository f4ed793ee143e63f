package pebble

import (
	"bytes"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/inboxd/inboxd/timeline"
	"github.com/inboxd/inboxd/wire"
)

// TestFillOrder checks the order fill writes a group commit's rows and
// activity index moves in: rows by key, moves by user, and two writes of one
// key in the batch's order, so that the later still wins.
func TestFillOrder(t *testing.T) {
	db, err := pebble.Open("db", &pebble.Options{FS: vfs.NewMem()})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	at := time.UnixMilli(1748779200000)
	b := &timeline.Batch{
		// Three sends, each to its members in ascending order, as a commit
		// builds them; the last row rewrites the first.
		Rows: []timeline.Row{
			{User: 1, Seq: 7, Conv: 9, ConvSeq: 1, Kind: wire.KindText},
			{User: 2, Seq: 3, Conv: 9, ConvSeq: 1, Kind: wire.KindText},
			{User: 1, Seq: 8, Conv: 9, ConvSeq: 2, Kind: wire.KindText},
			{User: 2, Seq: 4, Conv: 9, ConvSeq: 2, Kind: wire.KindText},
			{User: 0, Seq: 5, Conv: 8, ConvSeq: 1, Kind: wire.KindText},
			{User: 1, Seq: 7, Conv: 9, ConvSeq: 3, Kind: wire.KindText},
		},
		Activities: []timeline.Activity{
			{User: 2, Conv: 9, At: at, Prev: at.Add(-time.Second)},
			{User: 1, Conv: 9, At: at, Prev: at.Add(-time.Second)},
			{User: 2, Conv: 8, At: at},
		},
	}
	pb := db.NewBatch()
	defer pb.Close()
	var scratch []sortKey
	if err := fill(pb, b, nil, &scratch); err != nil {
		t.Fatal(err)
	}
	type write struct {
		kind string
		key  []byte
		seq  uint64 // a row's ConvSeq
	}
	var got []write
	for r := pb.Reader(); ; {
		kind, key, val, ok, err := r.Next()
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			break
		}
		w := write{kind: kind.String(), key: bytes.Clone(key)}
		if key[0] == prefixInbox {
			var row timeline.Row
			if err := decodeRowValue(val, &row); err != nil {
				t.Fatal(err)
			}
			w.seq = row.ConvSeq
		}
		got = append(got, w)
	}
	row := func(user, seq, convSeq uint64) write {
		return write{"SET", appendKey(nil, prefixInbox, user, seq), convSeq}
	}
	act := func(kind string, user uint64, at time.Time, conv uint64) write {
		return write{kind, appendActivityKey(nil, user, at, conv), 0}
	}
	want := []write{
		row(0, 5, 1), row(1, 7, 1), row(1, 7, 3), row(1, 8, 2), row(2, 3, 1), row(2, 4, 2),
		act("DEL", 1, at.Add(-time.Second), 9), act("SET", 1, at, 9),
		act("SET", 2, at, 8),
		act("DEL", 2, at.Add(-time.Second), 9), act("SET", 2, at, 9),
	}
	if len(got) != len(want) {
		t.Fatalf("%d writes, want %d: %v", len(got), len(want), got)
	}
	for i := range want {
		if got[i].kind != want[i].kind || !bytes.Equal(got[i].key, want[i].key) || got[i].seq != want[i].seq {
			t.Errorf("write %d: %s %x (conv_seq %d), want %s %x (conv_seq %d)", i,
				got[i].kind, got[i].key, got[i].seq, want[i].kind, want[i].key, want[i].seq)
		}
	}
}

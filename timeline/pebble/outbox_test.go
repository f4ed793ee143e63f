package pebble

import (
	"encoding/binary"
	"slices"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/inboxd/inboxd/timeline"
)

// TestOutboxLowDrops: a low-water mark drops its source's records above the
// mark stored before, up to it, one point deletion each; only a step past
// maxPointDrops or a drop of the whole outbox is a range deletion. (A range
// deletion from 0 at every mark piled up in the memtable, where every new
// read iterator fragmented them all again.)
func TestOutboxLowDrops(t *testing.T) {
	db, err := pebble.Open("", &pebble.Options{FS: vfs.NewMem()})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	const src = 3
	long := uint64(5 + maxPointDrops + 1)
	tests := []struct {
		name      string
		stored    uint64 // the mark stored before; none if 0
		lows      []uint64
		dropped   []uint64 // seqs deleted one by one
		rangeDels int
	}{
		{"first mark", 0, []uint64{2}, []uint64{0, 1, 2}, 0},
		{"a step", 5, []uint64{7}, []uint64{6, 7}, 0},
		{"two marks in a batch", 5, []uint64{6, 8}, []uint64{6, 7, 8}, 0},
		{"no step", 5, []uint64{5}, nil, 0},
		{"a long step", 5, []uint64{long}, nil, 1},
		{"the whole outbox", 5, []uint64{^uint64(0)}, nil, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := &timeline.Batch{}
			for _, l := range tt.lows {
				b.OutboxLows = append(b.OutboxLows, timeline.OutboxLow{Source: src, Seq: l})
			}
			pb := db.NewBatch()
			defer pb.Close()
			w := &batchWriter{pb: pb}
			fillOutbox(w, b, func(source int) (uint64, bool, error) {
				if source != src {
					t.Errorf("the stored mark of source %d asked", source)
				}
				return tt.stored, tt.stored != 0, nil
			})
			if w.err != nil {
				t.Fatal(w.err)
			}
			var dropped []uint64
			rangeDels, marks := 0, 0
			for r := pb.Reader(); ; {
				kind, key, _, ok, err := r.Next()
				if err != nil {
					t.Fatal(err)
				}
				if !ok {
					break
				}
				switch {
				case kind == pebble.InternalKeyKindRangeDelete:
					rangeDels++
				case kind == pebble.InternalKeyKindDelete && key[0] == prefixOutbox:
					dropped = append(dropped, binary.BigEndian.Uint64(key[len(key)-8:]))
				case kind == pebble.InternalKeyKindSet && key[0] == prefixOutboxLow:
					marks++
				}
			}
			if !slices.Equal(dropped, tt.dropped) || rangeDels != tt.rangeDels || marks != len(tt.lows) {
				t.Errorf("dropped %v, %d range deletions, %d marks; want %v, %d, %d", dropped, rangeDels, marks, tt.dropped, tt.rangeDels, len(tt.lows))
			}
		})
	}
}

package cassandra

import (
	"errors"
	"slices"
	"testing"

	"github.com/inboxd/inboxd/cluster"
	"github.com/inboxd/inboxd/timeline"
)

// scriptedFence hands out 1, 2, 3, … and calls after, if set, after each
// timestamp, with the shard it was for.
type scriptedFence struct {
	last    int64
	stopped map[int]bool
	asked   []int
	after   func(f *scriptedFence, shard int)
}

var errStopped = errors.New("shard not served")

func (f *scriptedFence) Timestamp(shard int) (int64, error) {
	f.asked = append(f.asked, shard)
	if f.stopped[shard] {
		return 0, errStopped
	}
	f.last++
	if f.after != nil {
		f.after(f, shard)
	}
	return f.last, nil
}

func (f *scriptedFence) LogTimestamp() (int64, error) {
	f.last++
	return f.last, nil
}

func (*scriptedFence) ShardCount() int { return cluster.DefaultShards }

func TestShardsOf(t *testing.T) {
	const n = cluster.DefaultShards
	user, conv := uint64(11), uint64(22)
	b := &timeline.Batch{
		Messages:   []timeline.Message{{Conv: conv}},
		Rows:       []timeline.Row{{User: user}, {User: user}},
		Dedups:     []timeline.Dedup{{Sender: user, Conv: conv}}, // the conversation's
		Outbox:     []timeline.OutboxRecord{{Source: 3}},
		OutboxLows: []timeline.OutboxLow{{Source: 4}},
		Applied:    []timeline.AppliedMark{{Source: 5, Dest: 6}},
		ClockNode:  1, Clock: 9,
	}
	want := []int{cluster.ShardOf(user, n), cluster.ShardOf(conv, n), 3, 4, 6}
	slices.Sort(want)
	if got := shardsOf(b, n); !slices.Equal(got, want) {
		t.Errorf("shardsOf = %v, want %v", got, want)
	}
	if got := shardsOf(&timeline.Batch{ClockNode: 1, Clock: 9}, n); len(got) != 0 {
		t.Errorf("shardsOf(clock only) = %v, want none", got)
	}
}

// TestFencedTimestamp checks the batch's timestamp is the last one handed
// out, and that a shard whose handover began while the batch took its
// timestamps fails the batch: its next owner's floor may be below it.
func TestFencedTimestamp(t *testing.T) {
	tests := []struct {
		name    string
		shards  []int
		after   func(f *scriptedFence, shard int)
		want    int64
		wantErr bool
	}{
		{name: "one", shards: []int{7}, want: 1},
		{name: "several", shards: []int{1, 2, 3}, want: 3},
		{name: "none", want: 1},
		{
			name:   "handed over meanwhile",
			shards: []int{1, 2},
			after: func(f *scriptedFence, shard int) {
				if shard == 2 {
					f.stopped = map[int]bool{1: true}
				}
			},
			wantErr: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &scriptedFence{after: tt.after}
			s := &Store{cfg: Config{Fence: f}}
			got, err := s.fencedTimestamp(tt.shards)
			if tt.wantErr {
				if !errors.Is(err, ErrFenced) || !errors.Is(err, errStopped) {
					t.Fatalf("fencedTimestamp = %d, %v; want ErrFenced wrapping the fence's error", got, err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("fencedTimestamp = %d, %v; want %d", got, err, tt.want)
			}
			for _, shard := range tt.shards {
				if !slices.Contains(f.asked, shard) {
					t.Errorf("shard %d not asked", shard)
				}
			}
		})
	}
}

// countingFence serves every shard, with timestamps 1, 2, 3, …
type countingFence struct{ last int64 }

func (f *countingFence) Timestamp(int) (int64, error) { f.last++; return f.last, nil }
func (f *countingFence) LogTimestamp() (int64, error) { f.last++; return f.last, nil }
func (*countingFence) ShardCount() int                { return cluster.DefaultShards }

// BenchmarkBatchTimestamp measures what cluster mode adds to a commit of 64
// messages to 100 members: finding the batch's shards and their timestamps.
func BenchmarkBatchTimestamp(b *testing.B) {
	batch := &timeline.Batch{}
	for m := range uint64(64) {
		batch.Messages = append(batch.Messages, timeline.Message{Conv: 1, ConvSeq: m + 1})
		for u := range uint64(100) {
			batch.Rows = append(batch.Rows, timeline.Row{User: 1000 + u, Seq: m + 1})
		}
	}
	s := &Store{cfg: Config{Fence: &countingFence{}}}
	for b.Loop() {
		if _, err := s.batchTimestamp(batch); err != nil {
			b.Fatal(err)
		}
	}
}

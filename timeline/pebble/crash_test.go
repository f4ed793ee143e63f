package pebble_test

import (
	"math/rand/v2"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/inboxd/inboxd/timeline"
	"github.com/inboxd/inboxd/timeline/pebble"
	"github.com/inboxd/inboxd/wire"
)

// crashConv is the conversation every crash-test batch writes a message to.
const crashConv = 1 << 40

// crashUsers is how many users batch n writes a row to, at most
// maxCrashUsers: it varies so that batches straddle the write-ahead log's
// block boundaries in every way.
func crashUsers(n uint64) uint64 { return 1 + n*37%maxCrashUsers }

const maxCrashUsers = 100

// crashBatch is batch number n: a message at conv_seq n and rows at seq n in
// the inboxes of users 1..crashUsers(n), all carrying n as their msg id.
func crashBatch(n uint64) *timeline.Batch {
	b := &timeline.Batch{Messages: []timeline.Message{{
		Conv: crashConv, ConvSeq: n, ID: n, Kind: wire.KindText,
		Body: make([]byte, n*101%2000), Time: time.UnixMilli(int64(n)),
	}}}
	for u := range crashUsers(n) {
		b.Rows = append(b.Rows, timeline.Row{User: u + 1, Seq: n, Conv: crashConv, ConvSeq: n, MsgID: n, Kind: wire.KindText})
	}
	return b
}

// TestCrash commits numbered batches in a goroutine and meanwhile takes crash
// images of the filesystem: every synced byte, and a random share of the
// unsynced ones. Reopened, each image must hold every batch whose Commit had
// returned before the image was taken, and every batch whole or not at all.
func TestCrash(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 1))
	const batches = 1000
	images := 20
	if testing.Short() {
		images = 5
	}

	fs := vfs.NewCrashableMem()
	s := open(t, pebble.Options{Dir: "db", FS: fs})
	var acked atomic.Uint64 // the highest batch whose Commit returned nil
	done := make(chan error, 1)
	go func() {
		for n := uint64(1); n <= batches; n++ {
			if err := s.Commit(t.Context(), crashBatch(n)); err != nil {
				done <- err
				return
			}
			acked.Store(n)
		}
		done <- nil
	}()

	// Images are taken at random points of the run, not of the clock, so
	// that they spread over it however fast the machine commits.
	points := make([]uint64, images)
	for i := range points {
		points[i] = rng.Uint64N(batches)
	}
	slices.Sort(points)
	type image struct {
		fs    vfs.FS
		acked uint64
	}
	var taken []image
	for i, p := range points {
		for acked.Load() < p {
			time.Sleep(50 * time.Microsecond)
		}
		before := acked.Load()
		clone := fs.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: []int{0, 10, 50, 90, 100}[i%5], RNG: rng})
		taken = append(taken, image{clone, before})
	}
	if err := <-done; err != nil {
		t.Fatalf("Commit: %v", err)
	}
	for _, img := range taken {
		checkCrashImage(t, img.fs, img.acked)
	}
}

// checkCrashImage opens a crash image and checks its batches against acked,
// the highest batch acknowledged before the image was taken.
func checkCrashImage(t *testing.T, image vfs.FS, acked uint64) {
	t.Helper()
	s, err := pebble.Open(pebble.Options{Dir: "db", FS: image})
	if err != nil {
		t.Fatalf("reopening a crash image: %v", err)
	}
	defer s.Close()

	// found[n] counts the records of batch n in the image.
	found := map[uint64]uint64{}
	msgs, err := s.Messages(t.Context(), crashConv, timeline.Range{})
	if err != nil {
		t.Fatal(err)
	}
	last := uint64(0)
	for _, m := range msgs {
		found[m.ConvSeq]++
		last = max(last, m.ConvSeq)
	}
	for u := range uint64(maxCrashUsers) {
		rows, err := s.Inbox(t.Context(), u+1, timeline.Range{})
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rows {
			if r.MsgID != r.Seq {
				t.Fatalf("row %+v does not belong to batch %d", r, r.Seq)
			}
			found[r.Seq]++
			last = max(last, r.Seq)
		}
	}
	for n := uint64(1); n <= max(last, acked); n++ {
		want := crashUsers(n) + 1
		switch got := found[n]; {
		case got != 0 && got != want:
			t.Fatalf("batch %d is partly present: %d of its %d records (acked %d)", n, got, want, acked)
		case got == 0 && n <= acked:
			t.Fatalf("batch %d was acknowledged but is lost (acked %d, image holds up to %d)", n, acked, last)
		case got == 0:
			// The log is replayed as a prefix: a batch lost after an
			// unacknowledged one would be a gap.
			t.Fatalf("batch %d is lost but batch %d is present (acked %d)", n, last, acked)
		}
	}
}

package pebble_test

import (
	"context"
	"errors"
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
// unsynced ones. Reopened, each image must hold every batch acknowledged
// before the image was taken, and every batch whole or not at all. Batches
// are committed one at a time, or pipelined: batch n is applied before the
// sync of batch n-1 is waited for, and n-1 acknowledged after.
func TestCrash(t *testing.T) {
	for _, mode := range []struct {
		name   string
		commit func(ctx context.Context, s *pebble.Store, batches uint64, acked *atomic.Uint64) error
	}{
		{"serial", commitSerial},
		{"pipelined", commitPipelined},
	} {
		t.Run(mode.name, func(t *testing.T) {
			testCrash(t, func(s *pebble.Store, acked *atomic.Uint64) error {
				return mode.commit(t.Context(), s, crashBatches, acked)
			})
		})
	}
}

const crashBatches = 1000

func commitSerial(ctx context.Context, s *pebble.Store, batches uint64, acked *atomic.Uint64) error {
	for n := uint64(1); n <= batches; n++ {
		if err := s.Commit(ctx, crashBatch(n)); err != nil {
			return err
		}
		acked.Store(n)
	}
	return nil
}

func commitPipelined(ctx context.Context, s *pebble.Store, batches uint64, acked *atomic.Uint64) error {
	var prev timeline.Pending
	for n := uint64(1); n <= batches; n++ {
		p, err := s.Apply(ctx, crashBatch(n))
		if prev != nil {
			if werr := prev.Wait(); werr != nil {
				return errors.Join(werr, err)
			}
			acked.Store(n - 1)
		}
		if err != nil {
			return err
		}
		prev = p
	}
	if err := prev.Wait(); err != nil {
		return err
	}
	acked.Store(batches)
	return nil
}

func testCrash(t *testing.T, commit func(s *pebble.Store, acked *atomic.Uint64) error) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 1))
	images := 20
	if testing.Short() {
		images = 5
	}

	fs := vfs.NewCrashableMem()
	s := open(t, pebble.Options{Dir: "db", FS: fs})
	var acked atomic.Uint64 // the highest batch whose Commit returned nil
	done := make(chan error, 1)
	go func() { done <- commit(s, &acked) }()

	// Images are taken at random points of the run, not of the clock, so
	// that they spread over it however fast the machine commits.
	points := make([]uint64, images)
	for i := range points {
		points[i] = rng.Uint64N(crashBatches)
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

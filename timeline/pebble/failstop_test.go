package pebble_test

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"

	"github.com/inboxd/inboxd/timeline"
	"github.com/inboxd/inboxd/timeline/pebble"
	"github.com/inboxd/inboxd/wire"
)

// TestFailedSyncStopsTheStore fails the write-ahead log sync of a batch.
// Pebble keeps the batch in its memtable, readable, though a restart takes
// it back: a writer reloading its heads after the error, or a reader, would
// build on or show what is not durable. The store must refuse every call
// from then on, until it is reopened.
func TestFailedSyncStopsTheStore(t *testing.T) {
	ctx := context.Background()
	var failing atomic.Bool
	fs := errorfs.Wrap(vfs.NewMem(), errorfs.InjectorFunc(func(op errorfs.Op) error {
		switch op.Kind {
		case errorfs.OpFileSync, errorfs.OpFileSyncData, errorfs.OpFileSyncTo:
			if failing.Load() && strings.HasSuffix(op.Path, ".log") {
				return errorfs.ErrInjected
			}
		}
		return nil
	}))
	st, err := pebble.Open(pebble.Options{Dir: "db", FS: fs})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	row := func(seq uint64) *timeline.Batch {
		return &timeline.Batch{Rows: []timeline.Row{{User: 1, Seq: seq, Conv: 2, ConvSeq: seq, MsgID: 10 + seq, Kind: wire.KindText}}}
	}
	if err := st.Commit(ctx, row(1)); err != nil {
		t.Fatal(err)
	}
	failing.Store(true)
	if err := st.Commit(ctx, row(2)); err == nil {
		t.Fatal("a commit whose sync failed succeeded")
	}
	if last, err := st.LastInboxSeq(ctx, 1); err == nil {
		t.Fatalf("after a failed sync the store answers reads: newest seq %d", last)
	}
	if _, err := st.Inbox(ctx, 1, timeline.Range{}); err == nil {
		t.Fatal("after a failed sync the store answers Inbox")
	}
	failing.Store(false)
	if err := st.Commit(ctx, row(3)); err == nil {
		t.Fatal("after a failed sync the store takes commits")
	}
}

package metered_test

import (
	"context"
	"errors"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/inboxd/inboxd/internal/metered"
	"github.com/inboxd/inboxd/timeline"
	"github.com/inboxd/inboxd/timeline/pebble"
	"github.com/inboxd/inboxd/timeline/timelinetest"
	"github.com/inboxd/inboxd/wire"
)

func open(t *testing.T, reg prometheus.Registerer) metered.Measured {
	t.Helper()
	st, err := pebble.Open(pebble.Options{Dir: "db", FS: vfs.NewMem()})
	if err != nil {
		t.Fatal(err)
	}
	return wrap(t, st, reg)
}

func wrap(t *testing.T, st timeline.Store, reg prometheus.Registerer) metered.Measured {
	t.Helper()
	m, err := metered.Wrap(st, metered.Config{Backend: "pebble", Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

// TestConformance runs the store suite through the wrapper: it must change
// nothing a caller sees.
func TestConformance(t *testing.T) {
	timelinetest.Run(t, func(t *testing.T) timeline.Store { return open(t, prometheus.NewRegistry()) })
}

// TestCounts checks that each operation is timed under its own labels and
// that only real failures count as errors.
func TestCounts(t *testing.T) {
	ctx := context.Background()
	reg := prometheus.NewPedanticRegistry()
	s := open(t, reg)
	b := timeline.Batch{Rows: []timeline.Row{{User: 1, Seq: 1, Conv: 2, ConvSeq: 1, MsgID: 3, Kind: wire.KindText}}}
	if err := s.Commit(ctx, &b); err != nil {
		t.Fatal(err)
	}
	if _, err := s.LastInboxSeq(ctx, 1); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Group(ctx, 99); !errors.Is(err, timeline.ErrNotFound) {
		t.Fatalf("Group of a missing conv: %v", err)
	}
	s.Close()
	if _, err := s.Inbox(ctx, 1, timeline.Range{Limit: 1}); !errors.Is(err, timeline.ErrClosed) {
		t.Fatalf("Inbox after Close: %v", err)
	}

	tests := []struct {
		op          string
		calls, errs uint64
	}{
		{"commit", 1, 0},
		{"last_inbox_seq", 1, 0},
		{"group", 1, 0}, // not found is an answer
		{"inbox", 1, 1}, // closed is a failure
		{"members", 0, 0},
	}
	got := gather(t, reg)
	for _, tt := range tests {
		if c := got[tt.op]; c.calls != tt.calls || c.errs != tt.errs {
			t.Errorf("%s: %d calls, %d errors; want %d, %d", tt.op, c.calls, c.errs, tt.calls, tt.errs)
		}
	}
	if len(got) != 19 {
		t.Errorf("%d operations exported before use, want all 19: %v", len(got), got)
	}
	if _, err := metered.Wrap(s.Unwrap(), metered.Config{Backend: "pebble", Registerer: reg}); err == nil {
		t.Error("a second wrapper registered the same metrics")
	}
}

// committer is the store as a single node's committer sees it: only the
// methods of a timeline.Store, whatever else the concrete store has.
type committer struct{ timeline.Store }

// TestApplier checks that the wrapper hands a batch over without its sync
// exactly when the wrapped store can, and times such a commit once, from
// Apply to the end of Wait, as the Commit it replaces.
func TestApplier(t *testing.T) {
	ctx := context.Background()
	st, err := pebble.Open(pebble.Options{Dir: "db", FS: vfs.NewMem()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if _, ok := wrap(t, committer{st}, prometheus.NewRegistry()).(timeline.Applier); ok {
		t.Error("the wrapper of a store that is no Applier is one")
	}

	reg := prometheus.NewPedanticRegistry()
	ap, ok := wrap(t, st, reg).(timeline.Applier)
	if !ok {
		t.Fatal("the wrapper of Pebble's store is no timeline.Applier: the committer would not pipeline")
	}
	b := timeline.Batch{Rows: []timeline.Row{{User: 1, Seq: 1, Conv: 2, ConvSeq: 1, MsgID: 3, Kind: wire.KindText}}}
	p, err := ap.Apply(ctx, &b)
	if err != nil {
		t.Fatal(err)
	}
	if c := gather(t, reg)["commit"]; c.calls != 0 {
		t.Errorf("commit timed %d times before its Wait", c.calls)
	}
	if err := p.Wait(); err != nil {
		t.Fatal(err)
	}
	if c := gather(t, reg)["commit"]; c.calls != 1 || c.errs != 0 {
		t.Errorf("commit: %d calls, %d errors after Wait; want 1, 0", c.calls, c.errs)
	}
	st.Close()
	if _, err := ap.Apply(ctx, &b); !errors.Is(err, timeline.ErrClosed) {
		t.Fatalf("Apply after Close: %v", err)
	}
	if c := gather(t, reg)["commit"]; c.calls != 2 || c.errs != 1 {
		t.Errorf("commit: %d calls, %d errors after a failed Apply; want 2, 1", c.calls, c.errs)
	}
}

type counts struct{ calls, errs uint64 }

// gather returns the counts per operation of backend pebble.
func gather(t *testing.T, reg prometheus.Gatherer) map[string]counts {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := make(map[string]counts)
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, lp := range m.GetLabel() {
				labels[lp.GetName()] = lp.GetValue()
			}
			if labels["backend"] != "pebble" {
				t.Errorf("%s: backend %q", mf.GetName(), labels["backend"])
			}
			c := out[labels["operation"]]
			switch mf.GetName() {
			case "inboxd_store_operation_duration_seconds":
				c.calls = histCount(m)
			case "inboxd_store_operation_errors_total":
				c.errs = uint64(m.GetCounter().GetValue())
			}
			out[labels["operation"]] = c
		}
	}
	return out
}

func histCount(m *dto.Metric) uint64 { return m.GetHistogram().GetSampleCount() }

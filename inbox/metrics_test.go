package inbox

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"

	"github.com/inboxd/inboxd/wire"
)

// TestMetrics sends to a group whose members are online, offline, offline
// on do-not-disturb, and the sender offline, and checks what each counter
// of the service says about it.
func TestMetrics(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	rec := newRecorder(2) // only user 2 is online
	e := newEnv(t, Config{Notifier: rec, OfflinePusher: rec, Registerer: reg})
	m := e.svc.metrics
	conv := e.create(1, 2, 3, 4)
	if err := e.svc.SetDND(ctx, 4, conv, true); err != nil {
		t.Fatal(err)
	}
	counters := map[string]prometheus.Collector{
		"online": m.pushes[pushedOnline], "offline_hook": m.pushes[pushedOffline],
		"skipped_dnd": m.pushes[skippedDND], "skipped": m.pushes[skippedOther],
		"rows": m.rows, "messages": m.messages, "stored": m.sends[sendStored],
		"duplicate": m.sends[sendDuplicate], "rejected": m.sends[sendRejected], "failed": m.sends[sendFailed],
	}
	// Pushes are counted after the ack, on the dispatcher's goroutine.
	outcomes := func() float64 {
		n := 0.0
		for _, o := range []string{"online", "offline_hook", "skipped_dnd", "skipped"} {
			n += testutil.ToFloat64(counters[o])
		}
		return n
	}
	// The creation notice to 4 members, and 4's KindDND row.
	waitFor(t, "the creation notice's pushes", func() bool { return outcomes() == 5 })
	before := make(map[string]float64)
	for k, c := range counters {
		before[k] = testutil.ToFloat64(c)
	}
	acks := samples(t, m.sendAck)

	e.send(1, conv, "a", "one")
	e.send(1, conv, "b", "two")
	e.send(1, conv, "a", "one") // a resend
	if _, err := e.svc.SendGroupMessage(ctx, 9, conv, "x", wire.KindText, nil); err == nil {
		t.Fatal("a non-member sent")
	}
	if _, err := e.svc.SendGroupMessage(ctx, 1, conv, "", wire.KindText, nil); err == nil {
		t.Fatal("a send without client msg id was taken")
	}

	want := map[string]float64{
		"online": 2, "offline_hook": 2, "skipped_dnd": 2, "skipped": 2, // 2 online; 3; 4 on DND; 1's own
		"rows": 8, "messages": 2, "stored": 2, "duplicate": 1, "rejected": 2, "failed": 0,
	}
	waitFor(t, "the pushes", func() bool { return outcomes() == 5+8 })
	for k, w := range want {
		if got := testutil.ToFloat64(counters[k]) - before[k]; got != w {
			t.Errorf("%s moved by %v, want %v", k, got, w)
		}
	}
	// The invalid send is refused before it reaches the committer.
	if got := samples(t, m.sendAck) - acks; got != 4 {
		t.Errorf("%d send-to-ack observations, want 4", got)
	}
	if n, err := testutil.GatherAndCount(reg, "inboxd_sequencer_recoveries_total", "inboxd_inbox_commit_duration_seconds"); err != nil || n != 2 {
		t.Errorf("gathered %d of the sequencer's and the commit's metrics: %v", n, err)
	}
}

func samples(t *testing.T, h prometheus.Histogram) uint64 {
	t.Helper()
	var m dto.Metric
	if err := h.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetHistogram().GetSampleCount()
}

// TestCommitDurationEndsWhenDurable holds a pipelined batch's sync while the
// committer builds the next batch: the batch's commit duration is observed
// when the store reports it durable, not when the committer, done with the
// next batch, gets round to it. Each handed-over batch's build is observed
// once.
func TestCommitDurationEndsWhenDurable(t *testing.T) {
	e := newHeldCommitter(t, Config{Registerer: prometheus.NewPedanticRegistry()})
	slow, held, hold, synced, armed := e.slow, e.held, e.hold, e.synced, &e.armed
	m := e.svc.metrics
	conv := e.create(1, 2)
	e.send(1, conv, "a", "loads the sequencer keys")
	builds, commits := samples(t, m.builds), samples(t, m.commits)

	send := func(cmid string) <-chan error {
		errc := make(chan error, 1)
		go func() {
			_, err := e.svc.SendGroupMessage(ctx, 1, conv, cmid, wire.KindText, []byte(cmid))
			errc <- err
		}()
		return errc
	}
	armed.Store(true)
	first := send("x")
	<-held // x's batch is built
	second := send("y")
	waitFor(t, "y to queue", func() bool { return len(e.svc.cmds) > 0 })
	slow.hold.Store(true)
	armed.Store(true)
	hold <- struct{}{} // x's batch goes to the store, y's is built on it
	<-held
	waitFor(t, "the store to take x's batch", func() bool {
		select {
		case <-slow.applied:
			return true
		default:
			return false
		}
	})
	if got := samples(t, m.commits) - commits; got != 0 {
		t.Fatalf("%d commit durations observed before x's batch was durable", got)
	}
	if got := samples(t, m.builds) - builds; got != 1 {
		t.Fatalf("%d builds observed after x's batch was handed over, want 1", got)
	}
	synced()
	waitFor(t, "x's commit duration", func() bool { return samples(t, m.commits)-commits == 1 })
	hold <- struct{}{}
	for name, errc := range map[string]<-chan error{"x": first, "y": second} {
		if err := <-errc; err != nil {
			t.Fatalf("send %s: %v", name, err)
		}
	}
	if b := samples(t, m.builds) - builds; b != 2 {
		t.Fatalf("%d builds observed for 2 batches", b)
	}
	// Observed once the batch is answerable, maybe after its ack.
	waitFor(t, "y's commit duration", func() bool { return samples(t, m.commits)-commits == 2 })
}

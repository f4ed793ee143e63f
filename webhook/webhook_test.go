package webhook

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/goleak"

	"github.com/inboxd/inboxd/inbox"
	"github.com/inboxd/inboxd/timeline"
	"github.com/inboxd/inboxd/wire"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func entry(seq uint64, body string) inbox.Entry {
	return inbox.Entry{
		Row: timeline.Row{User: 7, Seq: seq, Conv: 3, ConvSeq: seq, MsgID: 100 + seq, Kind: wire.KindText},
		Msg: &timeline.Message{Conv: 3, ConvSeq: seq, ID: 100 + seq, Sender: 9, Kind: wire.KindText, Body: []byte(body), Time: time.UnixMilli(5000)},
	}
}

func TestDeliversWithRetries(t *testing.T) {
	var mu sync.Mutex
	var got []Notice
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1)%2 == 1 { // every notice fails once first
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		var n Notice
		if err := json.NewDecoder(r.Body).Decode(&n); err != nil || r.Header.Get("Content-Type") != "application/json" {
			t.Errorf("bad post: %v", err)
		}
		mu.Lock()
		got = append(got, n)
		mu.Unlock()
	}))
	defer srv.Close()
	p, err := New(Config{URL: srv.URL, Workers: 1, Backoff: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	p.PushOffline(7, entry(1, "héllo"))
	p.PushOffline(7, entry(2, string(make([]byte, 300))))
	mentioning := entry(3, "@7")
	mentioning.Msg.Mentions = []uint64{5, 7}
	p.PushOffline(7, mentioning)
	p.PushOffline(8, mentioning)
	if err := p.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if s := p.Stats(); s.Delivered != 4 || s.Retries != 4 || s.Failed != 0 {
		t.Fatalf("stats %+v", s)
	}
	want := Notice{User: 7, Seq: 1, Conv: 3, ConvSeq: 1, MsgID: 101, Sender: 9, Kind: 1, TimeMs: 5000, Preview: "héllo"}
	if got[0] != want {
		t.Fatalf("notice %+v, want %+v", got[0], want)
	}
	if len(got[1].Preview) != 120 {
		t.Fatalf("preview of %d bytes", len(got[1].Preview))
	}
	if got[0].Mentioned || !got[2].Mentioned || got[3].Mentioned {
		t.Fatalf("mentioned flags %v %v %v, want only the third notice's set", got[0].Mentioned, got[2].Mentioned, got[3].Mentioned)
	}
}

func TestGivesUp(t *testing.T) {
	tests := []struct {
		name     string
		status   int
		attempts int32
	}{
		{"client error is final", http.StatusBadRequest, 1},
		{"server errors retried up to the limit", http.StatusInternalServerError, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var calls atomic.Int32
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				calls.Add(1)
				w.WriteHeader(tt.status)
			}))
			defer srv.Close()
			p, _ := New(Config{URL: srv.URL, MaxAttempts: 3, Backoff: time.Millisecond})
			p.PushOffline(7, entry(1, "x"))
			p.Close(context.Background())
			if calls.Load() != tt.attempts || p.Stats().Failed != 1 {
				t.Fatalf("%d posts, stats %+v", calls.Load(), p.Stats())
			}
		})
	}
}

func TestFullQueueDrops(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-release }))
	defer srv.Close()
	p, _ := New(Config{URL: srv.URL, Workers: 1, QueueSize: 2})
	for i := range 10 {
		p.PushOffline(7, entry(uint64(i), "x")) // never blocks
	}
	close(release)
	p.Close(context.Background())
	s := p.Stats()
	if s.Dropped < 7 || s.Delivered+s.Dropped != 10 {
		t.Fatalf("stats %+v", s)
	}
}

// TestMetrics checks that the registered metrics say what Stats says.
func TestMetrics(t *testing.T) {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) == 1 {
			w.WriteHeader(http.StatusServiceUnavailable) // the first notice is retried once
			return
		}
		if calls.Load() == 3 {
			w.WriteHeader(http.StatusBadRequest) // the second fails for good
		}
	}))
	defer srv.Close()
	reg := prometheus.NewPedanticRegistry()
	p, err := New(Config{URL: srv.URL, Workers: 1, Backoff: time.Millisecond, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		p.PushOffline(7, entry(uint64(i+1), "x"))
	}
	p.Close(context.Background())
	want := `
# HELP inboxd_webhook_notices_total Offline-push notices by result: delivered (2xx), failed (a permanent answer, or every attempt failed), dropped (the queue was full).
# TYPE inboxd_webhook_notices_total counter
inboxd_webhook_notices_total{result="delivered"} 2
inboxd_webhook_notices_total{result="dropped"} 0
inboxd_webhook_notices_total{result="failed"} 1
# HELP inboxd_webhook_retries_total Posts retried after a network error, a 5xx or a 429.
# TYPE inboxd_webhook_retries_total counter
inboxd_webhook_retries_total 1
# HELP inboxd_webhook_queue_capacity Notices the queue holds before it drops (Config.QueueSize).
# TYPE inboxd_webhook_queue_capacity gauge
inboxd_webhook_queue_capacity 4096
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want),
		"inboxd_webhook_notices_total", "inboxd_webhook_retries_total", "inboxd_webhook_queue_capacity"); err != nil {
		t.Error(err)
	}
	if n := testutil.CollectAndCount(p.postDuration); n != 1 {
		t.Errorf("post histogram has %d series", n)
	}
	if _, err := New(Config{URL: srv.URL, Registerer: reg}); err == nil {
		t.Error("a second pusher registered the same metrics")
	}
}

// TestIDsAsStrings: the conversation and message ids reach a receiver
// exactly even when it reads JSON numbers as float64, as JavaScript does:
// a direct conversation's id and a snowflake are beyond 2^53.
func TestIDsAsStrings(t *testing.T) {
	conv, msgID := wire.DirectConv(7, 9), uint64(1866045931925426177)
	bodies := make(chan map[string]any, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var m map[string]any // numbers as float64
		if err := json.NewDecoder(r.Body).Decode(&m); err != nil {
			t.Errorf("decode: %v", err)
		}
		bodies <- m
	}))
	defer srv.Close()
	p, err := New(Config{URL: srv.URL, Workers: 1})
	if err != nil {
		t.Fatal(err)
	}
	e := entry(1, "hi")
	e.Row.Conv, e.Row.MsgID, e.Msg.Conv, e.Msg.ID = conv, msgID, conv, msgID
	p.PushOffline(7, e)
	if err := p.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	m := <-bodies
	if m["conv"] != strconv.FormatUint(conv, 10) || m["msg_id"] != strconv.FormatUint(msgID, 10) {
		t.Fatalf("conv %#v msg_id %#v, want the decimal strings %d and %d", m["conv"], m["msg_id"], conv, msgID)
	}
	if m["user"] != float64(7) || m["conv_seq"] != float64(1) {
		t.Fatalf("user %#v conv_seq %#v, want the numbers 7 and 1", m["user"], m["conv_seq"])
	}
}

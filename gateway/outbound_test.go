package gateway

import (
	"bytes"
	"context"
	"net"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/inboxd/inboxd/inbox"
	"github.com/inboxd/inboxd/timeline"
	"github.com/inboxd/inboxd/wire"
	"github.com/inboxd/inboxd/wire/wirepb"
)

// pushFrames is the reference encoding of appendPushes: the Push messages
// built with wirepb and marshalled by proto, split as fit splits them.
func pushFrames(t *testing.T, entries []inbox.Entry, maxFrame int) []byte {
	t.Helper()
	var out []byte
	for pb := entriesPB(entries); len(pb) > 0; {
		n := fit(pb, maxFrame)
		var err error
		if out, err = wire.AppendFrame(out, wire.CmdPush, 0, 0, &wirepb.Push{Entries: pb[:n]}); err != nil {
			t.Fatal(err)
		}
		pb = pb[n:]
	}
	return out
}

// TestAppendPushesWire checks that pushes encoded with the shared message
// bytes are byte for byte what proto.Marshal makes of the same entries.
func TestAppendPushesWire(t *testing.T) {
	at := time.UnixMilli(1_700_000_000_123)
	msg := &timeline.Message{Conv: 7, ConvSeq: 3, ID: 1 << 40, Sender: 9, ClientMsgID: "c-1", Kind: wire.KindText, Body: []byte("hello"), Time: at}
	big := &timeline.Message{Conv: 7, ConvSeq: 4, ID: 1<<40 + 1, Sender: 9, ClientMsgID: "c-2", Kind: 2, Body: bytes.Repeat([]byte("x"), 3000), Time: at}
	bare := &timeline.Message{Time: time.UnixMilli(0)} // every field zero: an empty, present message
	row := func(seq uint64, m *timeline.Message) inbox.Entry {
		r := timeline.Row{User: 5, Seq: seq, Conv: 7, Kind: wire.KindText}
		if m != nil {
			r.ConvSeq, r.MsgID, r.Kind = m.ConvSeq, m.ID, m.Kind
		}
		return inbox.Entry{Row: r, Msg: m}
	}
	read := inbox.Entry{Row: timeline.Row{User: 5, Seq: 300, Conv: 7, ConvSeq: 3, Kind: wire.KindRead}} // no message
	tests := []struct {
		name     string
		entries  []inbox.Entry
		maxFrame int
	}{
		{"one entry", []inbox.Entry{row(1, msg)}, wire.DefaultMaxFrame},
		{"read marker, no message", []inbox.Entry{read}, wire.DefaultMaxFrame},
		{"zero fields", []inbox.Entry{{Msg: bare}, {}}, wire.DefaultMaxFrame},
		{"several, shared message", []inbox.Entry{row(1, msg), row(2, big), read, row(1<<50, msg)}, wire.DefaultMaxFrame},
		{"split over frames", []inbox.Entry{row(1, big), row(2, big), row(3, msg), row(4, big)}, 4000},
		{"entry larger than a frame", []inbox.Entry{row(1, big), row(2, big)}, 1000},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var cache msgCache
			enc, done := cache.encoder()
			got, frames := appendPushes(nil, tt.entries, tt.maxFrame, enc)
			done()
			want := pushFrames(t, tt.entries, tt.maxFrame)
			if !bytes.Equal(got, want) {
				t.Fatalf("pushes differ from proto.Marshal:\ngot  %x\nwant %x", got, want)
			}
			n := 0
			for rest := got; len(rest) > 0; n++ {
				_, size, err := wire.Split(rest, len(rest))
				if err != nil || size == 0 {
					t.Fatalf("frame %d: %d %v", n, size, err)
				}
				rest = rest[size:]
			}
			if n != frames {
				t.Fatalf("%d frames, said %d", n, frames)
			}
		})
	}
}

// TestMsgCacheBounded checks that the cache answers a message it holds
// from memory, and forgets everything once it would pass its bound.
func TestMsgCacheBounded(t *testing.T) {
	var c msgCache
	body := bytes.Repeat([]byte("b"), 100<<10)
	first := &timeline.Message{ID: 1, Body: body}
	if a, b := c.encoded(first), c.encoded(first); &a[0] != &b[0] {
		t.Fatal("a cached message was encoded again")
	}
	for i := range 20 {
		c.encoded(&timeline.Message{ID: uint64(i + 2), Body: body})
		if c.bytes > maxCachedBytes {
			t.Fatalf("cache holds %d bytes, bound %d", c.bytes, maxCachedBytes)
		}
	}
	if _, ok := c.m[first]; ok {
		t.Fatal("the oldest message outlived the bound")
	}
}

// notifyingMarkRead answers MARK_READ after a push to the same user has
// been queued by another goroutine, as the inbox's notifier does.
type notifyingMarkRead struct {
	Service
	// gw is set once the server runs; atomic, for the race detector does
	// not see the requests that follow come through a socket.
	gw atomic.Pointer[Server]
}

func (n *notifyingMarkRead) MarkRead(_ context.Context, user, conv, convSeq uint64) (uint64, error) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		n.gw.Load().Notify(user, []inbox.Entry{{Row: timeline.Row{User: user, Seq: convSeq, Conv: conv, ConvSeq: convSeq, Kind: wire.KindRead}}})
	}()
	<-done
	return convSeq, nil
}

// TestResponsesAndPushesInOrder pipelines requests whose handler has a push
// queued before it answers: on the wire each push must come before its
// response, and the responses in request order, however the frames of the
// two goroutines are gathered into writes.
func TestResponsesAndPushesInOrder(t *testing.T) {
	var front *notifyingMarkRead
	s := start(t, Config{RateLimit: 1e6, RateBurst: 1e6, UserRateLimit: 1e6, UserRateBurst: 1e6}, func(svc Service) Service {
		front = &notifyingMarkRead{Service: svc}
		return front
	})
	front.gw.Store(s.gw)
	c := s.login(1, "d")
	const n = 200
	var burst []byte
	for i := range n {
		burst, _ = wire.AppendFrame(burst, wire.CmdMarkRead, 0, uint32(1000+i), &wirepb.MarkReadRequest{Conv: 7, ConvSeq: uint64(i + 1)})
	}
	if _, err := c.c.Write(burst); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		for _, want := range []wire.Command{wire.CmdPush, wire.CmdMarkRead} {
			f, err := c.read()
			if err != nil {
				t.Fatalf("request %d: %v", i, err)
			}
			if f.Command != want {
				t.Fatalf("request %d: read %v, want %v", i, f.Command, want)
			}
			switch want {
			case wire.CmdPush:
				var p wirepb.Push
				if err := wire.Decode(f.Body, &p); err != nil || len(p.Entries) != 1 || p.Entries[0].Seq != uint64(i+1) {
					t.Fatalf("request %d: push %v %v", i, p.Entries, err)
				}
			default:
				if f.RequestID != uint32(1000+i) {
					t.Fatalf("request %d: response to %d", i, f.RequestID)
				}
			}
		}
	}
}

// TestSlowReaderBytesCapped pushes to a connection that never reads, far
// faster than the event loop can write: the bytes the server holds for it
// (waiting for the event loop, and unwritten in gnet's buffer) never pass
// MaxOutbound by more than the closing ERROR frame, and it is closed as a
// slow reader.
func TestSlowReaderBytesCapped(t *testing.T) {
	const maxOutbound = 256 << 10
	s := start(t, Config{MaxOutbound: maxOutbound})
	slow := s.login(2, "d")
	slow.c.(*net.TCPConn).SetReadBuffer(4096)
	s.gw.mu.RLock()
	sess := s.gw.byUser[2][0]
	s.gw.mu.RUnlock()
	msg := &timeline.Message{Conv: 7, ConvSeq: 1, ID: 1, Sender: 1, Kind: wire.KindText, Body: bytes.Repeat([]byte("x"), 8<<10), Time: time.Now()}
	errFrame, _ := wire.AppendFrame(nil, wire.CmdError, 0, 0, errorBody(wire.CodeSlowReader, "outbound buffer full: read faster"))
	limit := int64(maxOutbound + len(errFrame))
	for i := range 4000 { // 32 MiB: far more than the kernel's buffers
		if !s.gw.Notify(2, []inbox.Entry{{Row: timeline.Row{User: 2, Seq: uint64(i + 1), Conv: 7, ConvSeq: 1, MsgID: 1, Kind: wire.KindText}, Msg: msg}}) {
			break // closed: the user is offline
		}
		sess.outMu.Lock()
		held := int64(len(sess.out)) + sess.outbound.Load()
		sess.outMu.Unlock()
		if held > limit {
			t.Fatalf("after push %d the server holds %d bytes for the slow reader, cap %d", i+1, held, maxOutbound)
		}
	}
	waitClosed(t, s, 2)
	if got := testutil.ToFloat64(s.gw.metrics.disconnects[transportTCP][closedSlowReader]); got != 1 {
		t.Fatalf("%v slow-reader disconnects, want 1", got)
	}
}

// FuzzAppendPushes checks the hand-made PUSH encoding against proto.Marshal
// for any field values, with and without a message, and any frame limit.
func FuzzAppendPushes(f *testing.F) {
	f.Add(uint64(1), uint64(7), uint64(3), uint64(1<<40), uint16(1), int64(1_700_000_000_123), "c-1", []byte("hello"), uint8(3), uint16(4000))
	f.Add(uint64(0), uint64(0), uint64(0), uint64(0), uint16(0), int64(-1), "", []byte(nil), uint8(0), uint16(0))
	f.Fuzz(func(t *testing.T, seq, conv, convSeq, msgID uint64, kind uint16, ms int64, cmid string, body []byte, n uint8, maxFrame uint16) {
		if !utf8.ValidString(cmid) {
			t.Skip() // no such message is stored: a SEND's body with one does not decode
		}
		msg := &timeline.Message{Conv: conv, ConvSeq: convSeq, ID: msgID, Sender: seq ^ conv, ClientMsgID: cmid, Kind: wire.Kind(kind),
			Body: body, Time: time.UnixMilli(ms)}
		var entries []inbox.Entry
		for i := range int(n%8) + 1 {
			e := inbox.Entry{Row: timeline.Row{Seq: seq + uint64(i), Conv: conv, ConvSeq: convSeq, MsgID: msgID, Kind: wire.Kind(kind)}}
			if i%3 != 2 { // some entries carry no message, as read markers do
				e.Msg = msg
			}
			entries = append(entries, e)
		}
		limit := int(maxFrame) + wire.HeaderSize
		var cache msgCache
		enc, done := cache.encoder()
		got, _ := appendPushes(nil, entries, limit, enc)
		done()
		if want := pushFrames(t, entries, limit); !bytes.Equal(got, want) {
			t.Fatalf("pushes differ from proto.Marshal:\ngot  %x\nwant %x", got, want)
		}
	})
}

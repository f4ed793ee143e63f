package gateway

import (
	"bytes"
	"slices"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/inboxd/inboxd/wire"
	"github.com/inboxd/inboxd/wire/wirepb"
)

// wsReadResult is what the WebSocket read path made of a client's bytes.
type wsReadResult struct {
	queued  []request
	failed  bool
	code    ws.StatusCode
	written int
}

// readWSChunks feeds data to an authenticated WebSocket session in the
// chunks cut at cuts, as the network may deliver it.
func readWSChunks(t *testing.T, data []byte, cuts ...int) wsReadResult {
	now := time.Unix(1_900_000_000, 0)
	s, err := New(Config{Secret: secret, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	c := &sinkConn{}
	sess := newSession(s, c, transportWS)
	c.SetContext(sess)
	sess.ws.upgraded.Store(true)
	sess.authSeen = true
	sess.user.Store(1)
	data = slices.Clone(data) // the read path unmasks in place
	prev := 0
	for _, cut := range append(cuts, len(data)) {
		cut = min(max(cut, prev), len(data))
		sess.readWS(data[prev:cut], s.cfg.MaxFrame, now)
		if !sess.failed.Load() && len(sess.held) > s.cfg.MaxFrame+ws.MaxHeaderSize+len(data) {
			t.Fatalf("held %d bytes", len(sess.held))
		}
		prev = cut
	}
	return wsReadResult{queued: sess.queue, failed: sess.failed.Load(), code: sess.ws.code, written: c.written}
}

// FuzzWSRead checks that the WebSocket read path never panics, holds no
// more than a frame, and makes the same requests of a stream however the
// network cuts it.
func FuzzWSRead(f *testing.F) {
	frame, _ := wire.AppendFrame(nil, wire.CmdSend, 0, 7, &wirepb.SendRequest{Conv: 1, ClientMsgId: "x", Kind: 1, Body: []byte("hi")})
	masked := func(fr ws.Frame) []byte {
		b, _ := ws.CompileFrame(ws.MaskFrameWith(fr, [4]byte{1, 2, 3, 4}))
		return b
	}
	f.Add(masked(ws.NewBinaryFrame(frame)), 3)
	f.Add(masked(ws.NewTextFrame(frame)), 1)
	f.Add(append(masked(ws.NewFrame(ws.OpBinary, false, frame[:4])), masked(ws.NewFrame(ws.OpContinuation, true, frame[4:]))...), 9)
	f.Add(append(masked(ws.NewPingFrame([]byte("p"))), masked(ws.NewBinaryFrame(frame))...), 2)
	f.Add(masked(ws.NewBinaryFrame(append(frame, frame...))), 20)
	f.Add(masked(ws.NewCloseFrame(ws.NewCloseFrameBody(1000, ""))), 1)
	f.Fuzz(func(t *testing.T, data []byte, cut int) {
		whole := readWSChunks(t, data)
		split := readWSChunks(t, data, cut)
		bytewise := make([]int, len(data))
		for i := range bytewise {
			bytewise[i] = i
		}
		one := readWSChunks(t, data, bytewise...)
		for _, got := range []wsReadResult{split, one} {
			if got.failed != whole.failed || got.code != whole.code || len(got.queued) != len(whole.queued) {
				t.Fatalf("cut: failed %v code %d, %d requests; whole: failed %v code %d, %d requests",
					got.failed, got.code, len(got.queued), whole.failed, whole.code, len(whole.queued))
			}
			for i, r := range got.queued {
				w := whole.queued[i]
				if r.cmd != w.cmd || r.id != w.id || !bytes.Equal(r.body, w.body) {
					t.Fatalf("request %d: %v %d %x, whole: %v %d %x", i, r.cmd, r.id, r.body, w.cmd, w.id, w.body)
				}
			}
		}
	})
}

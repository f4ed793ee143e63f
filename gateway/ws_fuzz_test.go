package gateway

import (
	"bytes"
	"errors"
	"io"
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

// captureConn keeps what the server writes.
type captureConn struct {
	sinkConn
	out bytes.Buffer
}

func (c *captureConn) Write(b []byte) (int, error) { return c.out.Write(b) }

// TestWSHandshakeInPieces feeds a handshake, and a frame behind it, cut at
// every place and byte by byte: the server answers it once whole, and takes
// the frame.
func TestWSHandshakeInPieces(t *testing.T) {
	req := "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
	frame, _ := wire.AppendFrame(nil, wire.CmdAuth, 0, 1, &wirepb.AuthRequest{Token: "t"})
	msg, _ := ws.CompileFrame(ws.MaskFrameWith(ws.NewBinaryFrame(frame), [4]byte{9, 8, 7, 6}))
	stream := append([]byte(req), msg...)
	bytewise := func(n int) []int {
		cuts := make([]int, n)
		for i := range cuts {
			cuts[i] = i
		}
		return cuts
	}
	cases := [][]int{bytewise(len(stream))}
	for cut := range len(stream) {
		cases = append(cases, []int{cut})
	}
	for _, cuts := range cases {
		s, err := New(Config{Secret: secret})
		if err != nil {
			t.Fatal(err)
		}
		c := &captureConn{}
		sess := newSession(s, c, transportWS)
		c.SetContext(sess)
		data, prev := slices.Clone(stream), 0
		for _, cut := range append(cuts, len(data)) {
			sess.readWS(data[prev:cut], wire.PreAuthMaxFrame, time.Now())
			prev = cut
		}
		if !sess.ws.upgraded.Load() || sess.failed.Load() || !bytes.HasPrefix(c.out.Bytes(), []byte("HTTP/1.1 101 ")) {
			t.Fatalf("cuts %v: upgraded %v, failed %v, answered %q", cuts, sess.ws.upgraded.Load(), sess.failed.Load(), c.out.String())
		}
		if len(sess.queue) != 1 || sess.queue[0].cmd != wire.CmdAuth || !bytes.Equal(sess.queue[0].body, frame[wire.HeaderSize:]) {
			t.Fatalf("cuts %v: queued %+v", cuts, sess.queue)
		}
	}
}

// FuzzWSHeader checks parseWSHeader against gobwas/ws's ReadHeader.
func FuzzWSHeader(f *testing.F) {
	for _, n := range []int{0, 125, 126, 0xffff, 0x10000} {
		h := ws.Header{Fin: true, OpCode: ws.OpBinary, Length: int64(n), Masked: true, Mask: [4]byte{1, 2, 3, 4}}
		var b bytes.Buffer
		ws.WriteHeader(&b, h)
		f.Add(b.Bytes())
	}
	f.Add([]byte{0x82, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 1})
	f.Fuzz(func(t *testing.T, data []byte) {
		got, n, err := parseWSHeader(data)
		r := bytes.NewReader(data)
		want, wantErr := ws.ReadHeader(r)
		switch {
		case n == 0 && err == nil:
			if !errors.Is(wantErr, io.EOF) && !errors.Is(wantErr, io.ErrUnexpectedEOF) {
				t.Fatalf("%x: incomplete, ReadHeader says %v", data, wantErr)
			}
		case err != nil:
			if wantErr == nil {
				t.Fatalf("%x: %v, ReadHeader read %+v", data, err, want)
			}
		case wantErr != nil || got != want || n != len(data)-r.Len():
			t.Fatalf("%x: %+v (%d bytes), ReadHeader: %+v (%d bytes), %v", data, got, n, want, len(data)-r.Len(), wantErr)
		}
	})
}

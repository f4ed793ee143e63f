package gateway

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/gobwas/ws"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/inboxd/inboxd/wire"
)

// The WebSocket transport (docs/protocol.md, "WebSocket") carries the same
// frames as TCP, one inboxd frame per binary message, on its own listener
// of the same gnet engine. A WebSocket connection is a session like any
// other: the same event loops, dispatch, workers, pushes, limits and
// slow-reader cap. What differs is only at the edges, here:
//
//   - on the way in, readWS parses the handshake, then WebSocket frames
//     (gobwas/ws), and hands each whole message, which must be exactly one
//     inboxd frame, to the same accept as TCP's byte stream; fragmented
//     messages are put together, within the frame limit;
//   - on the way out, each inboxd frame is put in a binary message as it is
//     queued (appendOut), and the server's closes end with a close frame
//     whose code tells why.

// maxHandshake bounds the handshake request: a browser's, with cookies, is
// one or two KiB.
const maxHandshake = 8 << 10

// transport is what carries a connection's frames, for the metrics.
type transport uint8

const (
	transportTCP transport = iota
	transportWS
	numTransports
)

var transportNames = [numTransports]string{"tcp", "ws"}

// wsConn is the WebSocket state of a session.
type wsConn struct {
	// Any goroutine.
	upgraded atomic.Bool   // the handshake succeeded: frames go out in messages
	lastErr  atomic.Uint32 // the code of the last error frame queued
	// Event loop only.
	code       ws.StatusCode // a WebSocket-level failure's close code; 0: from lastErr
	reason     string
	msg        []byte // the fragments of a message not yet whole
	fragmented bool   // a message's first fragment came, its last not yet
	ctl        []byte // control frames to write after the answers: pongs, the close frame
	closeSent  bool
}

// newUpgrader returns the handshake of the server's WebSocket listener:
// path wire.WSPath (any other: HTTP 404), the subprotocol
// wire.WSSubprotocol if offered, and the origins of Config.WSOrigins.
func newUpgrader(origins []string) ws.Upgrader {
	return ws.Upgrader{
		ReadBufferSize: maxHandshake,
		Protocol:       func(p []byte) bool { return string(p) == wire.WSSubprotocol },
		OnRequest: func(uri []byte) error {
			path, _, _ := bytes.Cut(uri, []byte("?"))
			if string(path) != wire.WSPath {
				return ws.RejectConnectionError(ws.RejectionStatus(http.StatusNotFound), ws.RejectionReason("no such path: use "+wire.WSPath))
			}
			return nil
		},
		OnHeader: func(key, value []byte) error {
			if strings.EqualFold(string(key), "Origin") && !originAllowed(origins, string(value)) {
				return ws.RejectConnectionError(ws.RejectionStatus(http.StatusForbidden), ws.RejectionReason("origin not allowed"))
			}
			return nil
		},
	}
}

// originAllowed reports whether a handshake with the Origin header origin
// is accepted: a browser's page must be from an origin listed, or the list
// holds "*". A request without Origin (a native client) does not come here.
func originAllowed(allowed []string, origin string) bool {
	return slices.ContainsFunc(allowed, func(a string) bool { return a == "*" || strings.EqualFold(a, origin) })
}

// refusedHTTP is the answer to a WebSocket connection refused at a cap
// (Server.OnOpen), before its handshake is read: 503, or 429 for the
// per-address cap.
func refusedHTTP(why refusal) []byte {
	status := http.StatusServiceUnavailable
	if why == refusedAddress {
		status = http.StatusTooManyRequests
	}
	return fmt.Appendf(nil, "HTTP/1.1 %d %s\r\nRetry-After: 1\r\nConnection: close\r\nContent-Length: 0\r\n\r\n", status, http.StatusText(status))
}

var badRequestHTTP = []byte("HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")

var tooLargeHTTP = []byte("HTTP/1.1 431 Request Header Fields Too Large\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")

// readWS takes the WebSocket bytes in: the handshake first, then frames;
// what is not yet whole waits in held. It runs on the event loop.
func (sess *session) readWS(in []byte, limit int, arrived time.Time) {
	w := sess.ws
	buf := in
	if sess.held != nil {
		sess.held = append(sess.held, in...)
		buf = sess.held
	}
	for len(buf) > 0 && !sess.failed.Load() {
		var n int
		if w.upgraded.Load() {
			n = sess.wsFrame(buf, limit, arrived)
		} else {
			n = sess.handshake(buf, len(in))
		}
		if n == 0 {
			break
		}
		buf = buf[n:]
	}
	switch {
	case len(buf) == 0 || sess.failed.Load():
		sess.held = nil
	case sess.held == nil:
		sess.held = append([]byte(nil), buf...) // gnet reuses in
	case len(buf) < len(sess.held):
		// Moved only when a frame was taken: a frame trickling in a byte
		// at a time must not cost a copy of all it has so far each time.
		sess.held = sess.held[:copy(sess.held, buf)]
	}
}

// handshake answers the handshake request at the start of buf once it is
// whole, returning its length (0: not whole yet). The last fresh bytes of
// buf are new: the end of the request is looked for only where they may
// complete it, so that a request trickling in is not scanned whole at every
// read. It runs on the event loop.
func (sess *session) handshake(buf []byte, fresh int) int {
	const end4 = "\r\n\r\n"
	from := max(0, len(buf)-fresh-(len(end4)-1))
	end := bytes.Index(buf[from:], []byte(end4))
	if end >= 0 {
		end += from
	}
	if end < 0 && len(buf) <= maxHandshake {
		return 0
	}
	if end < 0 || end+4 > maxHandshake {
		sess.c.Write(tooLargeHTTP)
		sess.closeNow(closedHandshake)
		return 0
	}
	n := end + 4
	var resp bytes.Buffer
	_, err := sess.srv.upgrader.Upgrade(struct {
		io.Reader
		io.Writer
	}{bytes.NewReader(buf[:n]), &resp})
	if err != nil && resp.Len() == 0 { // not even an HTTP request line
		resp.Write(badRequestHTTP)
	}
	sess.c.Write(resp.Bytes())
	if err != nil {
		sess.closeNow(closedHandshake)
		sess.srv.warn.warn(warnHandshake, "gateway: WebSocket handshake refused", "remote", sess.remote(), "err", err)
		return n
	}
	sess.ws.upgraded.Store(true)
	return n
}

// wsFrame takes the WebSocket frame at the start of buf once it is whole,
// returning its length (0: not whole yet, or the connection failed). Data
// frames are checked against limit as they come: no message larger than an
// inboxd frame is ever held. It runs on the event loop.
func (sess *session) wsFrame(buf []byte, limit int, arrived time.Time) int {
	w := sess.ws
	h, hn, err := parseWSHeader(buf)
	if hn == 0 && err == nil {
		return 0
	}
	state := ws.StateServerSide
	if w.fragmented {
		state |= ws.StateFragmented
	}
	if err == nil {
		err = ws.CheckHeader(h, state)
	}
	switch {
	case err != nil:
		sess.wsFail(ws.StatusProtocolError, err.Error())
		return 0
	case h.OpCode == ws.OpText:
		sess.wsFail(ws.StatusUnsupportedData, "binary messages only")
		return 0
	case h.OpCode.IsData() && h.Length > int64(limit-len(w.msg)):
		sess.wsFail(ws.StatusMessageTooBig, fmt.Sprintf("a message is one frame of at most %d bytes", limit))
		return 0
	}
	n := hn + int(h.Length)
	if len(buf) < n {
		return 0
	}
	payload := buf[hn:n]
	ws.Cipher(payload, h.Mask, 0)
	// Every WebSocket frame but the one that ends a message is charged like
	// an inboxd frame: a ping costs a pong, and pongs and fragments, which
	// cost nothing else, would otherwise be a flood the bucket never sees.
	// The message's inboxd frame is charged when it is dispatched.
	if (h.OpCode.IsControl() || !h.Fin) && h.OpCode != ws.OpClose && !sess.wsSpend(h.OpCode, arrived) {
		return 0
	}
	switch h.OpCode {
	case ws.OpPing:
		w.ctl = appendWSHeader(w.ctl, ws.OpPong, len(payload))
		w.ctl = append(w.ctl, payload...)
	case ws.OpClose:
		code, _ := ws.ParseCloseFrameData(payload)
		if code.Empty() || ws.CheckCloseFrameData(code, "") != nil {
			code = ws.StatusNormalClosure
		}
		// Closed by the peer: the close frame is echoed, as RFC 6455 asks.
		if sess.closeNow(closedByPeer) {
			w.code = code
		}
		return 0
	case ws.OpBinary, ws.OpContinuation:
		if !h.Fin {
			w.msg, w.fragmented = append(w.msg, payload...), true
			return n
		}
		if w.fragmented {
			payload, w.msg, w.fragmented = append(w.msg, payload...), nil, false
			sess.message(payload, true, limit, arrived)
		} else {
			sess.message(payload, false, limit, arrived)
		}
	}
	return n
}

// message takes a whole binary message, which must hold one inboxd frame;
// owned says the session may keep body. It runs on the event loop.
func (sess *session) message(body []byte, owned bool, limit int, arrived time.Time) {
	f, n, err := wire.Split(body, limit)
	switch {
	case err != nil:
		code := wire.CodeFrameTooLarge
		if !errors.Is(err, wire.ErrFrameTooLarge) {
			code = wire.CodeVersion
		}
		sess.failNow(closedProtocol, code, err.Error())
	case n != len(body):
		sess.wsFail(ws.StatusInvalidFramePayloadData, "a message holds exactly one inboxd frame")
	default:
		if !owned {
			f.Body = append([]byte(nil), f.Body...) // gnet reuses the message
		}
		sess.accept(f, arrived)
	}
}

// wsSpend charges a WebSocket frame of op that carries no inboxd frame to
// the connection's bucket, and reports false when that closes the
// connection as a flood. It runs on the event loop.
func (sess *session) wsSpend(op ws.OpCode, arrived time.Time) bool {
	if sess.spend(arrived.UnixNano()) != flooded {
		return true
	}
	sess.flooded(wsOpNames[op])
	if sess.closeNow(closedFlood) {
		sess.ws.code, sess.ws.reason = wire.WSCloseError+ws.StatusCode(wire.CodeRateLimited), "too many frames: closing"
	}
	return false
}

// wsOpNames name the WebSocket frames wsSpend charges, for the log.
var wsOpNames = map[ws.OpCode]string{ws.OpPing: "ws ping", ws.OpPong: "ws pong", ws.OpBinary: "ws fragment", ws.OpContinuation: "ws fragment"}

// wsFail closes the connection for a WebSocket-level fault, with code. It
// runs on the event loop.
func (sess *session) wsFail(code ws.StatusCode, reason string) {
	if sess.closeNow(closedProtocol) {
		sess.ws.code, sess.ws.reason = code, reason
	}
}

// appendMessages appends to dst each inboxd frame of frames in a binary
// message, noting the code of an error among them for the close frame.
func (w *wsConn) appendMessages(dst, frames []byte) []byte {
	if !w.upgraded.Load() {
		return dst // closed before the handshake: nothing to tell in frames
	}
	for len(frames) >= wire.HeaderSize {
		n := wire.HeaderSize + int(binary.BigEndian.Uint32(frames))
		flags, cmd := wire.Flags(frames[5]), wire.Command(binary.BigEndian.Uint16(frames[6:]))
		if flags&wire.FlagError != 0 || cmd == wire.CmdError {
			w.lastErr.Store(errorCode(frames[wire.HeaderSize:n]))
		}
		dst = appendWSHeader(dst, ws.OpBinary, n)
		dst = append(dst, frames[:n]...)
		frames = frames[n:]
	}
	return dst
}

// errorCode reads field 1 (code) of an encoded Error body; 0 if absent.
func errorCode(body []byte) uint32 {
	for len(body) > 0 {
		num, typ, n := protowire.ConsumeTag(body)
		if n < 0 {
			return 0
		}
		body = body[n:]
		if num == 1 && typ == protowire.VarintType {
			v, _ := protowire.ConsumeVarint(body)
			return uint32(v)
		}
		if n = protowire.ConsumeFieldValue(num, typ, body); n < 0 {
			return 0
		}
		body = body[n:]
	}
	return 0
}

// closeFrame returns the close frame that ends the connection, once: the
// WebSocket-level fault's code, or wire.WSCloseError plus the code of the last
// error frame sent, or 1000; nil if it went already or there was no
// handshake.
func (w *wsConn) closeFrame() []byte {
	if w == nil || w.closeSent || !w.upgraded.Load() {
		return nil
	}
	w.closeSent = true
	code := w.code
	if code == 0 {
		code = ws.StatusNormalClosure
		if e := w.lastErr.Load(); e != 0 {
			code = ws.StatusCode(wire.WSCloseError + e)
		}
	}
	body := ws.NewCloseFrameBody(code, w.reason)
	return append(appendWSHeader(nil, ws.OpClose, len(body)), body...)
}

// wsTail returns answers in binary messages, then the control frames waiting,
// and the close frame if the connection is closing. It runs on the event
// loop.
func (sess *session) wsTail(answers []byte) []byte {
	w := sess.ws
	out := append(w.appendMessages(nil, answers), w.ctl...)
	w.ctl = nil
	if sess.closing {
		out = append(out, w.closeFrame()...)
	}
	return out
}

// parseWSHeader reads the frame header at the start of buf as
// ws.ReadHeader does, without its allocations: the event loop parses every
// frame. It returns the header's length, 0 if buf does not hold it whole.
func parseWSHeader(buf []byte) (h ws.Header, n int, err error) {
	if len(buf) < 2 {
		return h, 0, nil
	}
	h.Fin = buf[0]&0x80 != 0
	h.Rsv = (buf[0] & 0x70) >> 4
	h.OpCode = ws.OpCode(buf[0] & 0x0f)
	h.Masked = buf[1]&0x80 != 0
	ext := 0 // bytes of extended length
	switch length := buf[1] & 0x7f; length {
	case 126:
		ext = 2
	case 127:
		ext = 8
	default:
		h.Length = int64(length)
	}
	n = 2 + ext
	if h.Masked {
		n += 4
	}
	if len(buf) < n {
		return h, 0, nil
	}
	switch ext {
	case 2:
		h.Length = int64(binary.BigEndian.Uint16(buf[2:]))
	case 8:
		if buf[2]&0x80 != 0 {
			return h, n, ws.ErrHeaderLengthMSB
		}
		h.Length = int64(binary.BigEndian.Uint64(buf[2:]))
	}
	if h.Masked {
		copy(h.Mask[:], buf[2+ext:n])
	}
	return h, n, nil
}

// appendWSHeader appends the header of an unmasked, final frame of op with
// a payload of n bytes: the server's frames are never fragmented.
func appendWSHeader(dst []byte, op ws.OpCode, n int) []byte {
	b0 := 0x80 | byte(op)
	switch {
	case n < 126:
		return append(dst, b0, byte(n))
	case n <= 0xffff:
		return binary.BigEndian.AppendUint16(append(dst, b0, 126), uint16(n))
	}
	return binary.BigEndian.AppendUint64(append(dst, b0, 127), uint64(n))
}

// Package wsconn dials the WebSocket listener of an inboxd gateway
// (docs/protocol.md, "WebSocket") and returns the connection as a net.Conn
// carrying the protocol's byte stream, so that code written for TCP (the Go
// client, tests, bench) runs over WebSocket unchanged: Write sends each
// whole inboxd frame it is given in a binary message of its own, and Read
// returns the payloads of the server's binary messages one after another.
//
// A close frame from the server ends Read with a *CloseError, which
// matches io.EOF for code that only asks whether the stream ended.
//
// It is internal (README, "Layout"): the client side of the public API line
// uses it, but no user outside the module imports it.
package wsconn

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"

	"github.com/inboxd/inboxd/wire"
)

// ErrPartialFrame is returned by Write when what it is given does not end
// on a frame boundary: a message carries exactly one whole frame.
var ErrPartialFrame = errors.New("wsconn: write of a partial frame")

// IsURL reports whether addr is a WebSocket URL (ws:// or wss://) rather
// than a TCP host:port.
func IsURL(addr string) bool {
	return strings.HasPrefix(addr, "ws://") || strings.HasPrefix(addr, "wss://")
}

// CloseError is how the server closed the connection: the close frame's
// code and reason.
type CloseError struct {
	Code   ws.StatusCode
	Reason string
}

func (e *CloseError) Error() string {
	return fmt.Sprintf("wsconn: closed by the server: %d %s", e.Code, e.Reason)
}

// Is makes a close match io.EOF: the stream ended.
func (e *CloseError) Is(target error) bool { return target == io.EOF }

// Conn is a WebSocket connection to the gateway as a byte stream.
type Conn struct {
	net.Conn // the TCP connection under the WebSocket

	wmu sync.Mutex // one writer at a time: Write and the control frames' replies
	rd  *wsutil.Reader
	msg bool // rd is within a message
}

// Options are the handshake's optional parts.
type Options struct {
	// Origin, if set, is sent as the Origin header, as a browser does.
	Origin string
}

// Dial connects to url, a ws:// or wss:// URL (a URL without a path gets
// wire.WSPath), and completes the handshake.
func Dial(ctx context.Context, url string, o Options) (*Conn, error) {
	if i := strings.Index(url, "://"); i >= 0 && !strings.Contains(url[i+3:], "/") {
		url += wire.WSPath
	}
	d := ws.Dialer{Protocols: []string{wire.WSSubprotocol}}
	if o.Origin != "" {
		d.Header = ws.HandshakeHeaderHTTP(http.Header{"Origin": {o.Origin}})
	}
	nc, br, _, err := d.Dial(ctx, url)
	if err != nil {
		return nil, fmt.Errorf("wsconn: dial %s: %w", url, err)
	}
	c := &Conn{Conn: nc}
	var src io.Reader = nc
	if br != nil { // bytes the server sent right behind its handshake
		src = io.MultiReader(br, nc)
	}
	c.rd = &wsutil.Reader{Source: src, State: ws.StateClientSide,
		OnIntermediate: wsutil.ControlFrameHandler(writerFunc(c.writeRaw), ws.StateClientSide)}
	return c, nil
}

// Read reads the payloads of the server's binary messages as one stream.
func (c *Conn) Read(p []byte) (int, error) {
	for {
		if c.msg {
			n, err := c.rd.Read(p)
			if errors.Is(err, io.EOF) {
				c.msg = false
				err = nil
			}
			if n > 0 || err != nil {
				return n, err
			}
			continue
		}
		h, err := c.rd.NextFrame()
		if err != nil {
			return 0, err
		}
		if h.OpCode == ws.OpClose {
			return 0, c.closed()
		}
		if h.OpCode.IsControl() {
			if err := c.rd.OnIntermediate(h, c.rd); err != nil {
				return 0, err
			}
			continue
		}
		if h.OpCode != ws.OpBinary {
			return 0, fmt.Errorf("wsconn: a %v message from the server", h.OpCode)
		}
		c.msg = true
	}
}

// closed reads the server's close frame and answers it, as RFC 6455 asks,
// though the server may have closed its side already.
func (c *Conn) closed() error {
	payload, err := io.ReadAll(c.rd)
	if err != nil {
		return err
	}
	code, reason := ws.ParseCloseFrameData(payload)
	c.wmu.Lock()
	ws.WriteFrame(c.Conn, ws.MaskFrame(ws.NewCloseFrame(ws.NewCloseFrameBody(code, ""))))
	c.wmu.Unlock()
	return &CloseError{Code: code, Reason: reason}
}

// Write sends each frame of p, which must be whole frames, in a binary
// message of its own, all with one write.
func (c *Conn) Write(p []byte) (int, error) {
	var out bytes.Buffer
	for rest := p; len(rest) > 0; {
		if len(rest) < wire.HeaderSize || len(rest) < wire.HeaderSize+int(binary.BigEndian.Uint32(rest)) {
			return 0, ErrPartialFrame
		}
		n := wire.HeaderSize + int(binary.BigEndian.Uint32(rest))
		if err := ws.WriteFrame(&out, ws.MaskFrame(ws.NewBinaryFrame(rest[:n]))); err != nil {
			return 0, err
		}
		rest = rest[n:]
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if _, err := c.Conn.Write(out.Bytes()); err != nil {
		return 0, err
	}
	return len(p), nil
}

// WriteMessage sends p in one message with opcode op, whatever it holds:
// for tests of what the server refuses.
func (c *Conn) WriteMessage(op ws.OpCode, p []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return wsutil.WriteClientMessage(c.Conn, op, p)
}

// WriteFrame sends f as it is, masked as a client's frames must be: for
// tests of fragments and control frames.
func (c *Conn) WriteFrame(f ws.Frame) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return ws.WriteFrame(c.Conn, ws.MaskFrame(f))
}

func (c *Conn) writeRaw(p []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.Conn.Write(p)
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

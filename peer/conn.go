package peer

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/inboxd/inboxd/wire"
	"github.com/inboxd/inboxd/wire/wirepb"
)

// Commands of the transport itself, in 0x8000–0x80FF; the handlers' commands
// start at FirstCommand.
const (
	CmdHello wire.Command = wire.CmdPeerFirst + iota // Hello → HelloReply
	CmdProof                                         // Proof → empty body
	CmdPing                                          // empty → empty, answered by the reader itself
)

// FirstCommand is the first command a Handler may be given; every command
// from it to 0xFFFF is the handlers'. 0x8000–0x80FF are the transport's.
const FirstCommand = wire.CmdPeerFirst + 0x100

// minMaxFrame is the smallest max_frame a node may announce: room for a
// request of a few KiB, so that a tiny value cannot make every call fail.
const minMaxFrame = 4 << 10

// maxSpare bounds the write buffer a connection keeps between writes, so
// that one burst does not pin a large buffer for the connection's life.
const maxSpare = 1 << 20

// readFrame reads the next frame from r, whose buffer must hold maxFrame
// bytes. The body is a copy the caller owns. A stream that ends inside a
// frame is io.ErrUnexpectedEOF; one that ends between frames, io.EOF.
func readFrame(r *bufio.Reader, maxFrame int) (wire.Frame, error) {
	hdr, err := r.Peek(wire.HeaderSize)
	if err != nil {
		return wire.Frame{}, eof(r, err)
	}
	f, n, err := wire.Split(hdr, maxFrame)
	if err != nil {
		return wire.Frame{}, err
	}
	if n == 0 {
		buf, err := r.Peek(wire.HeaderSize + int(binary.BigEndian.Uint32(hdr)))
		if err != nil {
			return wire.Frame{}, eof(r, err)
		}
		if f, n, err = wire.Split(buf, maxFrame); err != nil {
			return wire.Frame{}, err
		}
	}
	f.Body = bytes.Clone(f.Body)
	_, err = r.Discard(n)
	return f, err
}

func eof(r *bufio.Reader, err error) error {
	if err == io.EOF && r.Buffered() > 0 {
		return io.ErrUnexpectedEOF
	}
	return err
}

// appendFrame appends a frame with a raw body.
func appendFrame(dst []byte, cmd wire.Command, flags wire.Flags, id uint32, body []byte) []byte {
	return append(wire.AppendHeader(dst, cmd, flags, id, len(body)), body...)
}

// errorBody encodes an Error body.
func errorBody(code wire.Code, msg string) []byte {
	b, _ := proto.Marshal(&wirepb.Error{Code: uint32(code), Message: msg})
	return b
}

// decodeError decodes an Error body into an *Error.
func decodeError(body []byte) *Error {
	var m wirepb.Error
	if err := proto.Unmarshal(body, &m); err != nil {
		return &Error{Code: wire.CodeInternal, Message: "malformed error body"}
	}
	return &Error{Code: wire.Code(m.Code), Message: m.Message}
}

// conn is one authenticated connection, either side: a reader run by its
// owner and a writer goroutine that sends every frame queued since its last
// write in one write(2).
type conn struct {
	nc           net.Conn
	r            *bufio.Reader
	maxIn        int // frames we accept
	maxOut       int // frames the other side accepts
	writeTimeout time.Duration
	wake         chan struct{} // cap 1: frames are queued
	done         chan struct{} // closed by close

	mu  sync.Mutex
	out []byte
	err error // why the connection closed; nil while open
}

func newConn(nc net.Conn, r *bufio.Reader, maxIn, maxOut int, writeTimeout time.Duration) *conn {
	return &conn{
		nc: nc, r: r, maxIn: maxIn, maxOut: maxOut, writeTimeout: writeTimeout,
		wake: make(chan struct{}, 1), done: make(chan struct{}),
	}
}

// send queues a frame for the writer. It fails with ErrTooLarge if the
// frame exceeds the other side's max_frame, and with the connection's
// error once it is closed.
func (c *conn) send(cmd wire.Command, flags wire.Flags, id uint32, body []byte) error {
	if wire.HeaderSize+len(body) > c.maxOut {
		return fmt.Errorf("%w: %d bytes, at most %d", ErrTooLarge, wire.HeaderSize+len(body), c.maxOut)
	}
	c.mu.Lock()
	if c.err != nil {
		err := c.err
		c.mu.Unlock()
		return err
	}
	c.out = appendFrame(c.out, cmd, flags, id, body)
	c.mu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default:
	}
	return nil
}

// writeLoop sends the queued frames until the connection closes. A write
// that does not finish within writeTimeout (a peer that stopped reading)
// closes the connection.
func (c *conn) writeLoop() {
	var spare []byte
	for {
		select {
		case <-c.wake:
		case <-c.done:
			return
		}
		// Let the goroutines that are ready queue their frames first: under
		// load one write then carries tens of frames instead of two.
		runtime.Gosched()
		c.mu.Lock()
		buf := c.out
		c.out = spare[:0]
		c.mu.Unlock()
		if len(buf) == 0 {
			spare = buf // c.out holds the old spare now: never hand it out twice
			continue
		}
		c.nc.SetWriteDeadline(time.Now().Add(c.writeTimeout))
		if _, err := c.nc.Write(buf); err != nil {
			c.close(fmt.Errorf("write: %w", err))
			return
		}
		if cap(buf) <= maxSpare {
			spare = buf
		}
	}
}

// close closes the connection for err, once; it reports whether this call
// closed it. Frames queued and not yet written are lost.
func (c *conn) close(err error) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return false
	}
	if err == nil {
		err = errors.New("closed")
	}
	c.err = err
	close(c.done)
	c.nc.Close()
	return true
}

// closedErr is why the connection closed, or nil while it is open.
func (c *conn) closedErr() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// closeWith sends an ERROR frame (best effort, within writeTimeout) and
// closes the connection: the other side learns why.
func (c *conn) closeWith(code wire.Code, err error) {
	if c.closedErr() == nil {
		c.nc.SetWriteDeadline(time.Now().Add(c.writeTimeout))
		c.nc.Write(appendFrame(nil, wire.CmdError, 0, 0, errorBody(code, err.Error())))
	}
	c.close(err)
}

// failure is the error a frame-reading failure closes the connection with,
// and the wire code that tells the other side why.
func failure(err error) (wire.Code, error) {
	switch {
	case errors.Is(err, wire.ErrFrameTooLarge):
		return wire.CodeFrameTooLarge, fmt.Errorf("%w: %w", ErrProtocol, err)
	case errors.Is(err, wire.ErrVersion):
		return wire.CodeVersion, fmt.Errorf("%w: %w", ErrProtocol, err)
	}
	return 0, fmt.Errorf("read: %w", err)
}

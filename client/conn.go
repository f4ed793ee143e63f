package client

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/inboxd/inboxd/wire"
	"github.com/inboxd/inboxd/wire/wirepb"
)

// maxPushBacklog bounds the push bytes a connection holds for an
// application that does not keep up. Past it pushes are dropped rather than
// buffered: the client notes the drop and fills the gap with SYNC, so a
// dropped push costs a round trip, never a message.
const maxPushBacklog = 8 << 20

// keepReadBuffer is the largest read buffer kept between frames; a larger
// one, grown for a big SYNC page, is let go.
const keepReadBuffer = 1 << 20

// conn is one TCP connection to the gateway: a reader goroutine that
// matches responses to calls by request id and queues pushes, writes
// serialized by a mutex, and (once authenticated) a heartbeat goroutine.
type conn struct {
	nc           net.Conn
	addr         string // what was dialled
	maxRead      int
	writeTimeout time.Duration
	pushBacklog  int
	onClose      func(*conn) // called when the connection ends (maybe more than once)

	wmu      sync.Mutex
	wbuf     []byte
	maxFrame int // the largest frame the server accepts

	mu         sync.Mutex
	nextID     uint32
	calls      map[uint32]*call // nil once closed
	err        error            // why the connection ended
	pushes     []*wirepb.Entry
	pushBytes  int
	dropped    bool // pushes were dropped since the last takePushes
	typing     []*wirepb.TypingEvent
	keepTyping bool // Config.OnTyping is set

	pushed chan struct{} // a token when pushes wait
	done   chan struct{} // closed when the connection ends
	wg     sync.WaitGroup
}

// call is a request waiting for its response.
type call struct {
	cmd  wire.Command
	resp proto.Message
	done chan error // buffered: the reader never waits for the caller
}

func newConn(nc net.Conn, addr string, cfg *Config, onClose func(*conn)) *conn {
	c := &conn{
		nc:           nc,
		addr:         addr,
		maxRead:      cfg.MaxReadFrame,
		writeTimeout: cfg.WriteTimeout,
		pushBacklog:  cfg.pushBacklog,
		keepTyping:   cfg.OnTyping != nil,
		onClose:      onClose,
		maxFrame:     wire.DefaultMaxFrame,
		calls:        make(map[uint32]*call),
		pushed:       make(chan struct{}, 1),
		done:         make(chan struct{}),
	}
	c.wg.Add(1)
	go c.readLoop()
	return c
}

// authenticated records what AUTH told and starts the heartbeats.
func (c *conn) authenticated(ar *wirepb.AuthResponse) {
	if ar.GetMaxFrame() > 0 {
		c.wmu.Lock()
		c.maxFrame = int(ar.GetMaxFrame())
		c.wmu.Unlock()
	}
	interval := time.Duration(ar.GetHeartbeatMs()) * time.Millisecond
	if interval <= 0 {
		interval = wire.DefaultHeartbeat
	}
	c.wg.Add(1)
	go c.heartbeatLoop(interval)
}

// close ends the connection with err as its cause; calls still waiting
// fail with ErrConnLost. Only the first call has an effect.
func (c *conn) close(err error) {
	// Unpublish first: a request that fails on this connection must find
	// it gone when it retries, not fail again at once in a busy loop.
	if c.onClose != nil {
		c.onClose(c)
	}
	c.mu.Lock()
	if c.calls == nil {
		c.mu.Unlock()
		return
	}
	c.err = err
	calls := c.calls
	c.calls = nil
	c.mu.Unlock()

	c.nc.Close()
	close(c.done)
	lost := connLost(err)
	for _, cl := range calls {
		cl.done <- lost
	}
}

func connLost(cause error) error {
	if errors.Is(cause, ErrConnLost) {
		return cause
	}
	return fmt.Errorf("%w: %w", ErrConnLost, cause)
}

// cause returns why the connection ended, nil while it is open.
func (c *conn) cause() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// wait returns when the connection's goroutines are gone.
func (c *conn) wait() { c.wg.Wait() }

// roundTrip sends a request and waits for its response, decoded into resp.
// An error response returns an *Error. When ctx ends first, the response is
// discarded when it comes.
func (c *conn) roundTrip(ctx context.Context, cmd wire.Command, req, resp proto.Message) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	cl := &call{cmd: cmd, resp: resp, done: make(chan error, 1)}
	c.mu.Lock()
	if c.calls == nil {
		err := c.err
		c.mu.Unlock()
		return connLost(err)
	}
	c.nextID++
	if c.nextID == 0 { // 0 is the id of server-initiated frames
		c.nextID = 1
	}
	id := c.nextID
	c.calls[id] = cl
	c.mu.Unlock()

	if err := c.write(cmd, id, req); err != nil {
		c.forget(id)
		return err
	}
	select {
	case err := <-cl.done:
		return err
	case <-ctx.Done():
		if c.forget(id) {
			return ctx.Err()
		}
		// The reader has taken the call and is decoding into resp: wait,
		// so that resp is not written after we return.
		return <-cl.done
	}
}

// forget removes a call and reports whether it was still waiting.
func (c *conn) forget(id uint32) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.calls[id]; !ok {
		return false
	}
	delete(c.calls, id)
	return true
}

// write sends one request frame. A frame the server would refuse is an
// error here; a failed write ends the connection, since a partly written
// frame leaves the stream unusable.
func (c *conn) write(cmd wire.Command, id uint32, req proto.Message) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	buf, err := wire.AppendFrame(c.wbuf[:0], cmd, 0, id, req)
	if err != nil {
		return fmt.Errorf("client: %w", err)
	}
	if len(buf) > c.maxFrame {
		return &Error{Code: wire.CodeFrameTooLarge, Message: fmt.Sprintf("%v request of %d bytes exceeds the server's max frame of %d (not sent)", cmd, len(buf), c.maxFrame)}
	}
	c.wbuf = buf
	if err := c.nc.SetWriteDeadline(time.Now().Add(c.writeTimeout)); err != nil {
		c.close(fmt.Errorf("client: set write deadline: %w", err))
		return connLost(err)
	}
	if _, err := c.nc.Write(buf); err != nil {
		err = fmt.Errorf("client: write %v: %w", cmd, err)
		c.close(err)
		return connLost(err)
	}
	return nil
}

func (c *conn) readLoop() {
	defer c.wg.Done()
	r := bufio.NewReaderSize(c.nc, 64<<10)
	var buf []byte
	for {
		f, err := readFrame(r, &buf, c.maxRead)
		if err == nil {
			err = c.handle(f)
		}
		if err != nil {
			c.close(err)
			return
		}
		if cap(buf) > keepReadBuffer {
			buf = nil
		}
	}
}

// readFrame reads the next frame into *buf, which it grows as needed. The
// frame aliases *buf until the next call.
func readFrame(r *bufio.Reader, buf *[]byte, maxFrame int) (wire.Frame, error) {
	hdr, err := r.Peek(wire.HeaderSize)
	if err != nil {
		if errors.Is(err, io.EOF) && len(hdr) == 0 {
			return wire.Frame{}, fmt.Errorf("client: server closed the connection: %w", err)
		}
		return wire.Frame{}, fmt.Errorf("client: read: %w", err)
	}
	// Split checks version and size from the header alone.
	if _, _, err := wire.Split(hdr, maxFrame); err != nil {
		return wire.Frame{}, fmt.Errorf("client: read: %w", err)
	}
	n := wire.HeaderSize + int(binary.BigEndian.Uint32(hdr))
	if cap(*buf) < n {
		*buf = make([]byte, n)
	}
	b := (*buf)[:n]
	if _, err := io.ReadFull(r, b); err != nil {
		return wire.Frame{}, fmt.Errorf("client: read: %w", err)
	}
	f, _, err := wire.Split(b, maxFrame)
	return f, err
}

// handle dispatches one frame from the server. An error ends the
// connection.
func (c *conn) handle(f wire.Frame) error {
	switch {
	case f.Flags&wire.FlagResponse != 0:
		return c.complete(f)
	case f.Command == wire.CmdPush:
		return c.queuePush(f.Body)
	case f.Command == wire.CmdTyping:
		return c.queueTyping(f.Body)
	case f.Command == wire.CmdError:
		var b wirepb.Error
		if err := wire.Decode(f.Body, &b); err != nil {
			return fmt.Errorf("%w: ERROR frame: %w", ErrProtocol, err)
		}
		// The server closes next; this is the reason to report.
		return errorFromBody(&b)
	}
	return nil // a server-initiated frame of a newer protocol: ignore it
}

// complete hands a response to its call.
func (c *conn) complete(f wire.Frame) error {
	c.mu.Lock()
	cl, ok := c.calls[f.RequestID]
	delete(c.calls, f.RequestID)
	c.mu.Unlock()
	if !ok {
		return nil // its caller gave up
	}
	if f.Command != cl.cmd {
		err := fmt.Errorf("%w: %v response to %v request %d", ErrProtocol, f.Command, cl.cmd, f.RequestID)
		cl.done <- err
		return err
	}
	if f.Flags&wire.FlagError != 0 {
		var b wirepb.Error
		if err := wire.Decode(f.Body, &b); err != nil {
			cl.done <- fmt.Errorf("%w: %v error response: %w", ErrProtocol, f.Command, err)
			return nil
		}
		cl.done <- errorFromBody(&b)
		return nil
	}
	if err := wire.Decode(f.Body, cl.resp); err != nil {
		cl.done <- fmt.Errorf("%w: %v response: %w", ErrProtocol, f.Command, err)
		return nil
	}
	cl.done <- nil
	return nil
}

// queuePush decodes a push for the sync loop, or drops it when the backlog
// is full (the sync loop then resyncs).
func (c *conn) queuePush(body []byte) error {
	c.mu.Lock()
	full := c.pushBytes+len(body) > c.pushBacklog
	if full {
		c.dropped = true
	}
	c.mu.Unlock()
	if !full {
		var p wirepb.Push
		if err := wire.Decode(body, &p); err != nil {
			return fmt.Errorf("%w: PUSH: %w", ErrProtocol, err)
		}
		c.mu.Lock()
		c.pushes = append(c.pushes, p.Entries...)
		c.pushBytes += len(body)
		c.mu.Unlock()
	}
	select {
	case c.pushed <- struct{}{}:
	default:
	}
	return nil
}

// maxTypingBacklog bounds the typing events a connection holds for an
// application that does not take them; later ones are dropped (a typing
// event is renewed every few seconds while its user types).
const maxTypingBacklog = 256

// queueTyping decodes a typing event for the sync loop to deliver.
func (c *conn) queueTyping(body []byte) error {
	if !c.keepTyping {
		return nil
	}
	ev := new(wirepb.TypingEvent)
	if err := wire.Decode(body, ev); err != nil {
		return fmt.Errorf("%w: TYPING event: %w", ErrProtocol, err)
	}
	c.mu.Lock()
	if len(c.typing) < maxTypingBacklog {
		c.typing = append(c.typing, ev)
	}
	c.mu.Unlock()
	select {
	case c.pushed <- struct{}{}:
	default:
	}
	return nil
}

// takeTyping returns the queued typing events.
func (c *conn) takeTyping() []*wirepb.TypingEvent {
	c.mu.Lock()
	defer c.mu.Unlock()
	evs := c.typing
	c.typing = nil
	return evs
}

// takePushes returns the queued push entries and whether any were dropped.
func (c *conn) takePushes() ([]*wirepb.Entry, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	es, dropped := c.pushes, c.dropped
	c.pushes, c.pushBytes, c.dropped = nil, 0, false
	return es, dropped
}

// heartbeatLoop sends a HEARTBEAT every interval, which keeps the server's
// idle timer from firing, and closes the connection when one goes
// unanswered for an interval: the server or the path to it is gone.
func (c *conn) heartbeatLoop(interval time.Duration) {
	defer c.wg.Done()
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-c.done:
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), interval)
		err := c.roundTrip(ctx, wire.CmdHeartbeat, &wirepb.Empty{}, &wirepb.Empty{})
		cancel()
		var e *Error
		if err != nil && !errors.As(err, &e) { // any response proves the server alive
			c.close(fmt.Errorf("client: heartbeat: %w", err))
			return
		}
	}
}

package bench

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/inboxd/inboxd/internal/backoff"
	"github.com/inboxd/inboxd/internal/wsconn"
	"github.com/inboxd/inboxd/wire"
)

// device is one simulated device: one TCP connection at a time, kept up
// across server restarts and churn, applying its user's inbox by the
// client sync algorithm of docs/protocol.md. It keeps of the stream only
// its last seq and a digest, which the verifier compares with the inbox
// read back at the end.
type device struct {
	r     *runner
	user  *user
	name  string
	idx   int
	token string

	mu      sync.Mutex
	nc      net.Conn // nil while offline
	nextID  uint32
	pending map[uint32]*request
	wbuf    []byte
	away    time.Time     // churned: stay offline until then
	wake    chan struct{} // closed to end an away period early
	left    bool          // goAway closed the connection: no backoff before the next
	online  atomic.Bool

	node atomic.Pointer[string] // the address of the node of the latest connection

	// By the goroutine running the device.
	everConnected bool
	next          string // the node to connect to first: the last that answered, or a REDIRECT's
	turn          int    // moves the device along the runner's addresses after a failed dial

	// The stream state, changed by the goroutine reading the connection
	// and, at the end of the run, by catchUp. Lock order: st, then mu.
	st      sync.Mutex
	last    uint64
	digest  uint64
	applied uint64
	syncing int     // SYNC chains in flight
	held    []entry // pushes that arrived during a SYNC, taken afterwards
}

type user struct {
	id      uint64
	devices []*device
	offline atomic.Bool // kept offline until the end of the load
}

// reqKind says what a pending request was for.
type reqKind uint8

const (
	reqSend reqKind = iota + 1
	reqSync
	reqMarkRead
	reqCall // a blocking call: the response body goes to done
)

type request struct {
	kind    reqKind
	send    int   // reqSend: the model's handle
	attempt int   // reqSend: the how-manieth attempt of the send (from 1)
	start   int64 // ns since the run's start
	conv    uint64
	convSeq uint64
	waiter  chan error // reqSync: signalled when the chain ends
	done    chan callResult
}

type callResult struct {
	body []byte
	err  error
}

// errOffline is returned by requests on a device with no connection.
var errOffline = errors.New("bench: device offline")

// serverError is an error response.
type serverError struct {
	code         wire.Code
	retryAfterMs uint64
}

func (e *serverError) Error() string { return fmt.Sprintf("server error code %d", e.code) }

// reconnectMin and reconnectMax bound a device's wait before connecting
// again after a failed connect or a close by the server. Shorter than
// docs/protocol.md's example (200 ms to 30 s): a restarted server should
// see its clients back quickly, and the run is bounded anyway.
const reconnectMin, reconnectMax = 100 * time.Millisecond, time.Second

// run keeps the device connected until ctx ends. After a close by the
// server or a failed connect it backs off (at least the server's
// retry_after_ms), as docs/protocol.md asks of a client; it reconnects at
// once only to follow a REDIRECT, or after the bench closed the connection
// itself (churn, the storm).
func (d *device) run(ctx context.Context) {
	wait := backoff.Policy{Min: reconnectMin, Max: reconnectMax}
	failures := 0
	for ctx.Err() == nil {
		if !d.waitAway(ctx) {
			return
		}
		nc, early, err := d.connect(ctx)
		if err == nil {
			up := time.Now()
			for _, b := range early {
				if err = d.handle(wire.Header{Command: wire.CmdPush}, b); err != nil {
					break
				}
			}
			if err == nil {
				err = d.serve(nc)
			}
			d.drop(err)
			switch {
			case d.takeLeft() || codeOf(err) == wire.CodeRedirect:
				failures = 0
				continue
			case codeOf(err) == wire.CodeShuttingDown:
				d.moveOn() // it would refuse the device until it is gone
			}
			// A connection that stayed up a while starts the backoff
			// anew, as the Go client's does.
			if time.Since(up) > reconnectMax {
				failures = 0
			}
		} else {
			d.r.stats.connectFailures.Add(1)
		}
		if !backoff.Sleep(ctx, max(wait.Delay(failures), retryWait(err, 0))) {
			return
		}
		failures++
	}
}

// takeLeft reports, once, whether goAway closed the connection.
func (d *device) takeLeft() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	left := d.left
	d.left = false
	return left
}

// moveOn makes the next connect try the next of the runner's addresses
// instead of the node that answered last.
func (d *device) moveOn() {
	d.next = ""
	d.turn++
}

// codeOf returns the code of a server error, 0 for any other error.
func codeOf(err error) wire.Code {
	var se *serverError
	if errors.As(err, &se) {
		return se.code
	}
	return 0
}

// retryWait is how long to wait before trying again what err refused: the
// server's retry_after_ms, and at least floor.
func retryWait(err error, floor time.Duration) time.Duration {
	var se *serverError
	if errors.As(err, &se) {
		return max(time.Duration(se.retryAfterMs)*time.Millisecond, floor)
	}
	return floor
}

// nodeAddr returns the address of the node the device connected to last
// ("" before its first connection).
func (d *device) nodeAddr() string {
	if a := d.node.Load(); a != nil {
		return *a
	}
	return ""
}

// waitAway waits while the device or its user is to stay offline.
func (d *device) waitAway(ctx context.Context) bool {
	for {
		d.mu.Lock()
		until, wake := d.away, d.wake
		d.mu.Unlock()
		offline := d.user.offline.Load()
		if !offline && !time.Now().Before(until) {
			return true
		}
		var timer <-chan time.Time
		if !offline {
			timer = time.After(time.Until(until))
		}
		select {
		case <-ctx.Done():
			return false
		case <-wake:
		case <-timer:
		}
	}
}

// goAway closes the connection and keeps the device offline for dur (0:
// it reconnects at once, unless its user is offline), or until wakeUp.
func (d *device) goAway(dur time.Duration) {
	d.mu.Lock()
	d.away = time.Now().Add(dur)
	nc := d.nc
	d.left = d.left || nc != nil
	d.mu.Unlock()
	if nc != nil {
		nc.Close()
	}
}

// wakeUp ends an away period.
func (d *device) wakeUp() {
	d.mu.Lock()
	d.away = time.Time{}
	close(d.wake)
	d.wake = make(chan struct{})
	d.mu.Unlock()
}

// connect dials, authenticates and starts the catch-up SYNC. It returns
// the bodies of pushes that came before the AUTH response. It tries the
// node that answered last (or that a REDIRECT named), else the runner's
// addresses in turn from the device's own, one per failed dial, and
// follows REDIRECT answers to AUTH.
func (d *device) connect(ctx context.Context) (nc net.Conn, early [][]byte, err error) {
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	// At most a few connects at once: thousands of simultaneous handshakes
	// overflow the listen backlog of loopback and cost retries.
	select {
	case d.r.dials <- struct{}{}:
		defer func() { <-d.r.dials }()
	case <-dctx.Done():
		return nil, nil, dctx.Err()
	}
	addr := d.next
	if addr == "" {
		addr = d.r.addrs[(d.idx+d.turn)%len(d.r.addrs)]
	}
	for hops := 0; ; hops++ {
		var redirect string
		nc, early, redirect, err = d.auth(dctx, addr)
		switch {
		case err == nil:
			d.next = addr
			return nc, early, nil
		case redirect == "":
			return nil, nil, err
		case hops == maxRedirects:
			return nil, nil, fmt.Errorf("bench: %d redirects in a row, the last from %s to %s: %w", hops+1, addr, redirect, err)
		}
		addr = redirect
	}
}

// maxRedirects bounds the redirects a device follows in a row, as the Go
// client does (docs/protocol.md, "Redirects").
const maxRedirects = 5

// auth connects to addr, authenticates and starts the catch-up SYNC. When
// AUTH is answered REDIRECT, it returns the address named.
func (d *device) auth(dctx context.Context, addr string) (nc net.Conn, early [][]byte, redirect string, err error) {
	if wsconn.IsURL(addr) {
		nc, err = wsconn.Dial(dctx, addr, wsconn.Options{})
	} else {
		var dialer net.Dialer
		nc, err = dialer.DialContext(dctx, "tcp", addr)
	}
	if err != nil {
		d.moveOn()
		return nil, nil, "", err
	}
	// AUTH, answered before anything else is sent: its head seq tells
	// whether the server lost entries this device already applied.
	frame := wire.AppendHeader(nil, wire.CmdAuth, 0, 1, 0)
	frame = appendAuth(frame, d.token)
	nc.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := nc.Write(frame); err != nil {
		nc.Close()
		return nil, nil, "", err
	}
	// The gateway may push the user's new entries before it writes the
	// AUTH response: keep them for after the catch-up SYNC has started.
	var h wire.Header
	var body []byte
	for {
		h, body, err = readFrame(nc, nil)
		if err != nil {
			nc.Close()
			return nil, nil, "", err
		}
		if h.Command != wire.CmdPush || h.Flags != 0 || len(early) >= 1000 {
			break
		}
		early = append(early, body)
	}
	if h.Command != wire.CmdAuth || h.Flags&wire.FlagResponse == 0 {
		nc.Close()
		return nil, nil, "", fmt.Errorf("bench: %v frame (flags %d) where the AUTH response belongs", h.Command, h.Flags)
	}
	if h.Flags&wire.FlagError != 0 {
		code, after, to := parseError(body)
		nc.Close()
		d.r.stats.countError(code)
		if wire.Code(code) != wire.CodeRedirect {
			// UNAVAILABLE (no node serves the user for now), SHUTTING_DOWN
			// …: the next attempt, after a backoff, goes to another node
			// of the list (docs/protocol.md, "Redirects").
			d.moveOn()
			to = ""
		}
		return nil, nil, to, &serverError{code: wire.Code(code), retryAfterMs: after}
	}
	head, err := firstVarint(body, 3)
	if err != nil {
		nc.Close()
		return nil, nil, "", err
	}
	nc.SetDeadline(time.Time{})
	d.st.Lock()
	defer d.st.Unlock()
	if head < d.last {
		d.r.violation(Violation{Kind: ViolationSeqGap, User: d.user.id, Device: d.name,
			Detail: fmt.Sprintf("AUTH says head seq %d, below the %d entries the device applied: the server lost entries", head, d.last)})
	}
	d.mu.Lock()
	d.nc = nc
	d.nextID = 1
	d.pending = make(map[uint32]*request)
	d.mu.Unlock()
	d.node.Store(&addr)
	d.online.Store(true)
	if d.r.connected(d) {
		d.r.stats.reconnects.Add(1)
	}
	d.startSync(nil)
	return nc, early, "", nil
}

func appendAuth(frame []byte, tok string) []byte {
	// AuthRequest{token = 1}: a tag and the string.
	body := append([]byte{0x0a}, binary.AppendUvarint(nil, uint64(len(tok)))...)
	body = append(body, tok...)
	binary.BigEndian.PutUint32(frame[:4], uint32(len(body)))
	return append(frame, body...)
}

// drop forgets the connection after it failed: what was in flight has an
// unknown outcome.
func (d *device) drop(cause error) {
	d.online.Store(false)
	d.mu.Lock()
	nc, pending := d.nc, d.pending
	d.nc, d.pending = nil, nil
	d.mu.Unlock()
	if nc != nil {
		nc.Close()
	}
	for _, req := range pending {
		d.fail(req, cause)
	}
	d.st.Lock()
	d.held = d.held[:0]
	d.syncing = 0
	d.st.Unlock()
}

// fail settles a request whose answer will never come.
func (d *device) fail(req *request, cause error) {
	switch req.kind {
	case reqSend:
		d.r.retry(req.send, req.attempt)
	case reqMarkRead:
		d.r.marksInFlight.Add(-1)
		d.r.model.MarkRead(d.user.id, req.conv, req.convSeq, 0, false)
	case reqSync:
		if req.waiter != nil {
			req.waiter <- fmt.Errorf("%w: %v", errOffline, cause)
		}
	case reqCall:
		req.done <- callResult{err: fmt.Errorf("%w: %v", errOffline, cause)}
	}
}

// write sends one request frame whose body is appended by body. It
// returns errOffline when the device has no connection.
func (d *device) write(cmd wire.Command, req *request, body func([]byte) []byte) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.nc == nil {
		return errOffline
	}
	id := d.nextID
	d.nextID++
	if d.nextID == 0 {
		d.nextID = 1
	}
	b := wire.AppendHeader(d.wbuf[:0], cmd, 0, id, 0)
	b = body(b)
	binary.BigEndian.PutUint32(b[:4], uint32(len(b)-wire.HeaderSize))
	d.wbuf = b
	d.pending[id] = req
	d.nc.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := d.nc.Write(b); err != nil {
		delete(d.pending, id)
		d.nc.Close() // the reader sees it and drops the connection
		return fmt.Errorf("%w: %v", errOffline, err)
	}
	return nil
}

// call makes a blocking request and returns the response body.
func (d *device) call(ctx context.Context, cmd wire.Command, body func([]byte) []byte) ([]byte, error) {
	done := make(chan callResult, 1)
	if err := d.write(cmd, &request{kind: reqCall, done: done}, body); err != nil {
		return nil, err
	}
	select {
	case res := <-done:
		return res.body, res.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// startSync sends SYNC after the last applied seq; waiter, if not nil,
// hears when the chain of pages ends. d.st is held.
func (d *device) startSync(waiter chan error) {
	d.syncing++
	after := d.last
	err := d.write(wire.CmdSync, &request{kind: reqSync, waiter: waiter}, func(b []byte) []byte {
		return appendVarintFields(b, after, wire.MaxSyncLimit)
	})
	if err != nil {
		d.syncing--
		if waiter != nil {
			waiter <- err
		}
	}
}

// serve reads frames until the connection fails.
func (d *device) serve(nc net.Conn) error {
	br := bufio.NewReaderSize(nc, 32<<10)
	buf := make([]byte, 0, 4096)
	for {
		h, body, err := readFrame(br, buf)
		if err != nil {
			return err
		}
		buf = body[:0]
		if err := d.handle(h, body); err != nil {
			return err
		}
	}
}

// readFrame reads one frame into buf (grown as needed).
func readFrame(r io.Reader, buf []byte) (wire.Header, []byte, error) {
	var hdr [wire.HeaderSize]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return wire.Header{}, nil, err
	}
	h := wire.Header{
		Length:    binary.BigEndian.Uint32(hdr[0:4]),
		Version:   hdr[4],
		Flags:     wire.Flags(hdr[5]),
		Command:   wire.Command(binary.BigEndian.Uint16(hdr[6:8])),
		RequestID: binary.BigEndian.Uint32(hdr[8:12]),
	}
	if h.Version != wire.Version {
		return h, nil, fmt.Errorf("bench: %w: %d", wire.ErrVersion, h.Version)
	}
	if int64(h.Length)+wire.HeaderSize > 4*wire.DefaultMaxFrame {
		return h, nil, fmt.Errorf("bench: %w: %d bytes", wire.ErrFrameTooLarge, h.Length)
	}
	n := int(h.Length)
	if cap(buf) < n {
		buf = make([]byte, n)
	}
	buf = buf[:n]
	if _, err := io.ReadFull(r, buf); err != nil {
		return h, nil, err
	}
	return h, buf, nil
}

func (d *device) handle(h wire.Header, body []byte) error {
	switch {
	case h.Command == wire.CmdPush && h.Flags == 0:
		now := d.r.now()
		d.st.Lock()
		defer d.st.Unlock()
		_, _, err := parseEntries(body, func(e entry) { d.pushed(&e, now) })
		return err
	case h.Command == wire.CmdError && h.Flags == 0:
		code, after, to := parseError(body)
		d.r.stats.countError(code)
		if wire.Code(code) == wire.CodeRedirect {
			d.next = to // the node that serves the user now
		}
		return &serverError{code: wire.Code(code), retryAfterMs: after}
	case h.Flags&wire.FlagResponse == 0:
		return nil
	}
	d.mu.Lock()
	req := d.pending[h.RequestID]
	delete(d.pending, h.RequestID)
	d.mu.Unlock()
	if req == nil {
		return nil // answered after a timeout gave up on it
	}
	if h.Flags&wire.FlagError != 0 {
		code, after, _ := parseError(body)
		d.r.stats.countError(code)
		se := &serverError{code: wire.Code(code), retryAfterMs: after}
		d.failed(req, se)
		if se.code == wire.CodeShuttingDown {
			// The node is stopping and refuses every request until it
			// closes: leave it, to retry on a new connection later
			// (docs/protocol.md, "Errors").
			return se
		}
		return nil
	}
	switch req.kind {
	case reqSend:
		a, err := parseSendAck(body)
		if err != nil {
			return err
		}
		d.r.acked(d, req, a)
	case reqMarkRead:
		d.r.marksInFlight.Add(-1)
		rs, err := firstVarint(body, 1)
		if err != nil {
			return err
		}
		d.r.model.MarkRead(d.user.id, req.conv, req.convSeq, rs, true)
	case reqSync:
		d.st.Lock()
		defer d.st.Unlock()
		return d.syncPage(req, body)
	case reqCall:
		req.done <- callResult{body: append([]byte(nil), body...)}
	}
	return nil
}

// failed settles a request answered with an error.
func (d *device) failed(req *request, err *serverError) {
	switch req.kind {
	case reqSend:
		if err.code.Retryable() {
			d.r.retryAfter(req.send, req.attempt, retryWait(err, 0))
		} else {
			d.r.model.Refuse(req.send)
		}
	case reqMarkRead:
		d.r.marksInFlight.Add(-1)
		// Refused for good: not moved. Retryable: it may have been applied.
		d.r.model.MarkRead(d.user.id, req.conv, req.convSeq, 0, !err.code.Retryable())
	case reqSync:
		if err.code == wire.CodeShuttingDown {
			// The connection is left (handle): drop ends its chains,
			// and the next connection's catch-up SYNC takes over.
			if req.waiter != nil {
				req.waiter <- err
			}
			return
		}
		d.resyncAfter(req.waiter, retryWait(err, minRetryWait))
	case reqCall:
		req.done <- callResult{err: err}
	}
}

// resyncAfter goes on with a SYNC chain refused by a retryable error,
// after wait, on the same connection. The chain stays counted meanwhile,
// so that pushes are held. If the connection is dropped first, drop has
// ended its chains, and the next connection's catch-up SYNC takes over.
func (d *device) resyncAfter(waiter chan error, wait time.Duration) {
	d.mu.Lock()
	nc := d.nc
	d.mu.Unlock()
	time.AfterFunc(wait, func() {
		d.st.Lock()
		defer d.st.Unlock()
		d.mu.Lock()
		same := nc != nil && d.nc == nc
		d.mu.Unlock()
		if !same {
			if waiter != nil {
				waiter <- errOffline
			}
			return
		}
		d.syncing--
		d.startSync(waiter)
	})
}

// pushed takes a pushed entry by rules 2–5 of the sync algorithm.
func (d *device) pushed(e *entry, now int64) {
	d.r.stats.pushed.Add(1)
	if e.sentAt >= 0 {
		d.r.hists.delivery.record(d.idx, now-e.sentAt)
	}
	switch {
	case d.syncing > 0:
		d.held = append(d.held, *e)
		d.held[len(d.held)-1].clientMsgID = nil
	case e.seq == d.last+1:
		d.apply(e)
	case e.seq > d.last+1:
		d.r.stats.gapSyncs.Add(1)
		d.held = append(d.held, *e)
		d.held[len(d.held)-1].clientMsgID = nil
		d.startSync(nil)
	}
}

func (d *device) apply(e *entry) {
	d.last = e.seq
	d.digest = Digest(d.digest, e.seq, e.conv, e.convSeq, e.msgID, e.kind)
	d.applied++
}

// syncPage applies a SYNC page and continues the chain, or ends it.
func (d *device) syncPage(req *request, body []byte) error {
	var bad error
	_, more, err := parseEntries(body, func(e entry) {
		switch {
		case e.seq <= d.last: // another chain applied it
		case e.seq == d.last+1:
			d.r.stats.synced.Add(1)
			d.apply(&e)
		case bad == nil:
			bad = fmt.Errorf("SYNC page skips from seq %d to %d", d.last, e.seq)
		}
	})
	if err != nil {
		return err
	}
	if bad != nil {
		d.r.violation(Violation{Kind: ViolationSeqGap, User: d.user.id, Device: d.name, Detail: bad.Error()})
		return bad
	}
	d.syncing--
	if more {
		d.startSync(req.waiter)
		return nil
	}
	if req.waiter != nil {
		req.waiter <- nil
	}
	if d.syncing == 0 {
		held := d.held
		d.held = d.held[:0]
		for i := range held {
			e := &held[i]
			switch {
			case e.seq == d.last+1:
				d.apply(e)
			case e.seq > d.last+1 && d.syncing == 0:
				// A SYNC made after a push of seq N returns N
				// (docs/protocol.md): this one did not.
				d.r.violation(Violation{Kind: ViolationSeqGap, User: d.user.id, Device: d.name,
					Detail: fmt.Sprintf("pushed seq %d, but a SYNC made after the push ended at seq %d", e.seq, d.last)})
			}
		}
	}
	return nil
}

// catchUp SYNCs until has_more is false and waits for it: afterwards the
// device has applied every entry stored before the call.
func (d *device) catchUp(ctx context.Context) error {
	w := make(chan error, 1)
	d.st.Lock()
	d.startSync(w)
	d.st.Unlock()
	select {
	case err := <-w:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

package bench

import (
	"context"
	"encoding/binary"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/panjf2000/gnet/v2"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/inboxd/inboxd/token"
	"github.com/inboxd/inboxd/wire"
	"github.com/inboxd/inboxd/wire/wirepb"
)

// ServeBare runs the baseline server on addr until ctx ends: a bare gnet
// server that speaks just enough of the protocol for the load generator —
// AUTH (tokens checked), CREATE_GROUP, SEND (an ack, and a PUSH of one
// entry to every connection of every member), SYNC (an empty page: nothing
// is stored), MARK_READ, CONVERSATIONS and HEARTBEAT — all from the event
// loop, with no storage, no durability and no validation. Driven by the
// same generator as inboxd, it shows what the machine, loopback TCP and the
// generator allow, so that inboxd's figures can be read as a ratio.
//
// It logs "inboxd: ready" when it listens, as inboxd does, so that Run can
// start it as a child process in place of inboxd (ServerConfig.Bare).
func ServeBare(ctx context.Context, addr string, secret []byte, log *slog.Logger) error {
	b := &bare{secret: secret, users: make(map[uint64]*bareUser), groups: make(map[uint64]*bareGroup), next: 1 << 40,
		dirty: make(map[*bareConn]struct{}), kick: make(chan struct{}, 1)}
	flushed := make(chan struct{})
	fctx, stopFlush := context.WithCancel(ctx)
	defer func() {
		stopFlush()
		<-flushed
	}()
	go func() {
		defer close(flushed)
		b.flushLoop(fctx)
	}()
	done := make(chan error, 1)
	booted := make(chan struct{})
	b.booted = booted
	go func() {
		done <- gnet.Run(b, "tcp://"+addr, gnet.WithMulticore(true), gnet.WithTCPNoDelay(gnet.TCPNoDelay))
	}()
	select {
	case err := <-done:
		return fmt.Errorf("bench: bare server: %w", err)
	case <-booted:
	}
	log.Info("inboxd: ready", "listen", addr, "server", "bare")
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
	}
	b.eng.Stop(context.Background())
	return <-done
}

type bare struct {
	gnet.BuiltinEventEngine
	eng    gnet.Engine
	booted chan struct{}
	secret []byte

	kick chan struct{} // a push is waiting for flushLoop

	mu     sync.Mutex // everything below; the event loops run concurrently
	users  map[uint64]*bareUser
	groups map[uint64]*bareGroup
	next   uint64                 // ids of groups and messages
	dirty  map[*bareConn]struct{} // connections with pushes to write
}

type bareUser struct {
	seq   uint64
	conns []*bareConn
}

// bareConn is an authenticated connection and the pushes waiting for it.
type bareConn struct {
	c    gnet.Conn
	user uint64
	out  []byte
}

// flushLoop writes the waiting pushes, all of one connection in one
// AsyncWrite, as the gateway writes a user's entries of a group commit.
// While it writes, more pushes gather: the busier, the larger the writes.
func (b *bare) flushLoop(ctx context.Context) {
	var ready []*bareConn
	var bufs [][]byte
	for {
		select {
		case <-ctx.Done():
			return
		case <-b.kick:
		}
		b.mu.Lock()
		for bc := range b.dirty {
			ready = append(ready, bc)
			bufs = append(bufs, bc.out)
			bc.out = nil
		}
		clear(b.dirty)
		b.mu.Unlock()
		for i, bc := range ready {
			bc.c.AsyncWrite(bufs[i], nil)
		}
		ready, bufs = ready[:0], bufs[:0]
	}
}

type bareGroup struct {
	seq     uint64
	members []uint64
}

func (b *bare) OnBoot(eng gnet.Engine) gnet.Action {
	b.eng = eng
	close(b.booted)
	return gnet.None
}

func (b *bare) OnClose(c gnet.Conn, _ error) gnet.Action {
	bc, ok := c.Context().(*bareConn)
	if !ok {
		return gnet.None
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.dirty, bc)
	if u := b.users[bc.user]; u != nil {
		for i, x := range u.conns {
			if x == bc {
				u.conns = append(u.conns[:i], u.conns[i+1:]...)
				break
			}
		}
	}
	return gnet.None
}

func (b *bare) OnTraffic(c gnet.Conn) gnet.Action {
	for {
		buf, _ := c.Peek(c.InboundBuffered())
		f, n, err := wire.Split(buf, wire.DefaultMaxFrame)
		if err != nil {
			return gnet.Close
		}
		if n == 0 {
			return gnet.None
		}
		out, act := b.handle(c, f)
		c.Discard(n)
		if out != nil {
			c.Write(out)
		}
		if act != gnet.None {
			return act
		}
	}
}

func (b *bare) user(id uint64) *bareUser {
	u := b.users[id]
	if u == nil {
		u = &bareUser{}
		b.users[id] = u
	}
	return u
}

func (b *bare) handle(c gnet.Conn, f wire.Frame) ([]byte, gnet.Action) {
	respond := func(m proto.Message) []byte {
		out, _ := wire.AppendFrame(nil, f.Command, wire.FlagResponse, f.RequestID, m)
		return out
	}
	bc, authed := c.Context().(*bareConn)
	if f.Command == wire.CmdAuth {
		var req wirepb.AuthRequest
		proto.Unmarshal(f.Body, &req)
		cl, err := token.Verify(b.secret, req.Token, time.Now())
		if err != nil {
			out, _ := wire.AppendFrame(nil, f.Command, wire.FlagResponse|wire.FlagError, f.RequestID,
				&wirepb.Error{Code: uint32(wire.CodeUnauthenticated)})
			return out, gnet.Close
		}
		bc = &bareConn{c: c, user: cl.User}
		c.SetContext(bc)
		b.mu.Lock()
		u := b.user(cl.User)
		u.conns = append(u.conns, bc)
		head := u.seq
		b.mu.Unlock()
		return respond(&wirepb.AuthResponse{UserId: cl.User, DeviceId: cl.Device, HeadSeq: head,
			HeartbeatMs: 30000, ServerTimeMs: time.Now().UnixMilli(), MaxFrame: wire.DefaultMaxFrame}), gnet.None
	}
	if !authed {
		return nil, gnet.Close
	}
	uid := bc.user
	switch f.Command {
	case wire.CmdSend:
		return b.send(uid, f), gnet.None
	case wire.CmdCreateGroup:
		var req wirepb.CreateGroupRequest
		proto.Unmarshal(f.Body, &req)
		b.mu.Lock()
		b.next++
		g := &bareGroup{members: append([]uint64{uid}, req.Members...)}
		id := b.next
		b.groups[id] = g
		b.mu.Unlock()
		return respond(&wirepb.CreateGroupResponse{Group: &wirepb.Group{Id: id, Owner: uid}}), gnet.None
	case wire.CmdSync:
		b.mu.Lock()
		head := b.user(uid).seq
		b.mu.Unlock()
		return respond(&wirepb.SyncResponse{HeadSeq: head}), gnet.None
	case wire.CmdMarkRead:
		var req wirepb.MarkReadRequest
		proto.Unmarshal(f.Body, &req)
		return respond(&wirepb.MarkReadResponse{ReadSeq: req.ConvSeq}), gnet.None
	default: // HEARTBEAT, CONVERSATIONS, …: an empty answer
		return respond(nil), gnet.None
	}
}

// send acks a message and queues a push of it for every connection of
// every member: the message encoded once, an entry header per member.
func (b *bare) send(uid uint64, f wire.Frame) []byte {
	var conv, kind uint64
	var cmid, body []byte
	forFields(f.Body, func(num protowire.Number, v uint64, bs []byte) {
		switch num {
		case 1:
			conv = v
		case 2:
			cmid = bs
		case 3:
			kind = v
		case 4:
			body = bs
		}
	})
	now := time.Now().UnixMilli()
	b.mu.Lock()
	defer b.mu.Unlock()
	g := b.groups[conv]
	if g == nil {
		out, _ := wire.AppendFrame(nil, f.Command, wire.FlagResponse|wire.FlagError, f.RequestID,
			&wirepb.Error{Code: uint32(wire.CodeNoGroup)})
		return out
	}
	g.seq++
	b.next++
	msgID := b.next
	msg := appendVarintFields(nil, conv, g.seq, msgID, uid)
	msg = appendBytesField(msg, 5, cmid)
	msg = appendVarintField(msg, 6, kind)
	msg = appendBytesField(msg, 7, body)
	msg = appendVarintField(msg, 8, uint64(now))
	for _, m := range g.members {
		u := b.user(m)
		u.seq++
		if len(u.conns) == 0 {
			continue
		}
		e := appendVarintFields(nil, u.seq, conv, g.seq, msgID, kind)
		e = appendBytesField(e, 6, msg)
		push := appendBytesField(nil, 1, e)
		for _, bc := range u.conns {
			bc.out = wire.AppendHeader(bc.out, wire.CmdPush, 0, 0, len(push))
			bc.out = append(bc.out, push...)
			b.dirty[bc] = struct{}{}
		}
	}
	select {
	case b.kick <- struct{}{}:
	default:
	}
	ack := appendVarintFields(nil, msgID, g.seq, uint64(now))
	out := wire.AppendHeader(nil, f.Command, wire.FlagResponse, f.RequestID, len(ack))
	binary.BigEndian.PutUint32(out[:4], uint32(len(ack)))
	return append(out, ack...)
}

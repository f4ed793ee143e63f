package gateway

import (
	"net"
	"testing"
	"time"

	"github.com/panjf2000/gnet/v2"

	"github.com/inboxd/inboxd/inbox"
	"github.com/inboxd/inboxd/timeline"
	"github.com/inboxd/inboxd/wire"
)

// sinkConn is a connection whose writes go nowhere, its queued callbacks
// run at once: what Notify costs without the network.
type sinkConn struct {
	gnet.Conn
	written int
	ctx     any
}

func (c *sinkConn) Context() any       { return c.ctx }
func (c *sinkConn) SetContext(ctx any) { c.ctx = ctx }

func (c *sinkConn) AsyncWrite(b []byte, cb gnet.AsyncCallback) error {
	c.written += len(b)
	if cb != nil {
		cb(c, nil)
	}
	return nil
}

func (c *sinkConn) AsyncWritev(bs [][]byte, cb gnet.AsyncCallback) error {
	for _, b := range bs {
		c.written += len(b)
	}
	if cb != nil {
		cb(c, nil)
	}
	return nil
}

func (c *sinkConn) Write(b []byte) (int, error) {
	c.written += len(b)
	return len(b), nil
}

func (c *sinkConn) Writev(bs [][]byte) (int, error) {
	n := 0
	for _, b := range bs {
		n += len(b)
	}
	c.written += n
	return n, nil
}

func (c *sinkConn) OutboundBuffered() int { return 0 }

func (c *sinkConn) RemoteAddr() net.Addr { return nil }

// BenchmarkNotifyGroup100 is the push side of one group commit of one
// 100-byte message to a group of 100 online members: the dispatcher's 100
// Notify calls, one per member, each with the member's own inbox row.
func BenchmarkNotifyGroup100(b *testing.B) {
	s, err := New(Config{Secret: secret})
	if err != nil {
		b.Fatal(err)
	}
	const members = 100
	for u := range uint64(members) {
		c := &sinkConn{}
		sess := newSession(s, c, transportTCP)
		c.SetContext(sess)
		sess.user.Store(u + 1)
		s.byUser[u+1] = []*session{sess}
	}
	body := make([]byte, 100)
	entries := make([]inbox.Entry, 1)
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		// Each commit its own message, as the committer hands them out.
		msg := &timeline.Message{Conv: 7, ConvSeq: uint64(i + 1), ID: uint64(i + 1), Sender: 1, ClientMsgID: "client-msg-id",
			Kind: wire.KindText, Body: body, Time: time.Now()}
		for u := range uint64(members) {
			entries[0] = inbox.Entry{Row: timeline.Row{User: u + 1, Seq: uint64(i + 1), Conv: 7, ConvSeq: msg.ConvSeq, MsgID: msg.ID, Kind: wire.KindText}, Msg: msg}
			s.Notify(u+1, entries)
		}
	}
}

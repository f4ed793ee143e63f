package gateway

import (
	"time"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/inboxd/inboxd/inbox"
	"github.com/inboxd/inboxd/timeline"
	"github.com/inboxd/inboxd/wire"
	"github.com/inboxd/inboxd/wire/wirepb"
)

func unixMilli(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

func messagePB(m *timeline.Message) *wirepb.Message {
	return &wirepb.Message{Conv: m.Conv, ConvSeq: m.ConvSeq, MsgId: m.ID, Sender: m.Sender,
		ClientMsgId: m.ClientMsgID, Kind: uint32(m.Kind), Body: m.Body, TimeMs: m.Time.UnixMilli()}
}

func groupPB(g timeline.Group) *wirepb.Group {
	return &wirepb.Group{Id: g.ID, Name: g.Name, Owner: g.Owner, CreatedMs: g.Created.UnixMilli(),
		Open: g.Open, MutedUntilMs: unixMilli(g.MutedUntil), Dismissed: g.Dismissed}
}

func entriesPB(es []inbox.Entry) []*wirepb.Entry {
	out := make([]*wirepb.Entry, len(es))
	for i, e := range es {
		pe := &wirepb.Entry{Seq: e.Row.Seq, Conv: e.Row.Conv, ConvSeq: e.Row.ConvSeq, MsgId: e.Row.MsgID, Kind: uint32(e.Row.Kind)}
		if e.Msg != nil {
			pe.Message = messagePB(e.Msg)
		}
		out[i] = pe
	}
	return out
}

// fit returns how many of entries fit in one frame of at most maxFrame
// bytes: at least one, so that a client always makes progress (a single
// entry is bounded by the body limit, well below the frame limit).
func fit[T proto.Message](entries []T, maxFrame int) int {
	budget := maxFrame - wire.HeaderSize - 16 // room for the response's other fields
	for i, e := range entries {
		n := proto.Size(e)
		budget -= n + protowire.SizeTag(1) + protowire.SizeVarint(uint64(n))
		if budget < 0 && i > 0 {
			return i
		}
	}
	return len(entries)
}

// appendPushes appends PUSH frames carrying entries, as many frames as the
// frame limit needs, and says how many.
func appendPushes(dst []byte, entries []inbox.Entry, maxFrame int) (_ []byte, frames int) {
	pb := entriesPB(entries)
	for ; len(pb) > 0; frames++ {
		n := fit(pb, maxFrame)
		var err error
		dst, err = wire.AppendFrame(dst, wire.CmdPush, 0, 0, &wirepb.Push{Entries: pb[:n]})
		if err != nil {
			panic("gateway: encode push: " + err.Error()) // plain data cannot fail to encode
		}
		pb = pb[n:]
	}
	return dst, frames
}

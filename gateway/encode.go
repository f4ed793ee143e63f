package gateway

import (
	"sync"
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
		ClientMsgId: m.ClientMsgID, Kind: uint32(m.Kind), Body: m.Body, TimeMs: m.Time.UnixMilli(),
		Mentions: m.Mentions, MentionAll: m.MentionAll, Recalled: m.Recalled, EditedMs: unixMilli(m.Edited)}
}

func groupPB(g timeline.Group) *wirepb.Group {
	return &wirepb.Group{Id: g.ID, Name: g.Name, Owner: g.Owner, CreatedMs: g.Created.UnixMilli(),
		Open: g.Open, MutedUntilMs: unixMilli(g.MutedUntil), Dismissed: g.Dismissed,
		Announcement: g.Announcement, AvatarUrl: g.AvatarURL}
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
// frame limit needs, and says how many. msg returns the encoded
// wirepb.Message of an entry's message: a group commit hands every member
// the same *timeline.Message, so a cache (msgCache) encodes it once for all
// of them. The bytes are those of proto.Marshal of the Push.
func appendPushes(dst []byte, entries []inbox.Entry, maxFrame int, msg func(*timeline.Message) []byte) (_ []byte, frames int) {
	for ; len(entries) > 0; frames++ {
		// As fit counts: at least one entry, then as many as the budget takes.
		budget := maxFrame - wire.HeaderSize - 16
		n, body := 0, 0
		for i, e := range entries {
			size := entrySize(e, msg)
			item := size + protowire.SizeTag(1) + protowire.SizeVarint(uint64(size))
			if budget -= item; budget < 0 && i > 0 {
				break
			}
			n, body = i+1, body+item
		}
		dst = wire.AppendHeader(dst, wire.CmdPush, 0, 0, body)
		for _, e := range entries[:n] {
			dst = protowire.AppendTag(dst, 1, protowire.BytesType)
			dst = protowire.AppendVarint(dst, uint64(entrySize(e, msg)))
			dst = appendEntry(dst, e, msg)
		}
		entries = entries[n:]
	}
	return dst, frames
}

// entryFields are the scalar fields of a wirepb.Entry, by field number.
func entryFields(e inbox.Entry) [5]uint64 {
	r := e.Row
	return [5]uint64{r.Seq, r.Conv, r.ConvSeq, r.MsgID, uint64(uint32(r.Kind))}
}

// entrySize is the encoded size of e as a wirepb.Entry.
func entrySize(e inbox.Entry, msg func(*timeline.Message) []byte) int {
	n := 0
	for _, v := range entryFields(e) {
		if v != 0 {
			n += 1 + protowire.SizeVarint(v)
		}
	}
	if e.Msg != nil {
		n += protowire.SizeBytes(len(msg(e.Msg))) + 1
	}
	return n
}

// appendEntry appends e encoded as a wirepb.Entry: its fields in field
// order, zero values left out, as proto.Marshal writes them.
func appendEntry(dst []byte, e inbox.Entry, msg func(*timeline.Message) []byte) []byte {
	for i, v := range entryFields(e) {
		if v != 0 {
			dst = protowire.AppendTag(dst, protowire.Number(i+1), protowire.VarintType)
			dst = protowire.AppendVarint(dst, v)
		}
	}
	if e.Msg != nil {
		dst = protowire.AppendTag(dst, 6, protowire.BytesType)
		dst = protowire.AppendBytes(dst, msg(e.Msg))
	}
	return dst
}

// encodeMessage encodes m as a wirepb.Message.
func encodeMessage(m *timeline.Message) []byte {
	b, err := proto.Marshal(messagePB(m))
	if err != nil {
		panic("gateway: encode message: " + err.Error()) // plain data cannot fail to encode
	}
	return b
}

// msgCache holds the encoded messages of the latest group commits, by the
// *timeline.Message the inbox shares between the entries of a commit (read
// only, inbox.Entry says): each message is encoded once for every member it
// is pushed to. It is bounded by maxCachedBytes and emptied when full; the
// dispatcher hands a commit's entries out one user after another, so only
// the newest messages are ever asked for again.
type msgCache struct {
	mu    sync.Mutex
	m     map[*timeline.Message][]byte
	bytes int
}

const maxCachedBytes = 1 << 20

// encoder returns the encoding function for one Notify call, and the
// function that ends it; the cache is locked in between.
func (c *msgCache) encoder() (func(*timeline.Message) []byte, func()) {
	c.mu.Lock()
	return c.encoded, c.mu.Unlock
}

func (c *msgCache) encoded(m *timeline.Message) []byte {
	if b, ok := c.m[m]; ok {
		return b
	}
	b := encodeMessage(m)
	switch {
	case c.m == nil:
		c.m = make(map[*timeline.Message][]byte)
	case c.bytes+len(b) > maxCachedBytes:
		clear(c.m)
		c.bytes = 0
	}
	c.m[m] = b
	c.bytes += len(b)
	return b
}

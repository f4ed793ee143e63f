package pebble

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/inboxd/inboxd/timeline"
	"github.com/inboxd/inboxd/wire"
)

// valueVersion leads every value, so that a later layout of a record can be
// told apart from this one without rewriting the store.
const valueVersion = 1

// Bits of the flags byte of group and conversation values.
const (
	flagGroupOpen      = 1 << 0
	flagGroupDismissed = 1 << 1
	flagGroupBlocked0  = 1 << 2
	flagGroupBlocked1  = 1 << 3
	flagConvDND        = 1 << 0
	flagMemberDND      = 1 << 0
	flagMsgRecalled    = 1 << 0
	flagMsgMentionAll  = 1 << 1
)

// errCorrupt is wrapped by every decoding error.
var errCorrupt = errors.New("corrupt value")

// The encoders append a value to dst; the record's key fields are not part of
// it. Times are stored as Unix milliseconds, the precision the contract keeps.

func appendRowValue(dst []byte, r *timeline.Row) []byte {
	dst = append(dst, valueVersion)
	dst = binary.AppendUvarint(dst, r.Conv)
	dst = binary.AppendUvarint(dst, r.ConvSeq)
	dst = binary.AppendUvarint(dst, r.MsgID)
	return binary.AppendUvarint(dst, uint64(r.Kind))
}

func appendMessageValue(dst []byte, m *timeline.Message) []byte {
	dst = append(dst, valueVersion)
	dst = binary.AppendUvarint(dst, m.ID)
	dst = binary.AppendUvarint(dst, m.Sender)
	dst = binary.AppendUvarint(dst, uint64(m.Kind))
	dst = binary.AppendVarint(dst, m.Time.UnixMilli())
	dst = appendString(dst, m.ClientMsgID)
	dst = binary.AppendUvarint(dst, uint64(len(m.Body)))
	dst = append(dst, m.Body...)
	if !m.Recalled && !m.MentionAll && m.Edited.IsZero() && m.LastEdit == 0 && len(m.Mentions) == 0 {
		return dst
	}
	// The amendment section: absent from most messages, and from every
	// value written before it existed.
	var flags byte
	if m.Recalled {
		flags |= flagMsgRecalled
	}
	if m.MentionAll {
		flags |= flagMsgMentionAll
	}
	dst = append(dst, flags)
	dst = binary.AppendVarint(dst, m.Edited.UnixMilli())
	dst = binary.AppendUvarint(dst, m.LastEdit)
	dst = binary.AppendUvarint(dst, uint64(len(m.Mentions)))
	for _, u := range m.Mentions {
		dst = binary.AppendUvarint(dst, u)
	}
	return dst
}

func appendGroupValue(dst []byte, g *timeline.Group) []byte {
	var flags byte
	if g.Open {
		flags |= flagGroupOpen
	}
	if g.Dismissed {
		flags |= flagGroupDismissed
	}
	if g.Blocked[0] {
		flags |= flagGroupBlocked0
	}
	if g.Blocked[1] {
		flags |= flagGroupBlocked1
	}
	dst = append(dst, valueVersion, flags)
	dst = appendString(dst, g.Name)
	dst = binary.AppendUvarint(dst, g.Owner)
	dst = binary.AppendVarint(dst, g.Created.UnixMilli())
	dst = binary.AppendVarint(dst, g.MutedUntil.UnixMilli())
	if g.Announcement == "" && g.AvatarURL == "" && g.Direct == [2]uint64{} {
		return dst // as stores before profiles and direct conversations wrote it
	}
	dst = appendString(dst, g.Announcement)
	dst = appendString(dst, g.AvatarURL)
	dst = binary.AppendUvarint(dst, g.Direct[0])
	return binary.AppendUvarint(dst, g.Direct[1])
}

// appendMemberValue ends with a flags byte, which stores of format 1 did not
// write: the decoder takes its absence as no flags.
func appendMemberValue(dst []byte, m *timeline.Member) []byte {
	dst = append(dst, valueVersion, byte(m.Role))
	dst = binary.AppendUvarint(dst, m.JoinedAt)
	dst = binary.AppendVarint(dst, m.MutedUntil.UnixMilli())
	var flags byte
	if m.DND {
		flags |= flagMemberDND
	}
	return append(dst, flags)
}

// appendConversationValue leaves out c.ReadSeq: markers live under their own
// key (see the package doc).
func appendConversationValue(dst []byte, c *timeline.Conversation) []byte {
	var flags byte
	if c.DND {
		flags |= flagConvDND
	}
	dst = append(dst, valueVersion, flags)
	dst = binary.AppendUvarint(dst, c.JoinedAt)
	return binary.AppendUvarint(dst, c.LeftAt)
}

// appendUint64Value encodes the one-number values: read markers and clocks.
func appendUint64Value(dst []byte, v uint64) []byte {
	return binary.AppendUvarint(append(dst, valueVersion), v)
}

// appendActivityValue encodes an activity index entry's exact time.
func appendActivityValue(dst []byte, at time.Time) []byte {
	return binary.AppendVarint(append(dst, valueVersion), at.UnixMilli())
}

// decodeActivityValue returns an activity index entry's exact time in Unix
// milliseconds.
func decodeActivityValue(val []byte) (int64, error) {
	d := newDecoder(val)
	ms := d.varint()
	return ms, d.finish("activity")
}

func appendDedupValue(dst []byte, d *timeline.Dedup) []byte {
	dst = append(dst, valueVersion)
	dst = binary.AppendUvarint(dst, d.Conv)
	dst = binary.AppendUvarint(dst, d.ConvSeq)
	dst = binary.AppendUvarint(dst, d.MsgID)
	return binary.AppendVarint(dst, d.Time.UnixMilli())
}

func appendString(dst []byte, s string) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(s)))
	return append(dst, s...)
}

// The decoders fill the value fields of a record from a value written by the
// matching encoder. They copy what they keep: Pebble reuses value memory.

func decodeRowValue(val []byte, r *timeline.Row) error {
	d := newDecoder(val)
	r.Conv = d.uvarint()
	r.ConvSeq = d.uvarint()
	r.MsgID = d.uvarint()
	r.Kind = d.kind()
	return d.finish("row")
}

func decodeMessageValue(val []byte, m *timeline.Message) error {
	d := newDecoder(val)
	m.ID = d.uvarint()
	m.Sender = d.uvarint()
	m.Kind = d.kind()
	m.Time = d.time()
	m.ClientMsgID = string(d.bytes())
	m.Body = nil
	if body := d.bytes(); len(body) > 0 {
		m.Body = append([]byte(nil), body...)
	}
	m.Recalled, m.MentionAll, m.Edited, m.LastEdit, m.Mentions = false, false, time.Time{}, 0, nil
	if d.err == nil && len(d.buf) > 0 {
		flags := d.flags(flagMsgRecalled | flagMsgMentionAll)
		m.Recalled, m.MentionAll = flags&flagMsgRecalled != 0, flags&flagMsgMentionAll != 0
		m.Edited = d.time()
		m.LastEdit = d.uvarint()
		// Each mention takes at least a byte: a count beyond the bytes
		// left is corrupt, and allocates nothing.
		if n := d.uvarint(); n > uint64(len(d.buf)) {
			d.fail(fmt.Sprintf("%d mentions in %d bytes", n, len(d.buf)))
		} else if n > 0 {
			m.Mentions = make([]uint64, n)
			for i := range m.Mentions {
				m.Mentions[i] = d.uvarint()
			}
		}
	}
	return d.finish("message")
}

func decodeGroupValue(val []byte, g *timeline.Group) error {
	d := newDecoder(val)
	flags := d.flags(flagGroupOpen | flagGroupDismissed | flagGroupBlocked0 | flagGroupBlocked1)
	g.Open = flags&flagGroupOpen != 0
	g.Dismissed = flags&flagGroupDismissed != 0
	g.Blocked = [2]bool{flags&flagGroupBlocked0 != 0, flags&flagGroupBlocked1 != 0}
	g.Name = string(d.bytes())
	g.Owner = d.uvarint()
	g.Created = d.time()
	g.MutedUntil = d.time()
	g.Announcement, g.AvatarURL, g.Direct = "", "", [2]uint64{}
	if d.err == nil && len(d.buf) > 0 {
		// The profile and the pair, which a group of the earlier layout
		// does not have.
		g.Announcement = string(d.bytes())
		g.AvatarURL = string(d.bytes())
		g.Direct = [2]uint64{d.uvarint(), d.uvarint()}
	}
	return d.finish("group")
}

func decodeMemberValue(val []byte, m *timeline.Member) error {
	d := newDecoder(val)
	m.Role = wire.Role(d.byte())
	m.JoinedAt = d.uvarint()
	m.MutedUntil = d.time()
	m.DND = false
	if d.err == nil && len(d.buf) > 0 {
		m.DND = d.flags(flagMemberDND)&flagMemberDND != 0
	}
	return d.finish("member")
}

func decodeConversationValue(val []byte, c *timeline.Conversation) error {
	d := newDecoder(val)
	c.DND = d.flags(flagConvDND)&flagConvDND != 0
	c.JoinedAt = d.uvarint()
	c.LeftAt = d.uvarint()
	return d.finish("conversation")
}

func decodeUint64Value(val []byte, v *uint64) error {
	d := newDecoder(val)
	*v = d.uvarint()
	return d.finish("number")
}

func decodeDedupValue(val []byte, dd *timeline.Dedup) error {
	d := newDecoder(val)
	dd.Conv = d.uvarint()
	dd.ConvSeq = d.uvarint()
	dd.MsgID = d.uvarint()
	dd.Time = d.time()
	return d.finish("dedup")
}

// decoder reads a value's fields in order. The first failure sticks: later
// reads return zero values and finish reports it, so decoders need no error
// check per field.
type decoder struct {
	buf []byte
	off int // bytes consumed, for error messages
	err error
}

// newDecoder returns a decoder positioned after val's version byte.
func newDecoder(val []byte) decoder {
	d := decoder{buf: val}
	if v := d.byte(); d.err == nil && v != valueVersion {
		d.fail(fmt.Sprintf("unknown value version %d", v))
	}
	return d
}

func (d *decoder) fail(msg string) {
	if d.err == nil {
		d.err = fmt.Errorf("%s at byte %d", msg, d.off)
	}
}

func (d *decoder) advance(n int) {
	d.buf = d.buf[n:]
	d.off += n
}

func (d *decoder) byte() byte {
	if d.err != nil {
		return 0
	}
	if len(d.buf) == 0 {
		d.fail("truncated")
		return 0
	}
	b := d.buf[0]
	d.advance(1)
	return b
}

func (d *decoder) uvarint() uint64 { return readVarint(d, binary.Uvarint, "bad uvarint") }

func (d *decoder) varint() int64 { return readVarint(d, binary.Varint, "bad varint") }

func readVarint[T uint64 | int64](d *decoder, read func([]byte) (T, int), bad string) T {
	if d.err != nil {
		return 0
	}
	v, n := read(d.buf)
	if n <= 0 {
		d.fail(bad)
		return 0
	}
	d.advance(n)
	return v
}

// bytes reads a length-prefixed byte string. The result aliases the value.
func (d *decoder) bytes() []byte {
	n := d.uvarint()
	if d.err != nil {
		return nil
	}
	if n > uint64(len(d.buf)) {
		d.fail(fmt.Sprintf("length %d exceeds the %d bytes left", n, len(d.buf)))
		return nil
	}
	b := d.buf[:n:n]
	d.advance(int(n))
	return b
}

func (d *decoder) kind() wire.Kind {
	k := d.uvarint()
	if k > 0xFFFF {
		d.fail(fmt.Sprintf("kind %d out of range", k))
		return 0
	}
	return wire.Kind(k)
}

func (d *decoder) time() time.Time {
	ms := d.varint()
	if d.err != nil {
		return time.Time{}
	}
	return time.UnixMilli(ms).UTC()
}

// flags reads a flags byte and rejects bits outside known.
func (d *decoder) flags(known byte) byte {
	f := d.byte()
	if f&^known != 0 {
		d.fail(fmt.Sprintf("unknown flags %#x", f&^known))
		return 0
	}
	return f
}

// finish reports the first failure, or trailing bytes, as an error about a
// value of the named record type.
func (d *decoder) finish(what string) error {
	if d.err == nil && len(d.buf) > 0 {
		d.fail(fmt.Sprintf("%d trailing bytes", len(d.buf)))
	}
	if d.err != nil {
		return fmt.Errorf("%w of %s: %w", errCorrupt, what, d.err)
	}
	return nil
}

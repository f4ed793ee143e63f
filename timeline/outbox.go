package timeline

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/inboxd/inboxd/wire"
)

// OutboxRecord is the fan-out of one committed message (or conversation
// setting) owed to members whose shards another node serves: written by the
// conversation's owner in the batch of the message, delivered to each
// destination shard's owner, and applied there in stream order
// (docs/cluster.md, "The write path in a cluster").
type OutboxRecord struct {
	Source  int    // the conversation's shard
	Seq     uint64 // place in Source's outbox: 1, 2, 3, … with no gap
	Conv    uint64
	ConvSeq uint64 // for KindDND, the value (as in Row)
	MsgID   uint64 // zero for the inbox-only kinds
	Kind    wire.Kind
	Time    time.Time // the message's server time: where the activity index moves
	// Prev is the time of the conversation's message before this one (zero
	// if none): where the entry of a member who had it stands in the
	// activity index.
	Prev  time.Time
	Dests []OutboxDest // by shard ascending, each shard once
}

// OutboxDest is the part of a record for one destination shard.
type OutboxDest struct {
	Shard int
	// Stream is the record's place in the stream Source→Shard: 1, 2, 3, …
	// with no gap, in the order Source committed them.
	Stream     uint64
	Recipients []Recipient
}

// Recipient is a user who gets an inbox row from a record, and what else
// the apply does for them.
type Recipient struct {
	User    uint64
	Effects Effect
}

// Effect is a set of what an apply does for a recipient besides appending
// the row.
type Effect uint8

const (
	// EffectJoin: the record is the notice that made the user a member; the
	// conversation entry starts at its ConvSeq and everything before is read.
	EffectJoin Effect = 1 << iota
	// EffectLeave: the user leaves with the record; the entry ends at its
	// ConvSeq.
	EffectLeave
	// EffectSender: the user sent it; the read marker moves to its ConvSeq.
	EffectSender
	// EffectNoPush: no offline push (the sender, a leaving user).
	EffectNoPush
	// EffectDND: the user set do-not-disturb for the conversation: no
	// offline push.
	EffectDND

	effectsKnown = EffectJoin | EffectLeave | EffectSender | EffectNoPush | EffectDND
)

// OutboxLow is the low-water mark of a source shard's outbox: every record
// at or below Seq is applied by all its destinations and may be dropped.
type OutboxLow struct {
	Source int
	Seq    uint64
}

// AppliedMark is how far the destination shard has applied the stream from
// the source shard: every record numbered Stream or below.
type AppliedMark struct {
	Source, Dest int
	Stream       uint64
}

// recordFormat leads an encoded OutboxRecord.
const recordFormat = 1

// ErrCorruptRecord is wrapped by the error of UnmarshalBinary.
var ErrCorruptRecord = errors.New("timeline: corrupt outbox record")

// MarshalBinary encodes r in the form both backends store: a format byte,
// then uvarints (times as signed Unix milliseconds).
func (r *OutboxRecord) MarshalBinary() ([]byte, error) {
	return r.AppendBinary(make([]byte, 0, 48+16*len(r.Dests)))
}

// AppendBinary appends MarshalBinary's encoding of r to dst.
func (r *OutboxRecord) AppendBinary(dst []byte) ([]byte, error) {
	dst = append(dst, recordFormat)
	dst = binary.AppendVarint(dst, int64(r.Source))
	for _, v := range []uint64{r.Seq, r.Conv, r.ConvSeq, r.MsgID, uint64(r.Kind)} {
		dst = binary.AppendUvarint(dst, v)
	}
	dst = appendTime(dst, r.Time)
	dst = appendTime(dst, r.Prev)
	dst = binary.AppendUvarint(dst, uint64(len(r.Dests)))
	for _, d := range r.Dests {
		dst = binary.AppendVarint(dst, int64(d.Shard))
		dst = binary.AppendUvarint(dst, d.Stream)
		dst = binary.AppendUvarint(dst, uint64(len(d.Recipients)))
		for _, rc := range d.Recipients {
			dst = binary.AppendUvarint(dst, rc.User)
			dst = append(dst, byte(rc.Effects))
		}
	}
	return dst, nil
}

func appendTime(dst []byte, t time.Time) []byte {
	if t.IsZero() {
		return binary.AppendVarint(dst, 0)
	}
	ms := t.UnixMilli()
	if ms == 0 {
		ms = 1 // zero means none: the epoch itself is stored a millisecond on
	}
	return binary.AppendVarint(dst, ms)
}

// UnmarshalBinary decodes what MarshalBinary encoded. It refuses trailing
// bytes and unknown effects, and bounds what it allocates by len(data).
func (r *OutboxRecord) UnmarshalBinary(data []byte) error {
	d := recordDecoder{buf: data}
	if d.byte() != recordFormat && d.err == nil {
		d.err = fmt.Errorf("%w: unknown format %d", ErrCorruptRecord, data[0])
	}
	*r = OutboxRecord{Source: d.int(), Seq: d.uvarint(), Conv: d.uvarint(), ConvSeq: d.uvarint(), MsgID: d.uvarint()}
	kind := d.uvarint()
	if kind > 0xFFFF && d.err == nil {
		d.err = fmt.Errorf("%w: kind %d", ErrCorruptRecord, kind)
	}
	r.Kind = wire.Kind(kind)
	r.Time, r.Prev = d.time(), d.time()
	for n := d.count(); n > 0 && d.err == nil; n-- {
		od := OutboxDest{Shard: d.int(), Stream: d.uvarint()}
		for m := d.count(); m > 0 && d.err == nil; m-- {
			rc := Recipient{User: d.uvarint(), Effects: Effect(d.byte())}
			if rc.Effects&^effectsKnown != 0 && d.err == nil {
				d.err = fmt.Errorf("%w: effects %#x", ErrCorruptRecord, rc.Effects)
			}
			od.Recipients = append(od.Recipients, rc)
		}
		r.Dests = append(r.Dests, od)
	}
	if d.err == nil && len(d.buf) > 0 {
		d.err = fmt.Errorf("%w: %d trailing bytes", ErrCorruptRecord, len(d.buf))
	}
	return d.err
}

type recordDecoder struct {
	buf []byte
	err error
}

func (d *recordDecoder) fail(what string) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: %s", ErrCorruptRecord, what)
	}
	d.buf = nil
}

func (d *recordDecoder) byte() byte {
	if len(d.buf) == 0 {
		d.fail("short")
		return 0
	}
	b := d.buf[0]
	d.buf = d.buf[1:]
	return b
}

func (d *recordDecoder) uvarint() uint64 {
	v, n := binary.Uvarint(d.buf)
	if n <= 0 {
		d.fail("bad uvarint")
		return 0
	}
	d.buf = d.buf[n:]
	return v
}

func (d *recordDecoder) varint() int64 {
	v, n := binary.Varint(d.buf)
	if n <= 0 {
		d.fail("bad varint")
		return 0
	}
	d.buf = d.buf[n:]
	return v
}

func (d *recordDecoder) int() int {
	v := d.varint()
	if int64(int(v)) != v {
		d.fail("shard out of range")
	}
	return int(v)
}

func (d *recordDecoder) time() time.Time {
	ms := d.varint()
	if ms == 0 {
		return time.Time{}
	}
	return time.UnixMilli(ms)
}

// count reads a length, refusing one that the bytes left cannot hold (each
// element takes at least one byte), so a corrupt length allocates nothing.
func (d *recordDecoder) count() int {
	n := d.uvarint()
	if n > uint64(len(d.buf)) {
		d.fail("count beyond the data")
		return 0
	}
	return int(n)
}

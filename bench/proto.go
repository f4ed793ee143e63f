package bench

import (
	"encoding/binary"
	"errors"
	"fmt"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/inboxd/inboxd/wire"
)

// The hot frames — PUSH, SYNC pages, SEND acks and requests — are decoded
// and encoded here field by field with protowire, straight from and into
// the connection's buffers: the generator shares the machine's cores with
// the server, and generated message structs would cost an allocation per
// entry. Field numbers are those of wire/wirepb/inboxd.proto.

// benchKind is the message kind the generator sends (an application kind,
// 2–32767): its body starts with benchMagic and the send time, so that
// receivers can measure send-to-delivery latency, and other messages on a
// shared server are left alone.
const benchKind = 0x1b0c

var benchMagic = [4]byte{'i', 'b', 'x', 'b'}

// entry is an inbox entry as a device needs it. ClientMsgID aliases the
// frame buffer and is valid only while the frame is being handled.
type entry struct {
	seq, conv, convSeq, msgID uint64
	kind                      wire.Kind
	sender                    uint64
	clientMsgID               []byte
	sentAt                    int64 // ns since the run's start, for benchKind entries; else -1
}

var errMalformed = errors.New("bench: malformed protobuf body")

// parseEntries calls fn for every Entry (by value: a pointer to a local
// would escape through fn, an allocation per frame) (field 1) of a Push or SyncResponse
// body and returns the SyncResponse's head_seq (2) and has_more (3).
func parseEntries(b []byte, fn func(entry)) (head uint64, hasMore bool, err error) {
	var e entry
	err = forFields(b, func(num protowire.Number, v uint64, bs []byte) {
		switch {
		case num == 1 && bs != nil && err == nil:
			if err = parseEntry(bs, &e); err == nil {
				fn(e)
			}
		case num == 2:
			head = v
		case num == 3:
			hasMore = v != 0
		}
	})
	return head, hasMore, err
}

func parseEntry(b []byte, e *entry) error {
	*e = entry{sentAt: -1}
	var msg []byte
	err := forFields(b, func(num protowire.Number, v uint64, bs []byte) {
		switch num {
		case 1:
			e.seq = v
		case 2:
			e.conv = v
		case 3:
			e.convSeq = v
		case 4:
			e.msgID = v
		case 5:
			e.kind = wire.Kind(v)
		case 6:
			msg = bs
		}
	})
	if err != nil || msg == nil {
		return err
	}
	var body []byte
	err = forFields(msg, func(num protowire.Number, v uint64, bs []byte) {
		switch num {
		case 4:
			e.sender = v
		case 5:
			e.clientMsgID = bs
		case 7:
			body = bs
		}
	})
	if e.kind == benchKind && len(body) >= 12 && [4]byte(body[:4]) == benchMagic {
		e.sentAt = int64(binary.BigEndian.Uint64(body[4:12]))
	}
	return err
}

// forFields calls fn for each varint and length-delimited field of b.
func forFields(b []byte, fn func(num protowire.Number, v uint64, bs []byte)) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return errMalformed
		}
		b = b[n:]
		switch typ {
		case protowire.VarintType:
			var v uint64
			v, n = protowire.ConsumeVarint(b)
			if n >= 0 {
				fn(num, v, nil)
			}
		case protowire.BytesType:
			var v []byte
			v, n = protowire.ConsumeBytes(b)
			if n >= 0 {
				fn(num, 0, v)
			}
		default:
			n = protowire.ConsumeFieldValue(num, typ, b)
		}
		if n < 0 {
			return errMalformed
		}
		b = b[n:]
	}
	return nil
}

// sendAck is a decoded SendAck.
type sendAck struct {
	msgID, convSeq uint64
	duplicate      bool
	conv           uint64 // 0 from a server before SendAck.conv
}

func parseSendAck(b []byte) (a sendAck, err error) {
	err = forFields(b, func(num protowire.Number, v uint64, _ []byte) {
		switch num {
		case 1:
			a.msgID = v
		case 2:
			a.convSeq = v
		case 4:
			a.duplicate = v != 0
		case 5:
			a.conv = v
		}
	})
	if err == nil && (a.msgID == 0 || a.convSeq == 0) {
		err = fmt.Errorf("%w: SendAck without msg_id or conv_seq", errMalformed)
	}
	return a, err
}

// parseError returns an Error body's code, retry_after_ms and redirect.
func parseError(b []byte) (code uint32, retryAfterMs uint64, redirect string) {
	forFields(b, func(num protowire.Number, v uint64, bs []byte) {
		// A field of another wire type than its own is an unknown field
		// to protobuf: skip it likewise (bs is nil for varints only).
		switch varint := bs == nil; {
		case num == 1 && varint:
			code = uint32(v)
		case num == 3 && varint:
			retryAfterMs = uint64(uint32(v)) // a uint32 field: protobuf keeps the low bits
		case num == 4 && !varint:
			redirect = string(bs)
		}
	})
	return code, retryAfterMs, redirect
}

// firstVarint returns varint field num of b (MarkReadResponse.read_seq,
// AuthResponse.head_seq, …).
func firstVarint(b []byte, want protowire.Number) (uint64, error) {
	var out uint64
	err := forFields(b, func(num protowire.Number, v uint64, _ []byte) {
		if num == want {
			out = v
		}
	})
	return out, err
}

// appendSendRequest appends a SendRequest body of a benchKind message sent
// at sentAt, padded to bodySize bytes.
func appendSendRequest(dst []byte, conv uint64, cmid []byte, sentAt int64, bodySize int) []byte {
	bodySize = max(bodySize, 12)
	dst = appendVarintField(dst, 1, conv)
	dst = appendBytesField(dst, 2, cmid)
	dst = appendVarintField(dst, 3, benchKind)
	dst = protowire.AppendTag(dst, 4, protowire.BytesType)
	dst = protowire.AppendVarint(dst, uint64(bodySize))
	dst = append(dst, benchMagic[:]...)
	dst = binary.BigEndian.AppendUint64(dst, uint64(sentAt))
	for range bodySize - 12 {
		dst = append(dst, '.')
	}
	return dst
}

// appendMentions appends SendRequest's mentions (5, packed) and
// mention_all (6).
func appendMentions(dst []byte, mentions []uint64, all bool) []byte {
	if len(mentions) > 0 {
		var packed []byte
		for _, u := range mentions {
			packed = protowire.AppendVarint(packed, u)
		}
		dst = appendBytesField(dst, 5, packed)
	}
	if all {
		dst = appendVarintField(dst, 6, 1)
	}
	return dst
}

// appendAmendRequest appends a RecallRequest, or with edit an EditRequest
// whose new body names the edit.
func appendAmendRequest(dst []byte, conv, convSeq uint64, cmid string, edit bool) []byte {
	dst = appendVarintField(dst, 1, conv)
	dst = appendVarintField(dst, 2, convSeq)
	dst = appendBytesField(dst, 3, []byte(cmid))
	if edit {
		dst = appendBytesField(dst, 4, []byte("edited by "+cmid))
	}
	return dst
}

// appendVarintFields appends a body of varint fields 1, 2, … with the
// given values, skipping zeros (SyncRequest, MarkReadRequest).
func appendVarintFields(dst []byte, vs ...uint64) []byte {
	for i, v := range vs {
		if v != 0 {
			dst = appendVarintField(dst, protowire.Number(i+1), v)
		}
	}
	return dst
}

func appendVarintField(dst []byte, num protowire.Number, v uint64) []byte {
	return protowire.AppendVarint(protowire.AppendTag(dst, num, protowire.VarintType), v)
}

func appendBytesField(dst []byte, num protowire.Number, b []byte) []byte {
	return protowire.AppendBytes(protowire.AppendTag(dst, num, protowire.BytesType), b)
}

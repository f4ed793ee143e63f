package relay

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/inboxd/inboxd/timeline"
	"github.com/inboxd/inboxd/wire"
)

// ErrMalformed is wrapped by the errors of the decoders: a body that is not
// what its command carries.
var ErrMalformed = errors.New("relay: malformed body")

// appendRecords encodes a DELIVER body: a uvarint count, then each record
// as a uvarint length and its timeline.OutboxRecord encoding, the form
// both stores keep.
func appendRecords(dst []byte, recs []timeline.OutboxRecord) ([]byte, error) {
	dst = binary.AppendUvarint(dst, uint64(len(recs)))
	for i := range recs {
		rec, err := recs[i].MarshalBinary()
		if err != nil {
			return nil, fmt.Errorf("relay: encode record: %w", err)
		}
		dst = binary.AppendUvarint(dst, uint64(len(rec)))
		dst = append(dst, rec...)
	}
	return dst, nil
}

// decodeRecords decodes what appendRecords encoded. It allocates at most
// in proportion to len(body): a count beyond what the bytes can hold is
// refused before anything is made.
func decodeRecords(body []byte) ([]timeline.OutboxRecord, error) {
	n, body, err := count(body)
	if err != nil {
		return nil, err
	}
	recs := make([]timeline.OutboxRecord, n)
	for i := range recs {
		size, k := binary.Uvarint(body)
		if k <= 0 || size > uint64(len(body)-k) {
			return nil, fmt.Errorf("%w: record %d: bad length", ErrMalformed, i)
		}
		if err := recs[i].UnmarshalBinary(body[k : k+int(size)]); err != nil {
			return nil, fmt.Errorf("%w: record %d: %w", ErrMalformed, i, err)
		}
		body = body[k+int(size):]
	}
	if len(body) > 0 {
		return nil, fmt.Errorf("%w: %d trailing bytes", ErrMalformed, len(body))
	}
	return recs, nil
}

// count reads a uvarint count of items of at least one byte each.
func count(body []byte) (int, []byte, error) {
	n, k := binary.Uvarint(body)
	if k <= 0 || n > uint64(len(body)-k) {
		return 0, nil, fmt.Errorf("%w: bad count", ErrMalformed)
	}
	return int(n), body[k:], nil
}

// appendMarks encodes a DELIVER response: a uvarint count, then each mark
// as three uvarints, source, destination and stream.
func appendMarks(dst []byte, marks []timeline.AppliedMark) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(marks)))
	for _, m := range marks {
		dst = binary.AppendUvarint(dst, uint64(m.Source))
		dst = binary.AppendUvarint(dst, uint64(m.Dest))
		dst = binary.AppendUvarint(dst, m.Stream)
	}
	return dst
}

// maxShard bounds a shard number on the wire: far above any keyspace's
// shard count, and an int on every platform.
const maxShard = 1 << 30

// decodeMarks decodes what appendMarks encoded.
func decodeMarks(body []byte) ([]timeline.AppliedMark, error) {
	n, body, err := count(body)
	if err != nil {
		return nil, err
	}
	marks := make([]timeline.AppliedMark, n)
	for i := range marks {
		var v [3]uint64
		for j := range v {
			var k int
			if v[j], k = binary.Uvarint(body); k <= 0 {
				return nil, fmt.Errorf("%w: mark %d", ErrMalformed, i)
			}
			body = body[k:]
		}
		if v[0] >= maxShard || v[1] >= maxShard {
			return nil, fmt.Errorf("%w: mark %d: shard out of range", ErrMalformed, i)
		}
		marks[i] = timeline.AppliedMark{Source: int(v[0]), Dest: int(v[1]), Stream: v[2]}
	}
	if len(body) > 0 {
		return nil, fmt.Errorf("%w: %d trailing bytes", ErrMalformed, len(body))
	}
	return marks, nil
}

// forwardHeader is the size of a FORWARD body's header: the acting user
// (8 bytes) and the client's command (2 bytes), big-endian, before the
// client's request body.
const forwardHeader = 10

// appendForward encodes a FORWARD body.
func appendForward(dst []byte, user uint64, cmd wire.Command, body []byte) []byte {
	dst = binary.BigEndian.AppendUint64(dst, user)
	dst = binary.BigEndian.AppendUint16(dst, uint16(cmd))
	return append(dst, body...)
}

// decodeForward decodes what appendForward encoded; body aliases b.
func decodeForward(b []byte) (user uint64, cmd wire.Command, body []byte, err error) {
	if len(b) < forwardHeader {
		return 0, 0, nil, fmt.Errorf("%w: a forward of %d bytes", ErrMalformed, len(b))
	}
	return binary.BigEndian.Uint64(b), wire.Command(binary.BigEndian.Uint16(b[8:])), b[forwardHeader:], nil
}

// appendTyping encodes a TYPING_EVENT body: the conversation, the typist,
// a count and the recipients, each a uvarint.
func appendTyping(dst []byte, conv, user uint64, to []uint64) []byte {
	dst = binary.AppendUvarint(dst, conv)
	dst = binary.AppendUvarint(dst, user)
	return appendUsers(dst, to)
}

// decodeTyping decodes what appendTyping encoded.
func decodeTyping(body []byte) (conv, user uint64, to []uint64, err error) {
	var k int
	if conv, k = binary.Uvarint(body); k <= 0 {
		return 0, 0, nil, fmt.Errorf("%w: typing event: conv", ErrMalformed)
	}
	body = body[k:]
	if user, k = binary.Uvarint(body); k <= 0 {
		return 0, 0, nil, fmt.Errorf("%w: typing event: user", ErrMalformed)
	}
	to, err = decodeUsers(body[k:])
	return conv, user, to, err
}

// appendUsers encodes a list of user ids: a uvarint count, then each id as
// a uvarint. It is the body of PRESENCE and of its answer.
func appendUsers(dst []byte, users []uint64) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(users)))
	for _, u := range users {
		dst = binary.AppendUvarint(dst, u)
	}
	return dst
}

// decodeUsers decodes what appendUsers encoded, allocating at most in
// proportion to len(body).
func decodeUsers(body []byte) ([]uint64, error) {
	n, body, err := count(body)
	if err != nil {
		return nil, err
	}
	users := make([]uint64, n)
	for i := range users {
		var k int
		if users[i], k = binary.Uvarint(body); k <= 0 {
			return nil, fmt.Errorf("%w: user %d", ErrMalformed, i)
		}
		body = body[k:]
	}
	if len(body) > 0 {
		return nil, fmt.Errorf("%w: %d trailing bytes", ErrMalformed, len(body))
	}
	return users, nil
}

package wire

import (
	"crypto/sha256"
	"encoding/binary"
)

// DirectBit is set in the id of every direct conversation and in no group's:
// group ids are snowflake ids, below 2^63.
const DirectBit uint64 = 1 << 63

// DirectConv returns the id of the direct conversation of users a and b,
// the same whichever is given first (docs/protocol.md, "Direct
// conversations"): the first 8 bytes of SHA-256 over the smaller id then the
// larger, each 8 bytes big-endian, read big-endian, with DirectBit set. A
// client may compute it to open a conversation before any message.
func DirectConv(a, b uint64) uint64 {
	lo, hi := min(a, b), max(a, b)
	var buf [16]byte
	binary.BigEndian.PutUint64(buf[:8], lo)
	binary.BigEndian.PutUint64(buf[8:], hi)
	sum := sha256.Sum256(buf[:])
	return binary.BigEndian.Uint64(sum[:8]) | DirectBit
}

// IsDirect reports whether conv is the id of a direct conversation.
func IsDirect(conv uint64) bool { return conv&DirectBit != 0 }

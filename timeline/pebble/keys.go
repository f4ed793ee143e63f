package pebble

import (
	"encoding/binary"
	"fmt"
	"time"
)

// Record type prefixes; see the package doc for the layout behind each.
const (
	prefixInbox        = 'i'
	prefixMessage      = 'c'
	prefixGroup        = 'g'
	prefixMember       = 'm'
	prefixConversation = 'u'
	prefixMarker       = 'r'
	prefixActivity     = 'a'
	prefixDedup        = 'd'
	prefixClock        = 'k'
	prefixVersion      = 'v'
	prefixOutbox       = 'o'
	prefixOutboxLow    = 'w'
	prefixApplied      = 'p'
	prefixMention      = 'n'
)

const (
	idKeyLen   = 1 + 8     // prefix, id
	pairKeyLen = 1 + 8 + 8 // prefix, id, id or seq
)

// appendKey appends prefix and the big-endian ids to dst.
func appendKey(dst []byte, prefix byte, ids ...uint64) []byte {
	dst = append(dst, prefix)
	for _, id := range ids {
		dst = binary.BigEndian.AppendUint64(dst, id)
	}
	return dst
}

// appendDedupKey appends the key of the dedup record of (sender, clientMsgID).
// The sender is fixed-width, so the variable-length id at the end cannot make
// two pairs share a key.
func appendDedupKey(dst []byte, sender uint64, clientMsgID string) []byte {
	return append(appendKey(dst, prefixDedup, sender), clientMsgID...)
}

// prefixEnd returns the smallest key greater than every key that starts with
// p, or nil (no upper bound) when p is all 0xFF. It reuses p's memory.
func prefixEnd(p []byte) []byte {
	for i := len(p) - 1; i >= 0; i-- {
		if p[i] != 0xFF {
			p[i]++
			return p[:i+1]
		}
	}
	return nil
}

// bounds returns the key bounds [lower, upper) of the entries of timeline id
// with seqs from..to (to == 0: unbounded), and ok false when there are none.
func bounds(prefix byte, id, from, to uint64) (lower, upper []byte, ok bool) {
	if to != 0 && from > to {
		return nil, nil, false
	}
	lower = appendKey(make([]byte, 0, pairKeyLen), prefix, id, from)
	if to == 0 || to == ^uint64(0) {
		upper = prefixEnd(appendKey(make([]byte, 0, idKeyLen), prefix, id))
	} else {
		upper = appendKey(make([]byte, 0, pairKeyLen), prefix, id, to+1)
	}
	return lower, upper, true
}

const activityKeyLen = 1 + 8 + 8 + 8 // prefix, user, time, conv

// appendActivityKey appends the key of conv in user's activity index. Time
// and conv are stored inverted, so that ascending key order is the index's
// order: the latest activity first, then the higher conv id. The time, in
// Unix milliseconds, has its sign bit flipped first, so that its unsigned
// order is its signed order.
func appendActivityKey(dst []byte, user uint64, at time.Time, conv uint64) []byte {
	return appendKey(dst, prefixActivity, user, ^(uint64(at.UnixMilli()) ^ 1<<63), ^conv)
}

// activityWindow is how finely activity index keys order. A key holds the
// start of the window its entry's activity time falls in and the value the
// exact time, so that while a conversation's messages stay within one
// window a commit rewrites each member's entry in place (one record) rather
// than moving it (a delete and a set, and a tombstone for the compactions);
// a read orders a window's entries by the times they hold (recentScan), and
// so reads every key of the windows at a page's two ends. A tenth of a
// second keeps most commits of a busy group in place (a group of 100 at 50
// messages a second) while a user whose conversations all had a message
// within one window is rare; a second made a CONVERSATIONS page 2-3x
// slower for a user who had joined 10,000 groups in a few seconds
// (docs/benchmarks.md).
const activityWindow = 100 * time.Millisecond

func windowOf(t time.Time) time.Time { return t.Truncate(activityWindow) }

// activityKeyEntry returns the conv id and the window of an activity index
// key.
func activityKeyEntry(key []byte) (conv uint64, at time.Time, err error) {
	if len(key) != activityKeyLen {
		return 0, time.Time{}, fmt.Errorf("%w: activity key of %d bytes, want %d", errCorrupt, len(key), activityKeyLen)
	}
	ms := int64(^binary.BigEndian.Uint64(key[9:17]) ^ 1<<63)
	return ^binary.BigEndian.Uint64(key[17:]), time.UnixMilli(ms), nil
}

// pairKeyIDs returns the two ids of a key of the form prefix id(8) id(8).
func pairKeyIDs(key []byte) (a, b uint64, err error) {
	if len(key) != pairKeyLen {
		return 0, 0, fmt.Errorf("%w: key of %d bytes, want %d", errCorrupt, len(key), pairKeyLen)
	}
	return binary.BigEndian.Uint64(key[1:9]), binary.BigEndian.Uint64(key[9:]), nil
}

package pebble

import (
	"bytes"
	"testing"
	"time"

	"github.com/inboxd/inboxd/timeline"
)

// FuzzDecodeRestriction: any key and value decode or fail without a panic,
// and what decodes encodes back to the same bytes.
func FuzzDecodeRestriction(f *testing.F) {
	r := timeline.Restriction{User: 42, Device: "phone", Banned: true, RevokedBefore: time.Unix(1_800_000_000, 0)}
	f.Add(append(appendKey(nil, prefixRestriction, r.User), r.Device...), appendRestrictionValue(nil, r))
	f.Add(appendKey(nil, prefixRestriction, 7), []byte{0, 0})
	f.Add([]byte{prefixRestriction}, []byte{2, 1})
	f.Fuzz(func(t *testing.T, key, val []byte) {
		r, err := decodeRestriction(key, val)
		if err != nil {
			return
		}
		k := append(appendKey(nil, prefixRestriction, r.User), r.Device...)
		if !bytes.Equal(k[1:], key[1:]) || !bytes.Equal(appendRestrictionValue(nil, r), val) {
			t.Fatalf("%x %x decodes as %+v, which encodes as %x %x", key, val, r, k, appendRestrictionValue(nil, r))
		}
	})
}

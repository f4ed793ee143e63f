package timeline

import (
	"reflect"
	"testing"
	"time"

	"github.com/inboxd/inboxd/wire"
)

func sampleRecord() OutboxRecord {
	return OutboxRecord{
		Source: 7, Seq: 42, Conv: 1 << 60, ConvSeq: 9, MsgID: 1<<63 + 5, Kind: wire.KindNotice,
		Time: time.UnixMilli(1_700_000_000_123), Prev: time.UnixMilli(1_700_000_000_000),
		Dests: []OutboxDest{
			{Shard: 3, Stream: 11, Recipients: []Recipient{{User: 5, Effects: EffectJoin | EffectSender}, {User: 6}}},
			{Shard: 200, Stream: 1, Recipients: []Recipient{{User: 1<<64 - 1, Effects: EffectLeave | EffectNoPush | EffectDND}}},
		},
	}
}

func TestOutboxRecordRoundTrip(t *testing.T) {
	for _, r := range []OutboxRecord{sampleRecord(), {Source: 0, Seq: 1}} {
		data, err := r.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		var got OutboxRecord
		if err := got.UnmarshalBinary(data); err != nil {
			t.Fatalf("UnmarshalBinary: %v", err)
		}
		if !reflect.DeepEqual(got, r) {
			t.Fatalf("round trip:\n got %+v\nwant %+v", got, r)
		}
	}
}

func TestOutboxRecordCorrupt(t *testing.T) {
	r := sampleRecord()
	data, _ := r.MarshalBinary()
	for name, bad := range map[string][]byte{
		"empty":    nil,
		"format":   append([]byte{9}, data[1:]...),
		"short":    data[:len(data)-1],
		"trailing": append(append([]byte{}, data...), 0),
		"effects":  append(append([]byte{}, data[:len(data)-1]...), 0x80),
	} {
		var got OutboxRecord
		if err := got.UnmarshalBinary(bad); err == nil {
			t.Errorf("%s: decoded %+v, want an error", name, got)
		}
	}
}

func FuzzOutboxRecord(f *testing.F) {
	r := sampleRecord()
	data, _ := r.MarshalBinary()
	f.Add(data)
	f.Add([]byte{recordFormat})
	f.Fuzz(func(t *testing.T, data []byte) {
		var r OutboxRecord
		if r.UnmarshalBinary(data) != nil {
			return
		}
		again, err := r.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		var r2 OutboxRecord
		if err := r2.UnmarshalBinary(again); err != nil || !reflect.DeepEqual(r, r2) {
			t.Fatalf("re-encoding changed the record: %v\n%+v\n%+v", err, r, r2)
		}
	})
}

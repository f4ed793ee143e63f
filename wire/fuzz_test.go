package wire_test

import (
	"bytes"
	"errors"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	"github.com/inboxd/inboxd/wire"
	"github.com/inboxd/inboxd/wire/wirepb"
)

func FuzzSplit(f *testing.F) {
	f.Add(frame(2, 1, 1, 3, 7, []byte{8, 42}), uint32(wire.DefaultMaxFrame))
	f.Add(frame(0, 1, 0, 2, 0, nil), uint32(wire.HeaderSize))
	f.Add(frame(1<<31, 1, 0, 3, 1, nil), uint32(wire.DefaultMaxFrame))
	f.Add(frame(2, 2, 0, 3, 1, []byte{1, 2}), uint32(64))
	f.Add(concat(frame(1, 1, 0, 4, 0, []byte{0}), frame(0, 1, 0, 2, 0, nil)), uint32(13))
	f.Fuzz(func(t *testing.T, buf []byte, maxFrame uint32) {
		fr, n, err := wire.Split(buf, int(maxFrame))
		if err != nil {
			if n != 0 {
				t.Fatalf("n = %d with error %v", n, err)
			}
			if !errors.Is(err, wire.ErrVersion) && !errors.Is(err, wire.ErrFrameTooLarge) {
				t.Fatalf("unexpected error %v", err)
			}
			return
		}
		if n == 0 {
			return
		}
		if n > len(buf) || n > int(maxFrame) || n < wire.HeaderSize {
			t.Fatalf("n = %d, len(buf) = %d, maxFrame = %d", n, len(buf), maxFrame)
		}
		if int(fr.Length) != len(fr.Body) || n != wire.HeaderSize+len(fr.Body) || fr.Version != wire.Version {
			t.Fatalf("header %+v does not match body of %d bytes and n = %d", fr.Header, len(fr.Body), n)
		}
		if !bytes.Equal(fr.Body, buf[wire.HeaderSize:n]) || cap(fr.Body) != len(fr.Body) {
			t.Fatal("body is not buf[HeaderSize:n] capped at its length")
		}
		// The header re-encodes to the same bytes.
		h := wire.AppendHeader(nil, fr.Command, fr.Flags, fr.RequestID, int(fr.Length))
		if !bytes.Equal(h, buf[:wire.HeaderSize]) {
			t.Fatalf("header %x re-encodes as %x", buf[:wire.HeaderSize], h)
		}
	})
}

// bodyTypeList is every message of inboxd.proto, in declaration order: the
// first fuzz byte picks the type to decode into.
func bodyTypeList(tb testing.TB) []protoreflect.MessageType {
	msgs := wirepb.File_inboxd_proto.Messages()
	types := make([]protoreflect.MessageType, msgs.Len())
	for i := range msgs.Len() {
		mt, err := protoregistry.GlobalTypes.FindMessageByName(msgs.Get(i).FullName())
		if err != nil {
			tb.Fatal(err)
		}
		types[i] = mt
	}
	return types
}

func FuzzDecode(f *testing.F) {
	types := bodyTypeList(f)
	index := make(map[protoreflect.FullName]byte)
	for i, mt := range types {
		index[mt.Descriptor().FullName()] = byte(i)
	}
	for _, m := range examples() {
		b, err := proto.Marshal(m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(index[m.ProtoReflect().Descriptor().FullName()], b)
	}
	f.Add(byte(0), []byte{0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Fuzz(func(t *testing.T, which byte, body []byte) {
		mt := types[int(which)%len(types)]
		m := mt.New().Interface()
		if err := wire.Decode(body, m); err != nil {
			if !errors.Is(err, wire.ErrBody) {
				t.Fatalf("Decode error %v does not wrap ErrBody", err)
			}
			return
		}
		// What decodes must encode, and decode again to the same value
		// (unknown fields included: a newer peer's fields survive a relay).
		frame, err := wire.AppendFrame(nil, wire.CmdPush, 0, 0, m)
		if err != nil {
			t.Fatalf("encode %s decoded from %x: %v", mt.Descriptor().Name(), body, err)
		}
		fr, n, err := wire.Split(frame, len(frame))
		if err != nil || n != len(frame) {
			t.Fatalf("Split of our own frame: n = %d of %d, %v", n, len(frame), err)
		}
		again := mt.New().Interface()
		if err := wire.Decode(fr.Body, again); err != nil {
			t.Fatalf("re-decode %s: %v", mt.Descriptor().Name(), err)
		}
		if !proto.Equal(m, again) {
			t.Fatalf("%s not stable: %v then %v", mt.Descriptor().Name(), m, again)
		}
	})
}

func FuzzParseAmend(f *testing.F) {
	f.Add([]byte(`{"conv_seq":7,"msg_id":9,"actor":3}`))
	f.Add([]byte(`{"conv_seq":7,"msg_id":9,"actor":3,"body":"aGk=","prev":8}`))
	f.Add([]byte(`{"conv_seq":0}`))
	f.Add([]byte(`{"body":"!!"}`))
	f.Add([]byte(`[`))
	f.Fuzz(func(t *testing.T, body []byte) {
		a, err := wire.ParseAmend(body)
		if err != nil {
			if !errors.Is(err, wire.ErrAmend) {
				t.Fatalf("error %v does not wrap ErrAmend", err)
			}
			return
		}
		if a.ConvSeq == 0 {
			t.Fatalf("accepted an amend of conv_seq 0: %+v", a)
		}
		again, err := wire.ParseAmend(a.Marshal())
		if err != nil || again.ConvSeq != a.ConvSeq || again.MsgID != a.MsgID || again.Actor != a.Actor ||
			again.Prev != a.Prev || !bytes.Equal(again.Body, a.Body) {
			t.Fatalf("round trip of %+v gave %+v, %v", a, again, err)
		}
	})
}

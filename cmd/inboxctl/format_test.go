package main

import (
	"bytes"
	"testing"

	"github.com/inboxd/inboxd/wire/wirepb"
)

const t0 = 1_893_456_000_000 // 2030-01-01T00:00:00Z in ms

func text(convSeq uint64, body string) *wirepb.Message {
	return &wirepb.Message{Conv: 7, ConvSeq: convSeq, MsgId: 1_869_000_000_000_000_001, Sender: 42, ClientMsgId: "m-1", Kind: 1, Body: []byte(body), TimeMs: t0 + 123}
}

var notice = &wirepb.Message{Conv: 7, ConvSeq: 4, MsgId: 9, Sender: 43, Kind: 0x8001, TimeMs: t0 + 1000,
	Body: []byte(`{"type":"join","actor":43,"text":"43 joined the group"}`)}

func TestEntryFormat(t *testing.T) {
	tests := []struct {
		name        string
		e           *wirepb.Entry
		human, json string
	}{
		{
			"text", &wirepb.Entry{Seq: 18, Conv: 7, ConvSeq: 3, MsgId: 1, Kind: 1, Message: text(3, "hello")},
			"#18 conv 7 @3 2030-01-01 00:00:00 <42> hello",
			`{"seq":18,"conv":"7","conv_seq":3,"kind":1,"message":{"conv":"7","conv_seq":3,"msg_id":"1869000000000000001","sender":42,"client_msg_id":"m-1","kind":1,"time":"2030-01-01T00:00:00.123Z","text":"hello"}}`,
		},
		{
			"text on two lines", &wirepb.Entry{Seq: 18, Conv: 7, ConvSeq: 3, Kind: 1, Message: text(3, "a\nb")},
			`#18 conv 7 @3 2030-01-01 00:00:00 <42> "a\nb"`,
			`{"seq":18,"conv":"7","conv_seq":3,"kind":1,"message":{"conv":"7","conv_seq":3,"msg_id":"1869000000000000001","sender":42,"client_msg_id":"m-1","kind":1,"time":"2030-01-01T00:00:00.123Z","text":"a\nb"}}`,
		},
		{
			"read marker", &wirepb.Entry{Seq: 19, Conv: 7, ConvSeq: 3, Kind: 0x8002},
			"#19 conv 7 read up to @3",
			`{"seq":19,"conv":"7","conv_seq":3,"kind":32770,"read_seq":3}`,
		},
		{
			"do-not-disturb on", &wirepb.Entry{Seq: 20, Conv: 7, ConvSeq: 1, Kind: 0x8003},
			"#20 conv 7 do-not-disturb on",
			`{"seq":20,"conv":"7","conv_seq":1,"kind":32771,"dnd":true}`,
		},
		{
			"do-not-disturb off", &wirepb.Entry{Seq: 20, Conv: 7, Kind: 0x8003},
			"#20 conv 7 do-not-disturb off",
			`{"seq":20,"conv":"7","conv_seq":0,"kind":32771,"dnd":false}`,
		},
		{
			"notice", &wirepb.Entry{Seq: 20, Conv: 7, ConvSeq: 4, Kind: 0x8001, Message: notice},
			"#20 conv 7 @4 2030-01-01 00:00:01 * 43 joined the group",
			`{"seq":20,"conv":"7","conv_seq":4,"kind":32769,"message":{"conv":"7","conv_seq":4,"msg_id":"9","sender":43,"kind":32769,"time":"2030-01-01T00:00:01.000Z","notice":{"type":"join","actor":43,"text":"43 joined the group"}}}`,
		},
		{
			"other kind", &wirepb.Entry{Seq: 21, Conv: 7, ConvSeq: 5, Kind: 9, Message: &wirepb.Message{Conv: 7, ConvSeq: 5, MsgId: 10, Sender: 42, Kind: 9, Body: []byte{1, 2, 3}, TimeMs: t0}},
			"#21 conv 7 @5 2030-01-01 00:00:00 <42> [kind 9, 3 bytes]",
			`{"seq":21,"conv":"7","conv_seq":5,"kind":9,"message":{"conv":"7","conv_seq":5,"msg_id":"10","sender":42,"kind":9,"time":"2030-01-01T00:00:00.000Z","body":"AQID"}}`,
		},
	}
	for _, tt := range tests {
		for _, json := range []bool{false, true} {
			var b bytes.Buffer
			if err := (printer{w: &b, json: json}).entry(tt.e); err != nil {
				t.Fatal(err)
			}
			want := tt.human
			if json {
				want = tt.json
			}
			if got := b.String(); got != want+"\n" {
				t.Errorf("%s (json %v):\n got %s\nwant %s", tt.name, json, got, want)
			}
		}
	}
}

func TestHistoryOldestFirst(t *testing.T) {
	var b bytes.Buffer
	newest := []*wirepb.Message{notice, text(3, "hello")}
	if err := (printer{w: &b}).history(newest); err != nil {
		t.Fatal(err)
	}
	want := "@3 2030-01-01 00:00:00 <42> hello\n@4 2030-01-01 00:00:01 * 43 joined the group\n"
	if b.String() != want {
		t.Errorf("got\n%s\nwant\n%s", b.String(), want)
	}
}

func TestConversationsFormat(t *testing.T) {
	convs := []*wirepb.Conversation{
		{Conv: 7, Name: "ops", JoinedAt: 1, ReadSeq: 2, Head: 3, Unread: 1, Last: text(3, "hello")},
		{Conv: 12, Name: "42 and 43", JoinedAt: 1, LeftAt: 5, ReadSeq: 5, Head: 5, Dnd: true},
	}
	var b bytes.Buffer
	if err := (printer{w: &b}).conversations(convs); err != nil {
		t.Fatal(err)
	}
	want := "" +
		"CONV  NAME                    UNREAD  LAST\n" +
		"7     ops                     1       @3 2030-01-01 00:00:00 <42> hello\n" +
		"12    42 and 43 (left) (dnd)  0       \n"
	if b.String() != want {
		t.Errorf("got\n%s\nwant\n%s", b.String(), want)
	}
	b.Reset()
	if err := (printer{w: &b, json: true}).conversations(convs[1:]); err != nil {
		t.Fatal(err)
	}
	if want := `{"conv":"12","name":"42 and 43","joined_at":1,"left_at":5,"read_seq":5,"head":5,"unread":0,"dnd":true}` + "\n"; b.String() != want {
		t.Errorf("got %s want %s", b.String(), want)
	}
}

func TestSmallOutputs(t *testing.T) {
	tests := []struct {
		name        string
		print       func(p printer) error
		human, json string
	}{
		{
			"ack", func(p printer) error {
				return p.ack("m-1", &wirepb.SendAck{MsgId: 5, ConvSeq: 3, TimeMs: t0, Duplicate: true})
			},
			"sent @3, msg id 5, client msg id m-1 (already stored: this is the first send's result)",
			`{"client_msg_id":"m-1","msg_id":"5","conv_seq":3,"time":"2030-01-01T00:00:00.000Z","duplicate":true}`,
		},
		{
			"group", func(p printer) error {
				return p.group(&wirepb.Group{Id: 7, Name: "ops", Owner: 42, CreatedMs: t0, Open: true})
			},
			`group 7 "ops", owner 42, open`,
			`{"id":"7","name":"ops","owner":42,"created":"2030-01-01T00:00:00.000Z","open":true}`,
		},
		{
			"marker", func(p printer) error { return p.marker(7, 3) },
			"read marker of 7 at @3",
			`{"conv":"7","read_seq":3}`,
		},
	}
	for _, tt := range tests {
		var h, j bytes.Buffer
		if err := tt.print(printer{w: &h}); err != nil {
			t.Fatal(err)
		}
		if err := tt.print(printer{w: &j, json: true}); err != nil {
			t.Fatal(err)
		}
		if h.String() != tt.human+"\n" || j.String() != tt.json+"\n" {
			t.Errorf("%s:\n got %s %s\nwant %s\n %s", tt.name, h.String(), j.String(), tt.human, tt.json)
		}
	}
	var b bytes.Buffer
	if err := (printer{w: &b, json: true}).done("left 7"); err != nil || b.Len() != 0 {
		t.Errorf("done with --json printed %q", b.String())
	}
}

func TestGroupInfoFormat(t *testing.T) {
	info := &wirepb.GroupInfoResponse{
		Group: &wirepb.Group{Id: 7, Name: "ops", Owner: 42, CreatedMs: t0},
		Members: []*wirepb.Member{
			{User: 42, Role: 3, JoinedAt: 1},
			{User: 43, Role: 2, JoinedAt: 1},
			{User: 44, Role: 1, JoinedAt: 5, MutedUntilMs: t0 + 3_600_000},
		},
	}
	var b bytes.Buffer
	if err := (printer{w: &b}).groupInfo(info); err != nil {
		t.Fatal(err)
	}
	want := "" +
		"group 7 \"ops\", owner 42\n" +
		"USER  ROLE    JOINED  MUTED UNTIL\n" +
		"42    owner   @1      \n" +
		"43    admin   @1      \n" +
		"44    member  @5      2030-01-01T01:00:00.000Z\n"
	if b.String() != want {
		t.Errorf("got\n%s\nwant\n%s", b.String(), want)
	}
	b.Reset()
	if err := (printer{w: &b, json: true}).groupInfo(info); err != nil {
		t.Fatal(err)
	}
	want = `{"group":{"id":"7","name":"ops","owner":42,"created":"2030-01-01T00:00:00.000Z"},"members":[` +
		`{"user":42,"role":"owner","joined_at":1},{"user":43,"role":"admin","joined_at":1},` +
		`{"user":44,"role":"member","joined_at":5,"muted_until":"2030-01-01T01:00:00.000Z"}]}` + "\n"
	if b.String() != want {
		t.Errorf("got %s want %s", b.String(), want)
	}
}

func TestAmendAndMentionFormat(t *testing.T) {
	mentioning := text(3, "hi @43")
	mentioning.Mentions, mentioning.EditedMs = []uint64{43, 44}, t0+5000
	all := text(4, "hi all")
	all.MentionAll = true
	recalled := &wirepb.Message{Conv: 7, ConvSeq: 5, MsgId: 11, Sender: 42, Kind: 1, TimeMs: t0, Recalled: true}
	edit := &wirepb.Message{Conv: 7, ConvSeq: 6, MsgId: 12, Sender: 42, Kind: 0x8006, TimeMs: t0,
		Body: []byte(`{"conv_seq":3,"msg_id":1,"actor":42,"body":"aGkgQDQz"}`)}
	editGone := &wirepb.Message{Conv: 7, ConvSeq: 7, MsgId: 13, Sender: 42, Kind: 0x8006, TimeMs: t0, Recalled: true,
		Body: []byte(`{"conv_seq":5,"msg_id":11,"actor":42}`)}
	recall := &wirepb.Message{Conv: 7, ConvSeq: 8, MsgId: 14, Sender: 1, Kind: 0x8005, TimeMs: t0,
		Body: []byte(`{"conv_seq":5,"msg_id":11,"actor":1}`)}
	systemRecall := &wirepb.Message{Conv: 7, ConvSeq: 9, MsgId: 15, Kind: 0x8005, TimeMs: t0,
		Body: []byte(`{"conv_seq":3,"msg_id":1,"actor":0}`)}
	tests := []struct {
		m           *wirepb.Message
		human, json string
	}{
		{mentioning, "@3 2030-01-01 00:00:00 <42> hi @43 (edited) @43 @44",
			`{"conv":"7","conv_seq":3,"msg_id":"1869000000000000001","sender":42,"client_msg_id":"m-1","kind":1,"time":"2030-01-01T00:00:00.123Z","text":"hi @43","mentions":[43,44],"edited":"2030-01-01T00:00:05.000Z"}`},
		{all, "@4 2030-01-01 00:00:00 <42> hi all @all",
			`{"conv":"7","conv_seq":4,"msg_id":"1869000000000000001","sender":42,"client_msg_id":"m-1","kind":1,"time":"2030-01-01T00:00:00.123Z","text":"hi all","mention_all":true}`},
		{recalled, "@5 2030-01-01 00:00:00 <42> [recalled]",
			`{"conv":"7","conv_seq":5,"msg_id":"11","sender":42,"kind":1,"time":"2030-01-01T00:00:00.000Z","text":"","recalled":true}`},
		{edit, "@6 2030-01-01 00:00:00 * 42 edited @3: hi @43",
			`{"conv":"7","conv_seq":6,"msg_id":"12","sender":42,"kind":32774,"time":"2030-01-01T00:00:00.000Z","amend":{"conv_seq":3,"msg_id":1,"actor":42,"body":"aGkgQDQz"}}`},
		{editGone, "@7 2030-01-01 00:00:00 * 42 edited @5, since recalled",
			`{"conv":"7","conv_seq":7,"msg_id":"13","sender":42,"kind":32774,"time":"2030-01-01T00:00:00.000Z","amend":{"conv_seq":5,"msg_id":11,"actor":42},"recalled":true}`},
		{recall, "@8 2030-01-01 00:00:00 * 1 recalled @5",
			`{"conv":"7","conv_seq":8,"msg_id":"14","sender":1,"kind":32773,"time":"2030-01-01T00:00:00.000Z","amend":{"conv_seq":5,"msg_id":11,"actor":1}}`},
		{systemRecall, "@9 2030-01-01 00:00:00 * the system recalled @3",
			`{"conv":"7","conv_seq":9,"msg_id":"15","sender":0,"kind":32773,"time":"2030-01-01T00:00:00.000Z","amend":{"conv_seq":3,"msg_id":1,"actor":0}}`},
	}
	for _, tt := range tests {
		for _, json := range []bool{false, true} {
			var b bytes.Buffer
			if err := (printer{w: &b, json: json}).history([]*wirepb.Message{tt.m}); err != nil {
				t.Fatal(err)
			}
			want := tt.human
			if json {
				want = tt.json
			}
			if got := b.String(); got != want+"\n" {
				t.Errorf("conv_seq %d (json %v):\n got %s\nwant %s", tt.m.ConvSeq, json, got, want)
			}
		}
	}

	var b bytes.Buffer
	convs := []*wirepb.Conversation{{Conv: 7, Name: "ops", JoinedAt: 1, Head: 4, Unread: 4, MentionUnread: 2}}
	if err := (printer{w: &b}).conversations(convs); err != nil {
		t.Fatal(err)
	}
	if want := "CONV  NAME  UNREAD  LAST\n7     ops   4 (2@)  \n"; b.String() != want {
		t.Errorf("got\n%q\nwant\n%q", b.String(), want)
	}
}

package wire_test

import (
	"bytes"
	"encoding/hex"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	"github.com/inboxd/inboxd/wire"
	"github.com/inboxd/inboxd/wire/wirepb"
)

var update = flag.Bool("update", false, "rewrite the hex of testdata/frames.txt and docs/protocol.md from their decoded lines")

// A frame case is one example in testdata/frames.txt or in a ```frame block
// of docs/protocol.md:
//
//	# what the frame is
//	00000004 01 00 0003 00000007
//	08 07 10 03
//	=> SEND flags=0 id=7 SendRequest {"conv": "7"}
//
// The hex lines hold the whole frame (spaces are ignored); the decoded line
// gives the command, the flags (0, response or response|error), the request
// id, the body's message type and the body in protojson. Lines starting
// with // are comments.
type frameCase struct {
	name     string
	line     int // 1-based line of the name, for messages
	hexLines [2]int
	frame    []byte
	decoded  string
}

// parseFrameCases reads the cases in lines[from:to]; line numbers in errors
// and in the cases index the whole of lines.
func parseFrameCases(lines []string, from, to int) ([]frameCase, error) {
	var cases []frameCase
	var c *frameCase
	for i := from; i < to; i++ {
		l := strings.TrimSpace(lines[i])
		switch {
		case l == "" || strings.HasPrefix(l, "//"):
			continue
		case strings.HasPrefix(l, "#"):
			cases = append(cases, frameCase{name: strings.TrimSpace(l[1:]), line: i + 1, hexLines: [2]int{i + 1, i + 1}})
			c = &cases[len(cases)-1]
		case c == nil:
			return nil, fmt.Errorf("line %d: %q before the first # name", i+1, l)
		case strings.HasPrefix(l, "=>"):
			if c.decoded != "" {
				return nil, fmt.Errorf("line %d: second decoded line for %q", i+1, c.name)
			}
			c.decoded = strings.TrimSpace(l[2:])
		default:
			if c.decoded != "" || c.hexLines[1] != i {
				return nil, fmt.Errorf("line %d: hex must directly follow the name", i+1)
			}
			b, err := hex.DecodeString(strings.ReplaceAll(l, " ", ""))
			if err != nil {
				return nil, fmt.Errorf("line %d: %w", i+1, err)
			}
			c.frame = append(c.frame, b...)
			c.hexLines[1] = i + 1
		}
	}
	for _, c := range cases {
		if c.decoded == "" {
			return nil, fmt.Errorf("line %d: %q has no decoded line", c.line, c.name)
		}
	}
	return cases, nil
}

// decodedFrame is the meaning of a decoded line.
type decodedFrame struct {
	hdr  wire.Header
	body proto.Message
}

func parseDecoded(s string) (decodedFrame, error) {
	f := strings.SplitN(s, " ", 5)
	if len(f) != 5 {
		return decodedFrame{}, fmt.Errorf("want COMMAND flags=F id=N Type {json}, got %q", s)
	}
	var d decodedFrame
	var ok bool
	if d.hdr.Command, ok = commandByName(f[0]); !ok {
		return d, fmt.Errorf("unknown command %q", f[0])
	}
	switch f[1] {
	case "flags=0":
	case "flags=response":
		d.hdr.Flags = wire.FlagResponse
	case "flags=response|error":
		d.hdr.Flags = wire.FlagResponse | wire.FlagError
	default:
		return d, fmt.Errorf("unknown flags %q", f[1])
	}
	id, err := strconv.ParseUint(strings.TrimPrefix(f[2], "id="), 10, 32)
	if err != nil || !strings.HasPrefix(f[2], "id=") {
		return d, fmt.Errorf("bad request id %q", f[2])
	}
	d.hdr.RequestID = uint32(id)
	mt, err := protoregistry.GlobalTypes.FindMessageByName(protoreflect.FullName("inboxd.v1." + f[3]))
	if err != nil {
		return d, fmt.Errorf("body type %q: %w", f[3], err)
	}
	d.body = mt.New().Interface()
	if err := protojson.Unmarshal([]byte(f[4]), d.body); err != nil {
		return d, fmt.Errorf("body %s: %w", f[3], err)
	}
	d.hdr.Version = wire.Version
	d.hdr.Length = uint32(proto.Size(d.body))
	return d, nil
}

// commandByName reverses Command.String, COMMAND(n) included.
func commandByName(name string) (wire.Command, bool) {
	if n, ok := strings.CutPrefix(name, "COMMAND("); ok {
		c, err := strconv.ParseUint(strings.TrimSuffix(n, ")"), 10, 16)
		return wire.Command(c), err == nil && strings.HasSuffix(n, ")")
	}
	for c := range wire.Command(256) {
		if c.Known() && c.String() == name {
			return c, true
		}
	}
	return 0, false
}

// bodyTypes says which body goes with a command: [request, response]. An
// example whose body does not match is documentation drift too.
var bodyTypes = map[wire.Command][2]string{
	wire.CmdAuth:          {"AuthRequest", "AuthResponse"},
	wire.CmdHeartbeat:     {"Empty", "Empty"},
	wire.CmdSend:          {"SendRequest", "SendAck"},
	wire.CmdPush:          {"Push", ""},
	wire.CmdSync:          {"SyncRequest", "SyncResponse"},
	wire.CmdHistory:       {"HistoryRequest", "HistoryResponse"},
	wire.CmdConversations: {"ConversationsRequest", "ConversationsResponse"},
	wire.CmdMarkRead:      {"MarkReadRequest", "MarkReadResponse"},
	wire.CmdCreateGroup:   {"CreateGroupRequest", "CreateGroupResponse"},
	wire.CmdInvite:        {"InviteRequest", "Empty"},
	wire.CmdJoin:          {"ConvRequest", "Empty"},
	wire.CmdLeave:         {"ConvRequest", "Empty"},
	wire.CmdKick:          {"KickRequest", "Empty"},
	wire.CmdDismiss:       {"ConvRequest", "Empty"},
	wire.CmdSetRole:       {"SetRoleRequest", "Empty"},
	wire.CmdMute:          {"MuteRequest", "Empty"},
	wire.CmdSetDND:        {"SetDNDRequest", "Empty"},
	wire.CmdGroupInfo:     {"ConvRequest", "GroupInfoResponse"},
	wire.CmdError:         {"Error", ""},

	wire.CmdSendDirect:      {"SendDirectRequest", "SendAck"},
	wire.CmdBlock:           {"BlockRequest", "Empty"},
	wire.CmdSetGroupProfile: {"SetGroupProfileRequest", "Empty"},
}

func TestBodyTypesCoverCommands(t *testing.T) {
	for c := range wire.Command(256) {
		if _, ok := bodyTypes[c]; ok != c.Known() {
			t.Errorf("%v: known %v, in bodyTypes %v", c, c.Known(), ok)
		}
	}
}

// checkCase checks a case both ways: its hex splits and decodes to the
// decoded line, and encoding the decoded line gives its hex.
func checkCase(t *testing.T, c frameCase) {
	t.Helper()
	want, err := parseDecoded(c.decoded)
	if err != nil {
		t.Errorf("line %d (%s): %v", c.line, c.name, err)
		return
	}
	typ := string(want.body.ProtoReflect().Descriptor().Name())
	if want.hdr.Flags&wire.FlagError != 0 {
		if typ != "Error" {
			t.Errorf("line %d (%s): an error response carries an Error, not %s", c.line, c.name, typ)
		}
	} else if bt := bodyTypes[want.hdr.Command]; typ != bt[want.hdr.Flags&wire.FlagResponse] {
		t.Errorf("line %d (%s): %v with flags %d carries a %s, not %s", c.line, c.name, want.hdr.Command, want.hdr.Flags, bt[want.hdr.Flags&wire.FlagResponse], typ)
	}

	f, n, err := wire.Split(c.frame, wire.DefaultMaxFrame)
	if err != nil || n != len(c.frame) {
		t.Errorf("line %d (%s): Split: n = %d of %d bytes, err = %v", c.line, c.name, n, len(c.frame), err)
		return
	}
	if f.Header != want.hdr {
		t.Errorf("line %d (%s): header %+v, want %+v", c.line, c.name, f.Header, want.hdr)
	}
	got := want.body.ProtoReflect().New().Interface()
	if err := wire.Decode(f.Body, got); err != nil {
		t.Errorf("line %d (%s): %v", c.line, c.name, err)
	} else if !proto.Equal(got, want.body) {
		t.Errorf("line %d (%s): body decodes to %v, want %v", c.line, c.name, got, want.body)
	}

	enc, err := wire.AppendFrame(nil, want.hdr.Command, want.hdr.Flags, want.hdr.RequestID, want.body)
	if err != nil {
		t.Errorf("line %d (%s): %v", c.line, c.name, err)
	} else if !bytes.Equal(enc, c.frame) {
		t.Errorf("line %d (%s): encoding the decoded line gives\n%s", c.line, c.name, formatFrame(enc, ""))
	}
}

// formatFrame renders a frame as the hex lines of a case: the header with
// its fields apart, then the body 16 bytes a line.
func formatFrame(b []byte, indent string) string {
	var s strings.Builder
	h := hex.EncodeToString(b[:wire.HeaderSize])
	fmt.Fprintf(&s, "%s%s %s %s %s %s\n", indent, h[0:8], h[8:10], h[10:12], h[12:16], h[16:24])
	for body := b[wire.HeaderSize:]; len(body) > 0; {
		n := min(16, len(body))
		fmt.Fprintf(&s, "%s% x\n", indent, body[:n])
		body = body[n:]
	}
	return s.String()
}

// checkFile checks every case of a file and, with -update, rewrites the hex
// of each from its decoded line.
func checkFile(t *testing.T, path string, blocks func(lines []string) [][2]int) {
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(data), "\n")
	var all []frameCase
	for _, b := range blocks(lines) {
		cases, err := parseFrameCases(lines, b[0], b[1])
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		all = append(all, cases...)
	}
	if len(all) == 0 {
		t.Fatalf("%s: no frame examples", path)
	}
	if *update {
		rewrite(t, path, lines, all)
		return
	}
	for _, c := range all {
		checkCase(t, c)
	}
}

func rewrite(t *testing.T, path string, lines []string, cases []frameCase) {
	var out []string
	next := 0
	for _, c := range cases {
		d, err := parseDecoded(c.decoded)
		if err != nil {
			t.Fatalf("%s:%d: %v", path, c.line, err)
		}
		enc, err := wire.AppendFrame(nil, d.hdr.Command, d.hdr.Flags, d.hdr.RequestID, d.body)
		if err != nil {
			t.Fatalf("%s:%d: %v", path, c.line, err)
		}
		indent := lines[c.line-1][:len(lines[c.line-1])-len(strings.TrimLeft(lines[c.line-1], " \t"))]
		out = append(out, lines[next:c.hexLines[0]]...)
		out = append(out, strings.Split(strings.TrimSuffix(formatFrame(enc, indent), "\n"), "\n")...)
		next = c.hexLines[1]
	}
	out = append(out, lines[next:]...)
	if err := os.WriteFile(path, []byte(strings.Join(out, "\n")), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestFrames(t *testing.T) {
	checkFile(t, "testdata/frames.txt", func(lines []string) [][2]int {
		return [][2]int{{0, len(lines)}}
	})
}

// TestProtocolDocFrames keeps the examples of docs/protocol.md true: every
// ```frame block there must decode to what it says, and encode back.
func TestProtocolDocFrames(t *testing.T) {
	checkFile(t, "../docs/protocol.md", fencedBlocks("frame"))
}

// fencedBlocks finds the line ranges inside the ```lang blocks of markdown.
func fencedBlocks(lang string) func(lines []string) [][2]int {
	return func(lines []string) [][2]int {
		var blocks [][2]int
		start := -1
		for i, l := range lines {
			switch {
			case start < 0 && strings.TrimSpace(l) == "```"+lang:
				start = i + 1
			case start >= 0 && strings.TrimSpace(l) == "```":
				blocks = append(blocks, [2]int{start, i})
				start = -1
			}
		}
		return blocks
	}
}

func TestParseFrameCasesErrors(t *testing.T) {
	bad := []string{
		"00 01",             // hex before a name
		"# a\n=> X\n=> Y",   // two decoded lines
		"# a\nzz",           // not hex
		"# a\n00\n=> X\n01", // hex after the decoded line
		"# a\n00",           // no decoded line
		"# a\n00\n\n01\n=> HEARTBEAT flags=0 id=1 Empty {}", // hex split by a blank line
	}
	for _, s := range bad {
		lines := strings.Split(s, "\n")
		if _, err := parseFrameCases(lines, 0, len(lines)); err == nil {
			t.Errorf("%q: no error", s)
		}
	}
	for _, s := range []string{
		"HEARTBEAT flags=0 id=1 Empty",
		"NOPE flags=0 id=1 Empty {}",
		"HEARTBEAT flags=2 id=1 Empty {}",
		"HEARTBEAT flags=0 id=x Empty {}",
		"HEARTBEAT flags=0 id=1 Nope {}",
		"HEARTBEAT flags=0 id=1 Empty {\"x\":1}",
	} {
		if _, err := parseDecoded(s); err == nil {
			t.Errorf("%q: no error", s)
		}
	}
}

// TestFormatFrameParses checks that what -update writes reads back.
func TestFormatFrameParses(t *testing.T) {
	enc, err := wire.AppendFrame(nil, wire.CmdSend, 0, 7, &wirepb.SendRequest{Conv: 7, ClientMsgId: "0123456789abcdef0123", Kind: 1})
	if err != nil {
		t.Fatal(err)
	}
	text := "# a send\n" + formatFrame(enc, "") + `=> SEND flags=0 id=7 SendRequest {"conv":"7","clientMsgId":"0123456789abcdef0123","kind":1}`
	lines := strings.Split(text, "\n")
	cases, err := parseFrameCases(lines, 0, len(lines))
	if err != nil || len(cases) != 1 {
		t.Fatalf("%d cases, err %v", len(cases), err)
	}
	checkCase(t, cases[0])
}

package main

import (
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/inboxd/inboxd/token"
	"github.com/inboxd/inboxd/wire"
	"github.com/inboxd/inboxd/wire/wirepb"
)

// printer writes results for people, or as JSON lines with --json.
type printer struct {
	w    io.Writer
	json bool
}

func newPrinter(a *app) printer { return printer{w: a.stdout, json: a.json} }

func (p printer) emit(v any, human string) error {
	var err error
	if p.json {
		err = json.NewEncoder(p.w).Encode(v)
	} else {
		_, err = fmt.Fprintln(p.w, human)
	}
	return err
}

// The JSON shapes. Group (conv) and message ids are strings: they are
// snowflakes, beyond the 2^53 that JSON numbers hold exactly in most
// languages (JavaScript, jq before 1.7).

type messageJSON struct {
	Conv        uint64       `json:"conv,string"`
	ConvSeq     uint64       `json:"conv_seq"`
	MsgID       uint64       `json:"msg_id,string"`
	Sender      uint64       `json:"sender"`
	ClientMsgID string       `json:"client_msg_id,omitempty"`
	Kind        uint32       `json:"kind"`
	Time        string       `json:"time"`
	Text        *string      `json:"text,omitempty"`   // KindText
	Notice      *wire.Notice `json:"notice,omitempty"` // KindNotice
	Amend       *wire.Amend  `json:"amend,omitempty"`  // KindRecall, KindEdit
	Body        []byte       `json:"body,omitempty"`   // other kinds, base64
	Mentions    []uint64     `json:"mentions,omitempty"`
	MentionAll  bool         `json:"mention_all,omitempty"`
	Recalled    bool         `json:"recalled,omitempty"`
	Edited      string       `json:"edited,omitempty"`
}

type entryJSON struct {
	Seq     uint64       `json:"seq"`
	Conv    uint64       `json:"conv,string"`
	ConvSeq uint64       `json:"conv_seq"`
	Kind    uint32       `json:"kind"`
	ReadSeq uint64       `json:"read_seq,omitempty"` // KindRead: the new marker
	DND     *bool        `json:"dnd,omitempty"`      // KindDND: the new setting
	Message *messageJSON `json:"message,omitempty"`
}

func toMessageJSON(m *wirepb.Message) *messageJSON {
	if m == nil {
		return nil
	}
	j := &messageJSON{
		Conv: m.Conv, ConvSeq: m.ConvSeq, MsgID: m.MsgId,
		Sender: m.Sender, ClientMsgID: m.ClientMsgId, Kind: m.Kind, Time: jsonTime(m.TimeMs),
		Mentions: m.Mentions, MentionAll: m.MentionAll, Recalled: m.Recalled,
	}
	if m.EditedMs != 0 {
		j.Edited = jsonTime(m.EditedMs)
	}
	switch wire.Kind(m.Kind) {
	case wire.KindText:
		if utf8.Valid(m.Body) {
			s := string(m.Body)
			j.Text = &s
			return j
		}
	case wire.KindNotice:
		if n, ok := parseNotice(m.Body); ok {
			j.Notice = &n
			return j
		}
	case wire.KindRecall, wire.KindEdit:
		if a, err := wire.ParseAmend(m.Body); err == nil {
			j.Amend = &a
			return j
		}
	}
	j.Body = m.Body
	return j
}

func parseNotice(body []byte) (wire.Notice, bool) {
	var n wire.Notice
	err := json.Unmarshal(body, &n)
	return n, err == nil
}

func jsonTime(ms int64) string {
	return time.UnixMilli(ms).UTC().Format("2006-01-02T15:04:05.000Z07:00")
}

func humanTime(ms int64) string {
	return time.UnixMilli(ms).UTC().Format("2006-01-02 15:04:05")
}

// entry prints an inbox entry:
//
//	#18 conv 7 @3 2026-01-01 00:00:00 <42> hello
//	#19 conv 7 read up to @3
//	#20 conv 7 do-not-disturb on
//	#21 conv 7 @4 2026-01-01 00:00:01 * 43 joined the group
func (p printer) entry(e *wirepb.Entry) error {
	j := entryJSON{Seq: e.Seq, Conv: e.Conv, ConvSeq: e.ConvSeq, Kind: e.Kind, Message: toMessageJSON(e.Message)}
	human := fmt.Sprintf("#%d conv %d ", e.Seq, e.Conv)
	switch {
	case wire.Kind(e.Kind) == wire.KindRead:
		j.ReadSeq = e.ConvSeq
		human += fmt.Sprintf("read up to @%d", e.ConvSeq)
	case wire.Kind(e.Kind) == wire.KindDND:
		dnd := e.ConvSeq == 1
		j.DND = &dnd
		state := "off"
		if dnd {
			state = "on"
		}
		human += "do-not-disturb " + state
	case e.Message != nil:
		human += messageLine(e.Message)
	default:
		human += fmt.Sprintf("@%d kind %d, no message", e.ConvSeq, e.Kind)
	}
	return p.emit(j, human)
}

// messageLine renders a message on one line: notices by their text, text
// as is (quoted if it would break the line), recalls and edits by what they
// did, other kinds by their size; then what happened to it and whom it
// mentions.
func messageLine(m *wirepb.Message) string {
	return messageText(m) + messageMarks(m)
}

func messageText(m *wirepb.Message) string {
	head := fmt.Sprintf("@%d %s ", m.ConvSeq, humanTime(m.TimeMs))
	switch {
	case m.Recalled && wire.Kind(m.Kind) != wire.KindEdit:
		return head + fmt.Sprintf("<%d> [recalled]", m.Sender)
	case wire.Kind(m.Kind) == wire.KindNotice:
		if n, ok := parseNotice(m.Body); ok {
			return head + "* " + n.Text
		}
	case wire.Kind(m.Kind) == wire.KindText:
		return head + fmt.Sprintf("<%d> %s", m.Sender, oneLine(m.Body))
	case wire.Kind(m.Kind) == wire.KindRecall:
		a, err := wire.ParseAmend(m.Body)
		switch {
		case err == nil && a.Actor == wire.SystemSender: // the server API's recall
			return head + fmt.Sprintf("* the system recalled @%d", a.ConvSeq)
		case err == nil:
			return head + fmt.Sprintf("* %d recalled @%d", a.Actor, a.ConvSeq)
		}
	case wire.Kind(m.Kind) == wire.KindEdit:
		if a, err := wire.ParseAmend(m.Body); err == nil && m.Recalled {
			return head + fmt.Sprintf("* %d edited @%d, since recalled", a.Actor, a.ConvSeq)
		} else if err == nil {
			return head + fmt.Sprintf("* %d edited @%d: %s", a.Actor, a.ConvSeq, oneLine(a.Body))
		}
	}
	return head + fmt.Sprintf("<%d> [kind %d, %d bytes]", m.Sender, m.Kind, len(m.Body))
}

// messageMarks renders " (edited)" and the mentions: " @all", " @43 @44".
func messageMarks(m *wirepb.Message) string {
	var b strings.Builder
	if m.EditedMs != 0 && !m.Recalled {
		b.WriteString(" (edited)")
	}
	if m.MentionAll {
		b.WriteString(" @all")
	}
	for _, u := range m.Mentions {
		fmt.Fprintf(&b, " @%d", u)
	}
	return b.String()
}

// oneLine returns text as is when it is printable UTF-8 on one line, else
// Go-quoted.
func oneLine(b []byte) string {
	s := string(b)
	printable := utf8.ValidString(s) && !strings.ContainsFunc(s, func(r rune) bool {
		return !unicode.IsPrint(r) && r != ' '
	})
	if printable {
		return s
	}
	return strconv.Quote(s)
}

// history prints messages oldest first; the server sends them newest first.
func (p printer) history(msgs []*wirepb.Message) error {
	for _, m := range slices.Backward(msgs) {
		if err := p.emit(toMessageJSON(m), messageLine(m)); err != nil {
			return err
		}
	}
	return nil
}

type conversationJSON struct {
	Conv     uint64 `json:"conv,string"`
	Name     string `json:"name"`
	JoinedAt uint64 `json:"joined_at"`
	LeftAt   uint64 `json:"left_at,omitempty"`
	ReadSeq  uint64 `json:"read_seq"`
	Head     uint64 `json:"head"`
	Unread   uint64 `json:"unread"`
	// MentionUnread counts the unread messages that mention the user.
	MentionUnread uint64       `json:"mention_unread,omitempty"`
	DND           bool         `json:"dnd,omitempty"`
	Last          *messageJSON `json:"last,omitempty"`
	Peer          uint64       `json:"peer,omitempty"` // a direct conversation's other user
}

// conversations prints one conversation a line; for people, as a table.
func (p printer) conversations(convs []*wirepb.Conversation) error {
	if p.json {
		for _, c := range convs {
			j := conversationJSON{Conv: c.Conv, Name: c.Name, JoinedAt: c.JoinedAt, LeftAt: c.LeftAt,
				ReadSeq: c.ReadSeq, Head: c.Head, Unread: c.Unread, MentionUnread: c.MentionUnread, DND: c.Dnd,
				Last: toMessageJSON(c.Last), Peer: c.Peer}
			if err := p.emit(j, ""); err != nil {
				return err
			}
		}
		return nil
	}
	tw := tabwriter.NewWriter(p.w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CONV\tNAME\tUNREAD\tLAST")
	for _, c := range convs {
		name := c.Name
		if c.Direct {
			name = fmt.Sprintf("direct with %d", c.Peer)
		}
		if c.LeftAt != 0 {
			name += " (left)"
		}
		if c.Dnd {
			name += " (dnd)"
		}
		last := ""
		if c.Last != nil {
			last = messageLine(c.Last)
		}
		unread := strconv.FormatUint(c.Unread, 10)
		if c.MentionUnread != 0 {
			unread += fmt.Sprintf(" (%d@)", c.MentionUnread)
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\n", c.Conv, name, unread, last)
	}
	return tw.Flush()
}

type groupJSON struct {
	ID           uint64 `json:"id,string"`
	Name         string `json:"name"`
	Owner        uint64 `json:"owner"`
	Created      string `json:"created"`
	Open         bool   `json:"open,omitempty"`
	MutedUntil   string `json:"muted_until,omitempty"`
	Dismissed    bool   `json:"dismissed,omitempty"`
	Announcement string `json:"announcement,omitempty"`
	AvatarURL    string `json:"avatar_url,omitempty"`
}

func toGroupJSON(g *wirepb.Group) groupJSON {
	j := groupJSON{ID: g.Id, Name: g.Name, Owner: g.Owner, Created: jsonTime(g.CreatedMs), Open: g.Open, Dismissed: g.Dismissed,
		Announcement: g.Announcement, AvatarURL: g.AvatarUrl}
	if g.MutedUntilMs != 0 {
		j.MutedUntil = jsonTime(g.MutedUntilMs)
	}
	return j
}

func (p printer) group(g *wirepb.Group) error {
	j := toGroupJSON(g)
	human := fmt.Sprintf("group %d %q, owner %d", g.Id, g.Name, g.Owner)
	if g.Open {
		human += ", open"
	}
	if g.AvatarUrl != "" {
		human += ", avatar " + g.AvatarUrl
	}
	if g.Announcement != "" {
		human += "\nannouncement: " + g.Announcement
	}
	return p.emit(j, human)
}

type memberJSON struct {
	User       uint64 `json:"user"`
	Role       string `json:"role"`
	JoinedAt   uint64 `json:"joined_at"`
	MutedUntil string `json:"muted_until,omitempty"`
}

// groupInfo prints a group and its members: for people a line for the group
// and a table of members, as JSON one object holding both.
func (p printer) groupInfo(info *wirepb.GroupInfoResponse) error {
	g := info.GetGroup()
	members := make([]memberJSON, len(info.Members))
	for i, m := range info.Members {
		members[i] = memberJSON{User: m.User, Role: wire.Role(m.Role).String(), JoinedAt: m.JoinedAt}
		if m.MutedUntilMs != 0 {
			members[i].MutedUntil = jsonTime(m.MutedUntilMs)
		}
	}
	if p.json {
		j := struct {
			Group   groupJSON    `json:"group"`
			Members []memberJSON `json:"members"`
		}{toGroupJSON(g), members}
		return p.emit(j, "")
	}
	if err := p.group(g); err != nil {
		return err
	}
	tw := tabwriter.NewWriter(p.w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "USER\tROLE\tJOINED\tMUTED UNTIL")
	for _, m := range members {
		fmt.Fprintf(tw, "%d\t%s\t@%d\t%s\n", m.User, m.Role, m.JoinedAt, m.MutedUntil)
	}
	return tw.Flush()
}

func (p printer) ack(clientMsgID string, a *wirepb.SendAck) error {
	j := struct {
		ClientMsgID string `json:"client_msg_id"`
		MsgID       uint64 `json:"msg_id,string"`
		ConvSeq     uint64 `json:"conv_seq"`
		Time        string `json:"time"`
		Duplicate   bool   `json:"duplicate,omitempty"`
	}{clientMsgID, a.MsgId, a.ConvSeq, jsonTime(a.TimeMs), a.Duplicate}
	human := fmt.Sprintf("sent @%d, msg id %d, client msg id %s", a.ConvSeq, a.MsgId, clientMsgID)
	if a.Duplicate {
		human += " (already stored: this is the first send's result)"
	}
	return p.emit(j, human)
}

func (p printer) marker(conv, readSeq uint64) error {
	j := struct {
		Conv    uint64 `json:"conv,string"`
		ReadSeq uint64 `json:"read_seq"`
	}{conv, readSeq}
	return p.emit(j, fmt.Sprintf("read marker of %d at @%d", conv, readSeq))
}

func (p printer) token(tok string, c token.Claims) error {
	j := struct {
		Token   string `json:"token"`
		User    uint64 `json:"user"`
		Device  string `json:"device"`
		Expires string `json:"expires"`
	}{tok, c.User, c.Device, c.Expiry.UTC().Format(time.RFC3339)}
	return p.emit(j, tok) // bare, for TOKEN=$(inboxctl token …)
}

// done confirms a command that returns nothing; with --json it prints
// nothing, the exit status says it all.
func (p printer) done(human string) error {
	if p.json {
		return nil
	}
	_, err := fmt.Fprintln(p.w, human)
	return err
}

func (p printer) receipts(conv, convSeq uint64, unread bool, r *wirepb.ReadReceiptsResponse, users []uint64) error {
	if users == nil {
		users = []uint64{}
	}
	list := "read by"
	if unread {
		list = "not read by"
	}
	j := struct {
		Conv    uint64   `json:"conv,string"`
		ConvSeq uint64   `json:"conv_seq"`
		Members uint32   `json:"members"`
		Read    uint32   `json:"read"`
		Unread  bool     `json:"unread,omitempty"`
		Users   []uint64 `json:"users"`
	}{conv, convSeq, r.Members, r.Read, unread, users}
	return p.emit(j, fmt.Sprintf("%d/%d read by %d of %d; %s: %s", conv, convSeq, r.Read, r.Members, list, joinIDs(users)))
}

// typing prints a typing event (tail --typing).
func (p printer) typing(ev *wirepb.TypingEvent) error {
	j := struct {
		Typing struct {
			Conv uint64 `json:"conv,string"`
			User uint64 `json:"user"`
		} `json:"typing"`
	}{}
	j.Typing.Conv, j.Typing.User = ev.Conv, ev.User
	return p.emit(j, fmt.Sprintf("%d is typing in %d", ev.User, ev.Conv))
}

func (p printer) presence(users, online []uint64) error {
	if p.json {
		if online == nil {
			online = []uint64{}
		}
		return p.emit(struct {
			Online []uint64 `json:"online"`
		}{online}, "")
	}
	tw := tabwriter.NewWriter(p.w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "USER\tSTATE")
	for _, u := range users {
		state := "offline"
		if slices.Contains(online, u) {
			state = "online"
		}
		fmt.Fprintf(tw, "%d\t%s\n", u, state)
	}
	return tw.Flush()
}

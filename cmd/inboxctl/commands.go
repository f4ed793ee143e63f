package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/inboxd/inboxd/client"
	"github.com/inboxd/inboxd/token"
	"github.com/inboxd/inboxd/wire"
	"github.com/inboxd/inboxd/wire/wirepb"
)

type tokenCmd struct {
	secret     string
	secretFile string
	user       uint64
	device     string
	ttl        time.Duration
}

func (c *tokenCmd) flags(fs *flag.FlagSet) {
	fs.StringVar(&c.secret, "secret", "", "the server's token secret (at least 16 bytes)")
	fs.StringVar(&c.secretFile, "secret-file", "", "file holding the secret (inboxd's --secret-file)")
	fs.Uint64Var(&c.user, "user", 0, "user id (required)")
	fs.StringVar(&c.device, "device", "inboxctl", "device id, 1-64 bytes")
	fs.DurationVar(&c.ttl, "ttl", 24*time.Hour, "how long the token is valid")
}

func (c *tokenCmd) args(args []string) error {
	switch {
	case (c.secret == "") == (c.secretFile == ""):
		return errors.New("give one of --secret and --secret-file")
	case c.user == 0:
		return errors.New("--user is required")
	case c.ttl <= 0:
		return errors.New("--ttl must be positive")
	}
	return wantArgs(args, 0, 0)
}

func (c *tokenCmd) run(_ context.Context, a *app) error {
	secret := []byte(c.secret)
	if c.secretFile != "" {
		b, err := os.ReadFile(c.secretFile)
		if err != nil {
			return fmt.Errorf("token: %w", err)
		}
		if secret, err = token.ParseSecret(b); err != nil {
			return fmt.Errorf("token: %s: %w", c.secretFile, err)
		}
	}
	now := a.now().Truncate(time.Second)
	claims := token.Claims{User: c.user, Device: c.device, Expiry: now.Add(c.ttl), Issued: now}
	tok, err := token.Sign(secret, claims)
	if err != nil {
		return err
	}
	return newPrinter(a).token(tok, claims)
}

type createGroupCmd struct {
	name    string
	open    bool
	members []uint64
}

func (c *createGroupCmd) flags(fs *flag.FlagSet) {
	fs.StringVar(&c.name, "name", "", "group name (default: named after its first members)")
	fs.BoolVar(&c.open, "open", false, "anyone may join without an invitation")
}

func (c *createGroupCmd) args(args []string) (err error) {
	c.members, err = parseIDs(args, "member")
	return err
}

func (c *createGroupCmd) run(ctx context.Context, a *app) error {
	return a.call(ctx, func(cl *client.Client) error {
		g, err := cl.CreateGroup(ctx, &wirepb.CreateGroupRequest{Name: c.name, Members: c.members, Open: c.open})
		if err != nil {
			return fmt.Errorf("create group: %w", err)
		}
		return newPrinter(a).group(g)
	})
}

type inviteCmd struct {
	conv  uint64
	users []uint64
}

func (c *inviteCmd) flags(*flag.FlagSet) {}

func (c *inviteCmd) args(args []string) (err error) {
	if err := wantArgs(args, 2, -1); err != nil {
		return err
	}
	if c.conv, err = parseID(args[0], "conversation"); err != nil {
		return err
	}
	c.users, err = parseIDs(args[1:], "user")
	return err
}

func (c *inviteCmd) run(ctx context.Context, a *app) error {
	return a.call(ctx, func(cl *client.Client) error {
		if err := cl.Invite(ctx, c.conv, c.users...); err != nil {
			return fmt.Errorf("invite: %w", err)
		}
		return newPrinter(a).done(fmt.Sprintf("invited %s to %d", joinIDs(c.users), c.conv))
	})
}

// sendCmd is send, and send-direct when direct is set: then conv is the
// user the message goes to.
type sendCmd struct {
	direct     bool
	conv       uint64
	id         string
	kind       uint
	text       []string // nil: the body is standard input
	mentions   idList
	mentionAll bool
}

func (c *sendCmd) flags(fs *flag.FlagSet) {
	fs.UintVar(&c.kind, "kind", uint(wire.KindText), "message kind, 1-32767 (1: text)")
	fs.StringVar(&c.id, "id", "", "client msg id, 1-64 bytes: reuse one to resend safely (default: random)")
	fs.Var(&c.mentions, "mention", "user ids the message mentions, comma-separated (repeatable)")
	fs.BoolVar(&c.mentionAll, "mention-all", false, "mention every member (owner and admins)")
}

// idList is a flag of comma-separated user ids; repeating it adds to it.
type idList []uint64

func (l *idList) String() string { return joinIDs(*l) }

func (l *idList) Set(s string) error {
	ids, err := parseIDs(strings.Split(s, ","), "user")
	*l = append(*l, ids...)
	return err
}

func (c *sendCmd) args(args []string) (err error) {
	if err := wantArgs(args, 1, -1); err != nil {
		return err
	}
	if c.kind == 0 || c.kind >= uint(wire.KindSystem) {
		return fmt.Errorf("--kind %d outside 1-%d", c.kind, wire.KindSystem-1)
	}
	if len(c.id) > wire.MaxClientMsgID {
		return fmt.Errorf("--id longer than %d bytes", wire.MaxClientMsgID)
	}
	if len(c.mentions) > wire.MaxMentions {
		return fmt.Errorf("--mention names %d users, at most %d", len(c.mentions), wire.MaxMentions)
	}
	what := "conversation"
	if c.direct {
		if len(c.mentions) > 0 || c.mentionAll {
			return errors.New("a direct message mentions nobody: drop --mention and --mention-all")
		}
		what = "user"
	}
	c.conv, err = parseID(args[0], what)
	if len(args) > 1 {
		c.text = args[1:]
	}
	return err
}

func (c *sendCmd) run(ctx context.Context, a *app) error {
	body, err := c.body(a.stdin)
	if err != nil {
		return fmt.Errorf("send: %w", err)
	}
	id := c.id
	if id == "" {
		id = client.NewClientMsgID()
	}
	return a.call(ctx, func(cl *client.Client) error {
		var ack *wirepb.SendAck
		var err error
		if c.direct {
			ack, err = cl.SendDirect(ctx, c.conv, id, uint32(c.kind), body)
		} else {
			ack, err = cl.SendMessage(ctx, &wirepb.SendRequest{Conv: c.conv, ClientMsgId: id, Kind: uint32(c.kind), Body: body,
				Mentions: c.mentions, MentionAll: c.mentionAll})
		}
		if err != nil {
			return fmt.Errorf("send: %w", err)
		}
		return newPrinter(a).ack(id, ack)
	})
}

// body returns the message: the text arguments joined by spaces, or else
// standard input.
func (c *sendCmd) body(stdin io.Reader) ([]byte, error) {
	return readBody(c.text, stdin, c.kind == uint(wire.KindText))
}

// readBody returns text joined by spaces, or else standard input, less
// its final newline when it is text.
func readBody(text []string, stdin io.Reader, isText bool) ([]byte, error) {
	if text != nil {
		return []byte(strings.Join(text, " ")), nil
	}
	body, err := io.ReadAll(stdin)
	if err != nil {
		return nil, fmt.Errorf("read standard input: %w", err)
	}
	// echo and editors end text with a newline that is not the message's.
	if isText {
		body = bytes.TrimSuffix(bytes.TrimSuffix(body, []byte("\n")), []byte("\r"))
	}
	return body, nil
}

type syncCmd struct {
	after uint64
	limit uint
}

func (c *syncCmd) flags(fs *flag.FlagSet) {
	fs.Uint64Var(&c.after, "after", 0, "print entries after this seq")
	fs.UintVar(&c.limit, "limit", 0, "SYNC page size (0: the server's default)")
}

func (c *syncCmd) args(args []string) error { return wantArgs(args, 0, 0) }

// run prints everything up to the head of the inbox at connection time,
// through the client's sync loop, then exits.
func (c *syncCmd) run(ctx context.Context, a *app) error {
	p := newPrinter(a)
	var printErr error
	cl, err := a.dial(ctx, client.Config{LastSeq: c.after, SyncLimit: uint32(c.limit), OnEntry: func(e *wirepb.Entry) {
		if printErr == nil {
			printErr = p.entry(e)
		}
	}})
	if err != nil {
		return err
	}
	err = cl.WaitSynced(ctx)
	cl.Close() // OnEntry has returned for good: printErr is ours
	if err != nil {
		return fmt.Errorf("sync: %w", err)
	}
	return printErr
}

type tailCmd struct {
	after    uint64
	fromHead bool
	typing   bool
}

func (c *tailCmd) flags(fs *flag.FlagSet) {
	c.fromHead = true
	fs.Func("after", "print entries after this seq first (default: only new ones)", func(s string) error {
		n, err := strconv.ParseUint(s, 10, 64)
		c.after, c.fromHead = n, false
		return err
	})
	fs.BoolVar(&c.typing, "typing", false, "print the typing events of your groups too")
}

func (c *tailCmd) args(args []string) error { return wantArgs(args, 0, 0) }

// run prints entries as they arrive until interrupted, reconnecting as
// needed, or until the client stops for good (e.g. replaced by another
// connection of the same device).
func (c *tailCmd) run(ctx context.Context, a *app) error {
	p := newPrinter(a)
	printErrs := make(chan error, 1)
	printed := func(err error) {
		if err != nil {
			select {
			case printErrs <- err:
			default:
			}
		}
	}
	cfg := client.Config{LastSeq: c.after, FromHead: c.fromHead, OnEntry: func(e *wirepb.Entry) { printed(p.entry(e)) }}
	if c.typing {
		cfg.OnTyping = func(ev *wirepb.TypingEvent) { printed(p.typing(ev)) }
	}
	cl, err := a.dial(ctx, cfg)
	if err != nil {
		return err
	}
	defer cl.Close()
	select {
	case <-ctx.Done():
		return nil
	case err := <-printErrs:
		return err // stdout is gone (a closed pipe): nobody is reading
	case <-cl.Done():
		return fmt.Errorf("tail: %w", cl.Err())
	}
}

type historyCmd struct {
	conv, before uint64
	limit        uint
}

func (c *historyCmd) flags(fs *flag.FlagSet) {
	fs.Uint64Var(&c.before, "before", 0, "messages before this conv_seq (0: the newest)")
	fs.UintVar(&c.limit, "limit", 20, "how many messages, at most 100")
}

func (c *historyCmd) args(args []string) (err error) {
	c.conv, err = oneConv(args)
	return err
}

func (c *historyCmd) run(ctx context.Context, a *app) error {
	return a.call(ctx, func(cl *client.Client) error {
		msgs, err := cl.History(ctx, c.conv, c.before, uint32(c.limit))
		if err != nil {
			return fmt.Errorf("history: %w", err)
		}
		return newPrinter(a).history(msgs)
	})
}

type conversationsCmd struct{}

func (c *conversationsCmd) flags(*flag.FlagSet)      {}
func (c *conversationsCmd) args(args []string) error { return wantArgs(args, 0, 0) }

func (c *conversationsCmd) run(ctx context.Context, a *app) error {
	return a.call(ctx, func(cl *client.Client) error {
		convs, err := cl.Conversations(ctx)
		if err != nil {
			return fmt.Errorf("conversations: %w", err)
		}
		return newPrinter(a).conversations(convs)
	})
}

type readCmd struct{ conv, convSeq uint64 }

func (c *readCmd) flags(*flag.FlagSet) {}

func (c *readCmd) args(args []string) (err error) {
	if err := wantArgs(args, 2, 2); err != nil {
		return err
	}
	if c.conv, err = parseID(args[0], "conversation"); err != nil {
		return err
	}
	c.convSeq, err = parseID(args[1], "conv_seq")
	return err
}

func (c *readCmd) run(ctx context.Context, a *app) error {
	return a.call(ctx, func(cl *client.Client) error {
		marker, err := cl.MarkRead(ctx, c.conv, c.convSeq)
		if err != nil {
			return fmt.Errorf("read: %w", err)
		}
		return newPrinter(a).marker(c.conv, marker)
	})
}

func joinIDs(ids []uint64) string {
	s := make([]string, len(ids))
	for i, id := range ids {
		s[i] = strconv.FormatUint(id, 10)
	}
	return strings.Join(s, " ")
}

type receiptsCmd struct {
	conv, convSeq uint64
	unread        bool
}

func (c *receiptsCmd) flags(fs *flag.FlagSet) {
	fs.BoolVar(&c.unread, "unread", false, "list the members who have not read it instead")
}

func (c *receiptsCmd) args(args []string) (err error) {
	if err := wantArgs(args, 2, 2); err != nil {
		return err
	}
	if c.conv, err = parseID(args[0], "conversation"); err != nil {
		return err
	}
	c.convSeq, err = parseID(args[1], "conv_seq")
	return err
}

// amendCmd is recall and edit: a message named by CONV CONV_SEQ, and for an
// edit the new text.
type amendCmd struct {
	edit          bool
	conv, convSeq uint64
	id            string
	text          []string // edit; nil: the body is standard input
}

func (c *amendCmd) flags(fs *flag.FlagSet) {
	fs.StringVar(&c.id, "id", "", "client msg id, 1-64 bytes: reuse one to resend safely (default: random)")
}

func (c *amendCmd) args(args []string) (err error) {
	hi := 2
	if c.edit {
		hi = -1
	}
	if err := wantArgs(args, 2, hi); err != nil {
		return err
	}
	if len(c.id) > wire.MaxClientMsgID {
		return fmt.Errorf("--id longer than %d bytes", wire.MaxClientMsgID)
	}
	if c.conv, err = parseID(args[0], "conversation"); err != nil {
		return err
	}
	if len(args) > 2 {
		c.text = args[2:]
	}
	c.convSeq, err = parseID(args[1], "conv_seq")
	return err
}

// run reads every page of the receipts; the counts are the first page's.
func (c *receiptsCmd) run(ctx context.Context, a *app) error {
	return a.call(ctx, func(cl *client.Client) error {
		req := &wirepb.ReadReceiptsRequest{Conv: c.conv, ConvSeq: c.convSeq, Unread: c.unread, Limit: wire.MaxReceiptsLimit}
		var first *wirepb.ReadReceiptsResponse
		var users []uint64
		for {
			r, err := cl.ReadReceipts(ctx, req)
			if err != nil {
				return fmt.Errorf("receipts: %w", err)
			}
			if first == nil {
				first = r
			}
			users = append(users, r.Users...)
			if r.NextAfter == 0 {
				break
			}
			req.AfterUser = r.NextAfter
		}
		return newPrinter(a).receipts(c.conv, c.convSeq, c.unread, first, users)
	})
}

type presenceCmd struct{ users []uint64 }

func (c *presenceCmd) flags(*flag.FlagSet) {}

func (c *presenceCmd) args(args []string) (err error) {
	if err := wantArgs(args, 1, wire.MaxPresenceUsers); err != nil {
		return err
	}
	c.users, err = parseIDs(args, "user")
	return err
}

func (c *presenceCmd) run(ctx context.Context, a *app) error {
	return a.call(ctx, func(cl *client.Client) error {
		online, err := cl.Presence(ctx, c.users...)
		if err != nil {
			return fmt.Errorf("presence: %w", err)
		}
		return newPrinter(a).presence(c.users, online)
	})
}

func (c *amendCmd) run(ctx context.Context, a *app) error {
	id := c.id
	if id == "" {
		id = client.NewClientMsgID()
	}
	if !c.edit {
		return a.call(ctx, func(cl *client.Client) error {
			ack, err := cl.Recall(ctx, c.conv, c.convSeq, id)
			if err != nil {
				return fmt.Errorf("recall: %w", err)
			}
			return newPrinter(a).ack(id, ack)
		})
	}
	body, err := readBody(c.text, a.stdin, true)
	if err != nil {
		return fmt.Errorf("edit: %w", err)
	}
	return a.call(ctx, func(cl *client.Client) error {
		ack, err := cl.Edit(ctx, c.conv, c.convSeq, id, body)
		if err != nil {
			return fmt.Errorf("edit: %w", err)
		}
		return newPrinter(a).ack(id, ack)
	})
}

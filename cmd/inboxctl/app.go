package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"time"

	"github.com/inboxd/inboxd/client"
)

// app is what every command shares: the global flags and the outside
// world, which tests replace.
type app struct {
	addr   string
	token  string
	json   bool
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
	getenv func(string) string
	now    func() time.Time
}

func newApp(stdin io.Reader, stdout, stderr io.Writer, getenv func(string) string) *app {
	return &app{stdin: stdin, stdout: stdout, stderr: stderr, getenv: getenv, now: time.Now}
}

// command is one subcommand: it registers its flags, takes its positional
// arguments, then runs.
type command interface {
	flags(fs *flag.FlagSet)
	args(args []string) error
	run(ctx context.Context, a *app) error
}

type commandInfo struct {
	name, usage, summary string
	new                  func() command
}

func commands() []commandInfo {
	return []commandInfo{
		{"token", "--secret S|--secret-file F --user ID [--device D] [--ttl 24h]", "mint a development token", func() command { return &tokenCmd{} }},
		{"create-group", "[--name N] [--open] [MEMBER...]", "create a group with you as its owner", func() command { return &createGroupCmd{} }},
		{"invite", "CONV USER...", "add users to a group", func() command { return &inviteCmd{} }},
		{"join", "CONV", "join an open group", func() command { return &convCmd{action: "join"} }},
		{"leave", "CONV", "leave a group", func() command { return &convCmd{action: "leave"} }},
		{"kick", "CONV USER", "remove a member from a group", func() command { return &kickCmd{} }},
		{"dismiss", "CONV", "end a group you own", func() command { return &convCmd{action: "dismiss"} }},
		{"set-role", "CONV USER member|admin|owner", "change a member's role (owner: hand the group over)", func() command { return &setRoleCmd{} }},
		{"mute", "--for D|--until T|--off CONV [USER]", "mute a member, or without USER the group (all but its owner and admins)", func() command { return &muteCmd{} }},
		{"dnd", "CONV on|off", "turn do-not-disturb (no offline push) of a group on or off", func() command { return &dndCmd{} }},
		{"group-info", "CONV", "print a group and its members", func() command { return &groupInfoCmd{} }},
		{"set-profile", "[--name N] [--announcement A] [--avatar URL] CONV", "rename a group, set its announcement or avatar URL (\"\" clears them)", func() command { return &setProfileCmd{} }},
		{"send", "[--kind 1] [--id CLIENT_MSG_ID] [--mention USER,...] [--mention-all] CONV [TEXT...]", "send a message: TEXT, or standard input less its final newline", func() command { return &sendCmd{} }},
		{"send-direct", "[--kind 1] [--id CLIENT_MSG_ID] USER [TEXT...]", "send a message to a user, in your direct conversation with them", func() command { return &sendCmd{direct: true} }},
		{"block", "USER on|off", "refuse (on) or accept again (off) a user's direct messages", func() command { return &blockCmd{} }},
		{"recall", "[--id CLIENT_MSG_ID] CONV CONV_SEQ", "recall a message (yours within the recall window; any, as owner or admin)", func() command { return &amendCmd{} }},
		{"edit", "[--id CLIENT_MSG_ID] CONV CONV_SEQ [TEXT...]", "replace a message's text: TEXT, or standard input less its final newline", func() command { return &amendCmd{edit: true} }},
		{"sync", "[--after SEQ] [--limit N]", "print the inbox entries after SEQ and exit", func() command { return &syncCmd{} }},
		{"tail", "[--after SEQ] [--typing]", "print inbox entries as they arrive (from now, or after SEQ); --typing: typing events too", func() command { return &tailCmd{} }},
		{"history", "[--before CONV_SEQ] [--limit N] CONV", "print a group's messages, oldest first", func() command { return &historyCmd{} }},
		{"conversations", "", "list your conversations with unread counts", func() command { return &conversationsCmd{} }},
		{"read", "CONV CONV_SEQ", "move your read marker of a group", func() command { return &readCmd{} }},
		{"receipts", "[--unread] CONV CONV_SEQ", "print who of a group has read a message (with --unread: who has not)", func() command { return &receiptsCmd{} }},
		{"typing", "CONV", "tell the group's online members you are typing", func() command { return &convCmd{action: "typing"} }},
		{"presence", "USER...", "print which users are online", func() command { return &presenceCmd{} }},
		{"admin", adminUsage(), "call the server API as the application's backend (docs/api.md); prints its JSON answer", func() command { return &adminCmd{} }},
	}
}

// errUsage marks an error in the command line (exit status 2).
var errUsage = errors.New("usage")

// run runs one command line and returns the exit status.
func run(ctx context.Context, args []string, a *app) int {
	cmd, err := parse(args, a)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err == nil {
		err = cmd.run(ctx, a)
	}
	switch {
	case err == nil:
		return 0
	case errors.Is(err, errUsage):
		fmt.Fprintln(a.stderr, "inboxctl:", err)
		fmt.Fprintln(a.stderr, "run inboxctl help for usage")
		return 2
	default:
		fmt.Fprintln(a.stderr, "inboxctl:", err)
		return 1
	}
}

// parse reads the global flags, the command name, and the command's flags
// and arguments. Global flags may come before or after the command name.
func parse(args []string, a *app) (command, error) {
	global := flag.NewFlagSet("inboxctl", flag.ContinueOnError)
	global.SetOutput(io.Discard)
	a.globalFlags(global)
	if err := global.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			a.usage()
			return nil, err
		}
		return nil, fmt.Errorf("%w: %w", errUsage, err)
	}
	rest := global.Args()
	if len(rest) == 0 || rest[0] == "help" {
		a.usage()
		if len(rest) == 0 {
			return nil, fmt.Errorf("%w: no command", errUsage)
		}
		return nil, flag.ErrHelp
	}
	var info *commandInfo
	for _, c := range commands() {
		if c.name == rest[0] {
			info = &c
			break
		}
	}
	if info == nil {
		return nil, fmt.Errorf("%w: unknown command %q", errUsage, rest[0])
	}
	cmd := info.new()
	fs := flag.NewFlagSet(info.name, flag.ContinueOnError)
	fs.SetOutput(a.stderr)
	fs.Usage = func() {
		fmt.Fprintf(a.stderr, "usage: inboxctl %s %s\n\n%s.\n\nflags:\n", info.name, info.usage, info.summary)
		fs.PrintDefaults()
	}
	a.globalFlags(fs)
	cmd.flags(fs)
	if err := fs.Parse(rest[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, err
		}
		return nil, fmt.Errorf("%w: %s: %w", errUsage, info.name, err)
	}
	if err := cmd.args(fs.Args()); err != nil {
		return nil, fmt.Errorf("%w: %s: %w", errUsage, info.name, err)
	}
	return cmd, nil
}

func (a *app) globalFlags(fs *flag.FlagSet) {
	addr := a.getenv("INBOXD_ADDR")
	if addr == "" {
		addr = client.DefaultAddr
	}
	if a.addr != "" { // already set by the flags before the command name
		addr = a.addr
	}
	tok := a.token
	if tok == "" {
		tok = a.getenv("INBOXD_TOKEN")
	}
	fs.StringVar(&a.addr, "addr", addr, "gateway address, or a comma-separated list of a cluster's nodes (env INBOXD_ADDR)")
	fs.StringVar(&a.token, "token", tok, "connection token (env INBOXD_TOKEN)")
	fs.BoolVar(&a.json, "json", a.json, "print one JSON object per line")
}

func (a *app) usage() {
	fmt.Fprintln(a.stderr, "usage: inboxctl [--addr host:port[,host:port…]] [--token T] [--json] <command> [flags] [args]")
	fmt.Fprintln(a.stderr, "\ncommands:")
	for _, c := range commands() {
		fmt.Fprintf(a.stderr, "  %-14s %s\n", c.name, c.summary)
		if c.usage != "" {
			fmt.Fprintf(a.stderr, "  %-14s   %s\n", "", c.usage)
		}
	}
	fmt.Fprintln(a.stderr, "\ninboxctl <command> --help shows a command's flags.")
}

// dial connects for one command. Only sync and tail read the inbox; the
// others start at its head so that the client does not sync it.
func (a *app) dial(ctx context.Context, cfg client.Config) (*client.Client, error) {
	if a.token == "" {
		return nil, fmt.Errorf("no token: pass --token or set INBOXD_TOKEN (inboxctl token mints one)")
	}
	if cfg.Addrs = client.SplitAddrs(a.addr); len(cfg.Addrs) == 0 {
		return nil, fmt.Errorf("no address: pass --addr or set INBOXD_ADDR")
	}
	cfg.Token = a.token
	if cfg.OnEntry == nil {
		cfg.FromHead = true
	}
	// Reconnections are worth knowing about in a long tail.
	cfg.Logger = slog.New(slog.NewTextHandler(a.stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	return client.Dial(ctx, cfg)
}

// call runs f with a client connected for one request or a few.
func (a *app) call(ctx context.Context, f func(*client.Client) error) error {
	cl, err := a.dial(ctx, client.Config{})
	if err != nil {
		return err
	}
	defer cl.Close()
	return f(cl)
}

// Positional argument helpers.

func wantArgs(args []string, lo, hi int) error {
	switch {
	case len(args) < lo:
		return errors.New("missing arguments")
	case hi >= 0 && len(args) > hi:
		return fmt.Errorf("unexpected arguments %q", args[hi:])
	}
	return nil
}

func parseID(s, what string) (uint64, error) {
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil || n == 0 {
		return 0, fmt.Errorf("%s %q is not a positive integer", what, s)
	}
	return n, nil
}

// oneConv takes the arguments of a command about one conversation.
func oneConv(args []string) (uint64, error) {
	if err := wantArgs(args, 1, 1); err != nil {
		return 0, err
	}
	return parseID(args[0], "conversation")
}

func parseIDs(ss []string, what string) ([]uint64, error) {
	ids := make([]uint64, len(ss))
	for i, s := range ss {
		var err error
		if ids[i], err = parseID(s, what); err != nil {
			return nil, err
		}
	}
	return ids, nil
}

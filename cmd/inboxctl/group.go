package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"strconv"
	"time"

	"github.com/inboxd/inboxd/client"
	"github.com/inboxd/inboxd/wire"
)

// The group commands beyond create-group and invite: one per protocol
// command, so that each can be tried from the shell.

// convCmd is a command whose one argument is a conversation and whose
// answer is done or an error: join, leave, dismiss, typing.
type convCmd struct {
	action string // a key of convActions
	conv   uint64
}

// convActions are the client calls of the convCmds, with what each prints
// when done (a format of the conversation id).
var convActions = map[string]struct {
	call func(*client.Client, context.Context, uint64) error
	done string
}{
	"join":    {(*client.Client).Join, "joined %d"},
	"leave":   {(*client.Client).Leave, "left %d"},
	"dismiss": {(*client.Client).Dismiss, "dismissed %d"},
	"typing":  {(*client.Client).Typing, "typing in %d"},
}

func (c *convCmd) flags(*flag.FlagSet) {}

func (c *convCmd) args(args []string) (err error) {
	c.conv, err = oneConv(args)
	return err
}

func (c *convCmd) run(ctx context.Context, a *app) error {
	act := convActions[c.action]
	return a.call(ctx, func(cl *client.Client) error {
		if err := act.call(cl, ctx, c.conv); err != nil {
			return fmt.Errorf("%s: %w", c.action, err)
		}
		return newPrinter(a).done(fmt.Sprintf(act.done, c.conv))
	})
}

type kickCmd struct{ conv, user uint64 }

func (c *kickCmd) flags(*flag.FlagSet) {}

func (c *kickCmd) args(args []string) (err error) {
	if err := wantArgs(args, 2, 2); err != nil {
		return err
	}
	if c.conv, err = parseID(args[0], "conversation"); err != nil {
		return err
	}
	c.user, err = parseID(args[1], "user")
	return err
}

func (c *kickCmd) run(ctx context.Context, a *app) error {
	return a.call(ctx, func(cl *client.Client) error {
		if err := cl.Kick(ctx, c.conv, c.user); err != nil {
			return fmt.Errorf("kick: %w", err)
		}
		return newPrinter(a).done(fmt.Sprintf("removed %d from %d", c.user, c.conv))
	})
}

type setRoleCmd struct {
	conv, user uint64
	role       wire.Role
}

func (c *setRoleCmd) flags(*flag.FlagSet) {}

func (c *setRoleCmd) args(args []string) (err error) {
	if err := wantArgs(args, 3, 3); err != nil {
		return err
	}
	if c.conv, err = parseID(args[0], "conversation"); err != nil {
		return err
	}
	if c.user, err = parseID(args[1], "user"); err != nil {
		return err
	}
	c.role, err = parseRole(args[2])
	return err
}

// parseRole takes a role by name or number.
func parseRole(s string) (wire.Role, error) {
	for _, r := range []wire.Role{wire.RoleMember, wire.RoleAdmin, wire.RoleOwner} {
		if s == r.String() || s == strconv.Itoa(int(r)) {
			return r, nil
		}
	}
	return 0, fmt.Errorf("role %q: want member, admin or owner", s)
}

func (c *setRoleCmd) run(ctx context.Context, a *app) error {
	return a.call(ctx, func(cl *client.Client) error {
		if err := cl.SetRole(ctx, c.conv, c.user, uint32(c.role)); err != nil {
			return fmt.Errorf("set role: %w", err)
		}
		return newPrinter(a).done(fmt.Sprintf("%d is %s of %d", c.user, c.role, c.conv))
	})
}

type muteCmd struct {
	conv, user uint64
	// Exactly one of these says how long.
	forDur time.Duration
	until  string // RFC 3339
	off    bool
}

func (c *muteCmd) flags(fs *flag.FlagSet) {
	fs.DurationVar(&c.forDur, "for", 0, "mute for this long from now")
	fs.StringVar(&c.until, "until", "", "mute until this time (RFC 3339, e.g. 2030-01-01T12:00:00Z)")
	fs.BoolVar(&c.off, "off", false, "lift the mute")
}

func (c *muteCmd) args(args []string) (err error) {
	given := 0
	for _, set := range []bool{c.forDur != 0, c.until != "", c.off} {
		if set {
			given++
		}
	}
	switch {
	case given != 1:
		return errors.New("give one of --for, --until and --off")
	case c.forDur < 0:
		return errors.New("--for must be positive")
	case c.until != "":
		if _, err := time.Parse(time.RFC3339, c.until); err != nil {
			return fmt.Errorf("--until: %w", err)
		}
	}
	if err := wantArgs(args, 1, 2); err != nil {
		return err
	}
	if c.conv, err = parseID(args[0], "conversation"); err != nil {
		return err
	}
	if len(args) == 2 {
		c.user, err = parseID(args[1], "user")
	}
	return err
}

// deadline is when the mute ends; the zero time lifts it.
func (c *muteCmd) deadline(now time.Time) time.Time {
	switch {
	case c.off:
		return time.Time{}
	case c.until != "":
		t, _ := time.Parse(time.RFC3339, c.until) // checked by args
		return t
	}
	return now.Add(c.forDur)
}

func (c *muteCmd) run(ctx context.Context, a *app) error {
	until := c.deadline(a.now())
	return a.call(ctx, func(cl *client.Client) error {
		if err := cl.Mute(ctx, c.conv, c.user, until); err != nil {
			return fmt.Errorf("mute: %w", err)
		}
		who := "the group"
		if c.user != 0 {
			who = strconv.FormatUint(c.user, 10)
		}
		if until.IsZero() {
			return newPrinter(a).done(fmt.Sprintf("unmuted %s in %d", who, c.conv))
		}
		return newPrinter(a).done(fmt.Sprintf("muted %s in %d until %s", who, c.conv, until.UTC().Format(time.RFC3339)))
	})
}

type dndCmd struct {
	conv uint64
	on   bool
}

func (c *dndCmd) flags(*flag.FlagSet) {}

func (c *dndCmd) args(args []string) (err error) {
	c.conv, c.on, err = idOnOff(args, "conversation")
	return err
}

// idOnOff parses the arguments ID on|off.
func idOnOff(args []string, what string) (id uint64, on bool, err error) {
	if err := wantArgs(args, 2, 2); err != nil {
		return 0, false, err
	}
	if id, err = parseID(args[0], what); err != nil {
		return 0, false, err
	}
	switch args[1] {
	case "on":
		on = true
	case "off":
	default:
		return 0, false, fmt.Errorf("%q: want on or off", args[1])
	}
	return id, on, nil
}

type blockCmd struct {
	user uint64
	on   bool
}

func (c *blockCmd) flags(*flag.FlagSet) {}

func (c *blockCmd) args(args []string) (err error) {
	c.user, c.on, err = idOnOff(args, "user")
	return err
}

func (c *blockCmd) run(ctx context.Context, a *app) error {
	return a.call(ctx, func(cl *client.Client) error {
		if err := cl.Block(ctx, c.user, c.on); err != nil {
			return fmt.Errorf("block: %w", err)
		}
		if c.on {
			return newPrinter(a).done(fmt.Sprintf("blocked %d", c.user))
		}
		return newPrinter(a).done(fmt.Sprintf("unblocked %d", c.user))
	})
}

// setProfileCmd's fields are nil unless their flag is given: a flag given
// empty clears the announcement or the avatar.
type setProfileCmd struct {
	conv    uint64
	profile client.GroupProfile
}

func (c *setProfileCmd) flags(fs *flag.FlagSet) {
	set := func(p **string) func(string) error {
		return func(v string) error { *p = &v; return nil }
	}
	fs.Func("name", "the new name", set(&c.profile.Name))
	fs.Func("announcement", `the new announcement ("" clears it)`, set(&c.profile.Announcement))
	fs.Func("avatar", `the new avatar URL ("" removes it)`, set(&c.profile.AvatarURL))
}

func (c *setProfileCmd) args(args []string) (err error) {
	p := c.profile
	if p.Name == nil && p.Announcement == nil && p.AvatarURL == nil {
		return errors.New("nothing to change: give --name, --announcement or --avatar")
	}
	c.conv, err = oneConv(args)
	return err
}

func (c *setProfileCmd) run(ctx context.Context, a *app) error {
	return a.call(ctx, func(cl *client.Client) error {
		if err := cl.SetGroupProfile(ctx, c.conv, c.profile); err != nil {
			return fmt.Errorf("set-profile: %w", err)
		}
		return newPrinter(a).done(fmt.Sprintf("profile of %d set", c.conv))
	})
}

func (c *dndCmd) run(ctx context.Context, a *app) error {
	return a.call(ctx, func(cl *client.Client) error {
		if err := cl.SetDND(ctx, c.conv, c.on); err != nil {
			return fmt.Errorf("dnd: %w", err)
		}
		state := "off"
		if c.on {
			state = "on"
		}
		return newPrinter(a).done(fmt.Sprintf("do not disturb %s for %d", state, c.conv))
	})
}

type groupInfoCmd struct{ conv uint64 }

func (c *groupInfoCmd) flags(*flag.FlagSet) {}

func (c *groupInfoCmd) args(args []string) (err error) {
	c.conv, err = oneConv(args)
	return err
}

func (c *groupInfoCmd) run(ctx context.Context, a *app) error {
	return a.call(ctx, func(cl *client.Client) error {
		info, err := cl.GroupInfo(ctx, c.conv)
		if err != nil {
			return fmt.Errorf("group info: %w", err)
		}
		return newPrinter(a).groupInfo(info)
	})
}

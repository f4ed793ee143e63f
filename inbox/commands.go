package inbox

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"
	"unicode/utf8"

	"github.com/inboxd/inboxd/timeline"
	"github.com/inboxd/inboxd/wire"
)

// SendResult is what a sender learns of a stored message.
type SendResult struct {
	Conv    uint64 // the conversation the message is in
	MsgID   uint64
	ConvSeq uint64
	Time    time.Time
	// Duplicate reports that (sender, client msg id) was sent before: the
	// result is the first send's, and nothing new was stored.
	Duplicate bool
}

// SendGroupMessage stores a message once in conv's timeline and puts a row in
// the inbox of every member, the sender included. It returns once all of it
// is durable. A resend with the same clientMsgID returns the first result.
// The service keeps body: the caller must not change it afterwards.
func (s *Service) SendGroupMessage(ctx context.Context, sender, conv uint64, clientMsgID string, kind wire.Kind, body []byte) (SendResult, error) {
	return s.SendMessage(ctx, sender, conv, Outgoing{ClientMsgID: clientMsgID, Kind: kind, Body: body})
}

// Outgoing is a message a member sends.
type Outgoing struct {
	ClientMsgID string
	Kind        wire.Kind
	Body        []byte
	// Mentions names members the message mentions (at most
	// wire.MaxMentions, each a current member); MentionAll mentions every
	// member, which only the owner and admins may unless
	// Config.MentionAllAnyone. A mention counts in the user's
	// ConversationInfo.MentionUnread and reaches the OfflinePusher even
	// under do-not-disturb.
	Mentions   []uint64
	MentionAll bool
}

// SendMessage is SendGroupMessage with mentions. It keeps m.Body and a
// sorted copy of m.Mentions without duplicates.
func (s *Service) SendMessage(ctx context.Context, sender, conv uint64, m Outgoing) (SendResult, error) {
	if err := s.checkSend(sender, conv, m.ClientMsgID, m.Kind, m.Body); err != nil {
		s.metrics.sends[sendRejected].Inc()
		return SendResult{}, fmt.Errorf("inbox: send to %d: %w", conv, err)
	}
	if len(m.Mentions) > wire.MaxMentions || slices.Contains(m.Mentions, 0) {
		s.metrics.sends[sendRejected].Inc()
		return SendResult{}, fmt.Errorf("inbox: send to %d: %w: %d mentions, at most %d, of non-zero user ids", conv, ErrInvalid, len(m.Mentions), wire.MaxMentions)
	}
	m.Mentions = uniqueIDs(m.Mentions, 0)
	if len(m.Mentions) == 0 {
		m.Mentions = nil
	}
	res, err := s.sendOutgoing(ctx, sender, conv, m, func(tx *txn) (*group, error) {
		g, mb, err := tx.memberOf(conv, sender)
		if err != nil {
			return nil, err
		}
		if !g.speaks(mb, tx.now) {
			return nil, ErrMuted
		}
		if err := g.refuses(sender); err != nil {
			return nil, err
		}
		if m.MentionAll && mb.Role < wire.RoleAdmin && !tx.s.cfg.MentionAllAnyone {
			return nil, fmt.Errorf("%w: only the owner and admins mention everyone", ErrForbidden)
		}
		for _, u := range m.Mentions {
			if _, ok := g.members[u]; !ok {
				return nil, fmt.Errorf("%w: mentioned user %d is not a member", ErrInvalid, u)
			}
		}
		return g, nil
	})
	if err != nil {
		return SendResult{}, fmt.Errorf("inbox: send to %d: %w", conv, err)
	}
	return res, nil
}

// send posts sender's message to conv, the part of a send that every kind
// of sender shares: a resend with the same clientMsgID returns the first
// result; otherwise speaker returns the group after the checks on the
// sender, and the message is posted to it. It counts the send's outcome.
func (s *Service) send(ctx context.Context, sender, conv uint64, clientMsgID string, kind wire.Kind, body []byte,
	speaker func(tx *txn) (*group, error)) (SendResult, error) {
	return s.sendOutgoing(ctx, sender, conv, Outgoing{ClientMsgID: clientMsgID, Kind: kind, Body: body}, speaker)
}

// sendOutgoing is send of a message with mentions.
func (s *Service) sendOutgoing(ctx context.Context, sender, conv uint64, m Outgoing,
	speaker func(tx *txn) (*group, error)) (SendResult, error) {
	start := time.Now()
	var res SendResult
	err := s.doOnce(ctx, sender, m.ClientMsgID, func(tx *txn) error {
		if err := tx.ownConv(conv); err != nil {
			return err
		}
		if d, ok, err := tx.firstResult(sender, conv, m.ClientMsgID); err != nil || ok {
			res = dupResult(d)
			return err
		}
		g, err := speaker(tx)
		if err != nil {
			return err
		}
		msg, err := tx.postMessage(g, timeline.Message{Sender: sender, ClientMsgID: m.ClientMsgID, Kind: m.Kind, Body: m.Body,
			Mentions: m.Mentions, MentionAll: m.MentionAll})
		if err != nil {
			return err
		}
		res = SendResult{Conv: conv, MsgID: msg.ID, ConvSeq: msg.ConvSeq, Time: msg.Time}
		return nil
	})
	s.metrics.sendAck.Observe(time.Since(start).Seconds())
	s.metrics.sends[classifySend(res, err)].Inc()
	return res, err
}

// firstResult looks up the first result of (sender, clientMsgID), which
// must be of conv. An empty clientMsgID has none.
func (tx *txn) firstResult(sender, conv uint64, clientMsgID string) (timeline.Dedup, bool, error) {
	if clientMsgID == "" {
		return timeline.Dedup{}, false, nil
	}
	d, ok, err := tx.dedup(sender, clientMsgID)
	if err == nil && ok && d.Conv != conv {
		// The key is the sender's across all conversations: an ack of the
		// other conversation's message would tell the client this one was
		// stored.
		return d, false, fmt.Errorf("%w: client msg id %q already used in conversation %d", ErrInvalid, clientMsgID, d.Conv)
	}
	return d, ok, err
}

// classifySend names how a send ended, for the metrics: failures are what a
// retry with the same client msg id may fix.
func classifySend(res SendResult, err error) sendResult {
	switch {
	case err == nil && res.Duplicate:
		return sendDuplicate
	case err == nil:
		return sendStored
	case errors.Is(err, ErrUnavailable), errors.Is(err, ErrClosed), errors.Is(err, errCrashed),
		errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return sendFailed
	}
	return sendRejected
}

func dupResult(d timeline.Dedup) SendResult {
	return SendResult{Conv: d.Conv, MsgID: d.MsgID, ConvSeq: d.ConvSeq, Time: d.Time, Duplicate: true}
}

func (s *Service) checkSend(sender, conv uint64, clientMsgID string, kind wire.Kind, body []byte) error {
	switch {
	case sender == 0 || conv == 0:
		return fmt.Errorf("%w: zero sender or conversation", ErrInvalid)
	case clientMsgID == "" || len(clientMsgID) > wire.MaxClientMsgID:
		return fmt.Errorf("%w: client msg id must be 1–%d bytes", ErrInvalid, wire.MaxClientMsgID)
	case kind == 0 || kind >= wire.KindSystem:
		return fmt.Errorf("%w: kind %d is not an application kind", ErrInvalid, kind)
	case len(body) > s.cfg.MaxBodySize:
		return fmt.Errorf("%w: body of %d bytes exceeds %d", ErrInvalid, len(body), s.cfg.MaxBodySize)
	}
	return nil
}

// MaxGroupSize returns the most members a group may have, its owner
// included (Config.MaxGroupSize).
func (s *Service) MaxGroupSize() int { return s.cfg.MaxGroupSize }

// NewGroup describes a group to create.
type NewGroup struct {
	Name    string   // empty: named after its first members
	Members []uint64 // invited with the creation; the owner need not be listed
	Open    bool     // anyone may Join without an invitation
}

// CreateGroup creates a group owned by owner with its members, each with the
// conversation in their list, and posts the creation notice to all of them.
func (s *Service) CreateGroup(ctx context.Context, owner uint64, spec NewGroup) (timeline.Group, error) {
	g, _, err := s.createGroup(ctx, owner, spec, "")
	return g, err
}

// createGroup is CreateGroup, once per dedup key of the owner's when key is
// set (CreateGroupOnce); it reports whether the group was created before.
func (s *Service) createGroup(ctx context.Context, owner uint64, spec NewGroup, key string) (timeline.Group, bool, error) {
	members := uniqueIDs(spec.Members, owner)
	switch {
	case owner == 0 || slices.Contains(members, 0):
		return timeline.Group{}, false, fmt.Errorf("inbox: create group: %w: zero user id", ErrInvalid)
	case len(spec.Name) > wire.MaxGroupName || !utf8.ValidString(spec.Name):
		return timeline.Group{}, false, fmt.Errorf("inbox: create group: %w: name must be valid UTF-8 of at most %d bytes", ErrInvalid, wire.MaxGroupName)
	case len(members)+1 > s.cfg.MaxGroupSize:
		return timeline.Group{}, false, fmt.Errorf("inbox: create group of %d: %w: at most %d members", len(members)+1, ErrGroupFull, s.cfg.MaxGroupSize)
	}
	name := spec.Name
	if name == "" {
		name = groupName(owner, members)
	}
	var info timeline.Group
	var created bool
	err := s.doOnce(ctx, owner, key, func(tx *txn) error {
		if key != "" {
			g, ok, err := tx.createdBefore(owner, key)
			if err != nil || ok {
				info, created = g, ok
				return err
			}
		}
		id, err := tx.newConvID()
		if err != nil {
			return err
		}
		g := &group{
			Group:   timeline.Group{ID: id, Name: name, Owner: owner, Created: tx.now, Open: spec.Open},
			members: make(map[uint64]timeline.Member, len(members)+1),
		}
		tx.groups[g.ID] = g
		tx.b.Groups = append(tx.b.Groups, g.Group)
		if err := tx.join(g, owner, wire.RoleOwner, 1); err != nil {
			return err
		}
		for _, u := range members {
			if err := tx.join(g, u, wire.RoleMember, 1); err != nil {
				return err
			}
		}
		text := fmt.Sprintf("%d created the group", owner)
		if len(members) > 0 {
			text = fmt.Sprintf("%d invited %s to join the group", owner, idList(members))
		}
		n := wire.Notice{Type: wire.NoticeCreate, Actor: owner, Users: members, Name: name, Text: text}
		msg, err := tx.post(g, owner, "", wire.KindNotice, noticeBody(n))
		if err != nil {
			return err
		}
		if key != "" {
			tx.remember(owner, key, msg)
		}
		info = g.Group
		return nil
	})
	if err != nil {
		return timeline.Group{}, false, fmt.Errorf("inbox: create group: %w", err)
	}
	return info, created, nil
}

// uniqueIDs returns ids sorted without duplicates and without except.
func uniqueIDs(ids []uint64, except uint64) []uint64 {
	out := slices.Clone(ids)
	slices.Sort(out)
	out = slices.Compact(out)
	if i, found := slices.BinarySearch(out, except); found {
		out = slices.Delete(out, i, i+1)
	}
	return out
}

// Invite adds users to conv; any member may invite. Users already members
// are skipped; inviting only members is ErrInvalid.
func (s *Service) Invite(ctx context.Context, actor, conv uint64, users []uint64) error {
	users = uniqueIDs(users, actor)
	if slices.Contains(users, 0) || len(users) == 0 {
		return fmt.Errorf("inbox: invite to %d: %w: no user to invite", conv, ErrInvalid)
	}
	err := s.do(ctx, actor, func(tx *txn) error {
		g, _, err := tx.groupMember(conv, actor)
		if err != nil {
			return err
		}
		var added []uint64
		for _, u := range users {
			if _, ok := g.members[u]; !ok {
				added = append(added, u)
			}
		}
		if len(added) == 0 {
			return ErrAlreadyMember
		}
		n := wire.Notice{Type: wire.NoticeInvite, Actor: actor, Users: added, Text: fmt.Sprintf("%d invited %s to join the group", actor, idList(added))}
		return tx.admit(g, actor, added, n)
	})
	if err != nil {
		return fmt.Errorf("inbox: invite to %d: %w", conv, err)
	}
	return nil
}

// Join makes user a member of an open group.
func (s *Service) Join(ctx context.Context, user, conv uint64) error {
	err := s.do(ctx, user, func(tx *txn) error {
		g, err := tx.liveGroup(conv)
		if err != nil {
			return err
		}
		if err := groupOnly(g); err != nil {
			return err
		}
		if _, ok := g.members[user]; ok {
			return fmt.Errorf("%w: already a member", ErrInvalid)
		}
		if !g.Open {
			return fmt.Errorf("%w: the group is invitation only", ErrForbidden)
		}
		n := wire.Notice{Type: wire.NoticeJoin, Actor: user, Text: fmt.Sprintf("%d joined the group", user)}
		return tx.admit(g, user, []uint64{user}, n)
	})
	if err != nil {
		return fmt.Errorf("inbox: join %d: %w", conv, err)
	}
	return nil
}

// admit adds users to g and posts n, which they are the first to receive.
func (tx *txn) admit(g *group, actor uint64, users []uint64, n wire.Notice) error {
	if g.size()+len(users) > tx.s.cfg.MaxGroupSize {
		return fmt.Errorf("%w: %d members plus %d: at most %d members", ErrGroupFull, g.size(), len(users), tx.s.cfg.MaxGroupSize)
	}
	head, err := tx.convHead(g.ID)
	if err != nil {
		return err
	}
	g = tx.mutable(g)
	for _, u := range users {
		if err := tx.join(g, u, wire.RoleMember, head+1); err != nil {
			return err
		}
	}
	_, err = tx.post(g, actor, "", wire.KindNotice, noticeBody(n))
	return err
}

// Leave ends user's membership. An owner who leaves hands the group to the
// longest-standing admin, or else the longest-standing member; the last
// member to leave dismisses it.
func (s *Service) Leave(ctx context.Context, user, conv uint64) error {
	err := s.do(ctx, user, func(tx *txn) error {
		g, m, err := tx.groupMember(conv, user)
		if err != nil {
			return err
		}
		g = tx.mutable(g)
		n := wire.Notice{Type: wire.NoticeLeave, Actor: user, Text: fmt.Sprintf("%d left the group", user)}
		if m.Role == wire.RoleOwner {
			if heir, ok := g.heir(user); ok {
				tx.setRole(g, heir, wire.RoleOwner)
				n.Owner = heir
				n.Text += fmt.Sprintf("; %d is the owner now", heir)
			} else {
				g.Dismissed = true
			}
			tx.b.Groups = append(tx.b.Groups, g.Group)
		}
		return tx.depart(g, user, n)
	})
	if err != nil {
		return fmt.Errorf("inbox: leave %d: %w", conv, err)
	}
	return nil
}

// heir picks who owns g after its owner leaves.
func (g *group) heir(owner uint64) (uint64, bool) {
	var best timeline.Member
	for _, u := range g.order {
		m := g.members[u]
		if u == owner {
			continue
		}
		better := best.User == 0 || m.Role > best.Role ||
			(m.Role == best.Role && m.JoinedAt < best.JoinedAt)
		if better {
			best = m
		}
	}
	return best.User, best.User != 0
}

func (tx *txn) setRole(g *group, user uint64, role wire.Role) {
	m := g.members[user]
	m.Role = role
	g.members[user] = m
	tx.putMember(m)
	if role == wire.RoleOwner {
		g.Owner = user
	}
}

// depart posts n to the members and to each departing user, then removes the
// users: the notice is the last thing they receive.
func (tx *txn) depart(g *group, user uint64, n wire.Notice, others ...uint64) error {
	leaving := append([]uint64{user}, others...)
	for _, u := range leaving {
		g.remove(u)
	}
	msg, err := tx.post(g, n.Actor, "", wire.KindNotice, noticeBody(n), leaving...)
	if err != nil {
		return err
	}
	for _, u := range leaving {
		if err := tx.leave(g, u, msg.ConvSeq); err != nil {
			return err
		}
	}
	return nil
}

// Kick removes user from conv. The owner may kick anyone; an admin only
// plain members.
func (s *Service) Kick(ctx context.Context, actor, conv, user uint64) error {
	err := s.do(ctx, actor, func(tx *txn) error {
		g, _, err := tx.outranked(conv, actor, user)
		if err != nil {
			return err
		}
		n := wire.Notice{Type: wire.NoticeKick, Actor: actor, Users: []uint64{user}, Text: fmt.Sprintf("%d removed %d from the group", actor, user)}
		return tx.depart(tx.mutable(g), user, n)
	})
	if err != nil {
		return fmt.Errorf("inbox: kick from %d: %w", conv, err)
	}
	return nil
}

// outranked checks that actor, an owner or admin of conv, ranks above the
// member user, and returns the group and user's membership. A user who is
// not a member is ErrNoSuchMember only to an owner or admin: a plain
// member may act on nobody.
func (tx *txn) outranked(conv, actor, user uint64) (*group, timeline.Member, error) {
	g, a, err := tx.groupMember(conv, actor)
	if err != nil {
		return nil, timeline.Member{}, err
	}
	if a.Role < wire.RoleAdmin {
		return nil, timeline.Member{}, fmt.Errorf("%w: %s %d cannot act on members", ErrForbidden, a.Role, actor)
	}
	m, ok := g.members[user]
	if !ok {
		return nil, timeline.Member{}, fmt.Errorf("%w: %d", ErrNoSuchMember, user)
	}
	if a.Role <= m.Role {
		return nil, timeline.Member{}, fmt.Errorf("%w: %s %d cannot act on %s %d", ErrForbidden, a.Role, actor, m.Role, user)
	}
	return g, m, nil
}

// Dismiss ends the group; only its owner may. Every member receives the
// notice and leaves with it.
func (s *Service) Dismiss(ctx context.Context, actor, conv uint64) error {
	err := s.do(ctx, actor, func(tx *txn) error {
		g, m, err := tx.groupMember(conv, actor)
		if err != nil {
			return err
		}
		if m.Role != wire.RoleOwner {
			return fmt.Errorf("%w: only the owner dismisses a group", ErrForbidden)
		}
		g = tx.mutable(g)
		g.Dismissed = true
		tx.b.Groups = append(tx.b.Groups, g.Group)
		var others []uint64
		for _, u := range g.order {
			if u != actor {
				others = append(others, u)
			}
		}
		n := wire.Notice{Type: wire.NoticeDismiss, Actor: actor, Text: fmt.Sprintf("%d dismissed the group", actor)}
		return tx.depart(g, actor, n, others...)
	})
	if err != nil {
		return fmt.Errorf("inbox: dismiss %d: %w", conv, err)
	}
	return nil
}

// SetRole makes user an admin or a plain member; only the owner may. Giving
// RoleOwner hands the group over, and the old owner becomes an admin.
func (s *Service) SetRole(ctx context.Context, actor, conv, user uint64, role wire.Role) error {
	if role < wire.RoleMember || role > wire.RoleOwner {
		return fmt.Errorf("inbox: set role in %d: %w: role %d", conv, ErrInvalid, role)
	}
	err := s.do(ctx, actor, func(tx *txn) error {
		g, target, err := tx.outranked(conv, actor, user)
		if err != nil {
			return err
		}
		if g.members[actor].Role != wire.RoleOwner {
			return fmt.Errorf("%w: only the owner sets roles", ErrForbidden)
		}
		if target.Role == role {
			return fmt.Errorf("%w: %d is already %s", ErrInvalid, user, role)
		}
		g = tx.mutable(g)
		tx.setRole(g, user, role)
		if role == wire.RoleOwner {
			tx.setRole(g, actor, wire.RoleAdmin)
			tx.b.Groups = append(tx.b.Groups, g.Group)
		}
		n := wire.Notice{Type: wire.NoticeRole, Actor: actor, Users: []uint64{user}, Role: role.String(),
			Text: fmt.Sprintf("%d made %d %s", actor, user, role)}
		_, err = tx.post(g, actor, "", wire.KindNotice, noticeBody(n))
		return err
	})
	if err != nil {
		return fmt.Errorf("inbox: set role in %d: %w", conv, err)
	}
	return nil
}

// MuteMember stops user from sending to conv until until (the zero time
// lifts the mute). The owner may mute anyone, an admin plain members.
func (s *Service) MuteMember(ctx context.Context, actor, conv, user uint64, until time.Time) error {
	err := s.do(ctx, actor, func(tx *txn) error {
		g, m, err := tx.outranked(conv, actor, user)
		if err != nil {
			return err
		}
		if unixMilli(m.MutedUntil) == unixMilli(until) {
			return nil // a repeat: the notice was posted once
		}
		if err := tx.checkUntil(until); err != nil {
			return err
		}
		g = tx.mutable(g)
		m.MutedUntil = until
		g.members[user] = m
		tx.putMember(m)
		n := wire.Notice{Type: wire.NoticeMute, Actor: actor, Users: []uint64{user}, Until: unixMilli(until),
			Text: muteText(actor, fmt.Sprint(user), until)}
		_, err = tx.post(g, actor, "", wire.KindNotice, noticeBody(n))
		return err
	})
	if err != nil {
		return fmt.Errorf("inbox: mute in %d: %w", conv, err)
	}
	return nil
}

// MuteGroup lets only the owner and admins send to conv until until (the zero
// time lifts it); owner and admins may set it.
func (s *Service) MuteGroup(ctx context.Context, actor, conv uint64, until time.Time) error {
	err := s.do(ctx, actor, func(tx *txn) error {
		g, m, err := tx.groupMember(conv, actor)
		if err != nil {
			return err
		}
		if m.Role < wire.RoleAdmin {
			return fmt.Errorf("%w: only the owner and admins mute a group", ErrForbidden)
		}
		if unixMilli(g.MutedUntil) == unixMilli(until) {
			return nil // a repeat: the notice was posted once
		}
		if err := tx.checkUntil(until); err != nil {
			return err
		}
		g = tx.mutable(g)
		g.MutedUntil = until
		tx.b.Groups = append(tx.b.Groups, g.Group)
		n := wire.Notice{Type: wire.NoticeMuteGroup, Actor: actor, Until: unixMilli(until), Text: muteText(actor, "the group", until)}
		_, err = tx.post(g, actor, "", wire.KindNotice, noticeBody(n))
		return err
	})
	if err != nil {
		return fmt.Errorf("inbox: mute group %d: %w", conv, err)
	}
	return nil
}

// checkUntil refuses a mute that would end before it starts: it would post
// a notice saying someone is muted while nobody is. The zero time lifts a
// mute.
func (tx *txn) checkUntil(until time.Time) error {
	if !until.IsZero() && !until.After(tx.now) {
		return fmt.Errorf("%w: mute until %d ms is not in the future (0 lifts a mute)", ErrInvalid, until.UnixMilli())
	}
	return nil
}

func unixMilli(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

// SetDND turns do-not-disturb of conv on or off for user: no offline pushes
// for it while on. It is the user's own setting and posts no notice; a
// change reaches the user's other devices as a KindDND row in the user's
// inbox, and setting what is already set changes nothing.
func (s *Service) SetDND(ctx context.Context, user, conv uint64, on bool) error {
	err := s.do(ctx, user, func(tx *txn) error {
		g, m, err := tx.memberOf(conv, user)
		if err != nil {
			return err
		}
		value := uint64(0)
		if on {
			value = 1
		}
		direct, err := tx.direct(user, conv)
		if err != nil {
			return err
		}
		if !direct {
			// The member record is the setting; the user's entry and
			// devices learn it from the record, in order with the
			// conversation's messages.
			if m.DND == on {
				return nil
			}
			g = tx.mutable(g)
			m.DND = on
			g.members[user] = m
			tx.putMember(m)
			return tx.settingRecord(wire.KindDND, user, conv, value)
		}
		c, err := tx.conversation(user, conv)
		if err != nil {
			return err
		}
		if c.DND == on {
			return nil
		}
		c.DND = on
		tx.putConversation(c)
		g = tx.mutable(g)
		m.DND = on
		g.members[user] = m
		tx.putMember(m)
		return tx.deliverSetting(wire.KindDND, user, conv, value)
	})
	if err != nil {
		return fmt.Errorf("inbox: set do-not-disturb in %d: %w", conv, err)
	}
	return nil
}

// MarkRead moves user's read marker of conv to convSeq (capped at the last
// message the user has) and returns the marker. A marker never moves back:
// an older convSeq changes nothing. A moved marker reaches the user's other
// devices as a KindRead row in the user's inbox. A former member, of a
// dismissed group too, may still move it up to the notice they left with,
// so that the conversation's unread count can reach zero.
func (s *Service) MarkRead(ctx context.Context, user, conv, convSeq uint64) (uint64, error) {
	var marker uint64
	err := s.do(ctx, user, func(tx *txn) error {
		if err := tx.ownUser(user); err != nil {
			return err
		}
		c, err := tx.conversation(user, conv)
		if err != nil {
			return err
		}
		limit := c.LeftAt
		if limit == 0 {
			if limit, err = tx.anyConvHead(conv); err != nil {
				return err
			}
		}
		if marker, err = tx.readSeq(user, conv); err != nil {
			return err
		}
		convSeq = min(convSeq, limit)
		if convSeq <= marker {
			return nil
		}
		marker = convSeq
		tx.setMarker(user, conv, marker)
		return tx.deliverSetting(wire.KindRead, user, conv, marker)
	})
	if err != nil {
		return 0, fmt.Errorf("inbox: mark read in %d: %w", conv, err)
	}
	return marker, nil
}

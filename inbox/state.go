package inbox

import (
	"errors"
	"maps"
	"slices"
	"time"

	"github.com/inboxd/inboxd/sequencer"
	"github.com/inboxd/inboxd/timeline"
	"github.com/inboxd/inboxd/wire"
)

// group is the committed state of a group as the committer needs it to
// validate and fan out. The committer copies a group before changing it, so a
// failed batch leaves the cached one untouched.
type group struct {
	timeline.Group
	members map[uint64]timeline.Member
	order   []uint64 // member ids ascending: the fan-out order
	// last is the server time of the newest committed message: where each
	// member's entry of the activity index stands.
	last time.Time
}

func (g *group) clone() *group {
	c := *g
	c.members = maps.Clone(g.members)
	c.order = slices.Clone(g.order)
	return &c
}

func (g *group) size() int { return len(g.order) }

func (g *group) add(m timeline.Member) {
	g.members[m.User] = m
	i, found := slices.BinarySearch(g.order, m.User)
	if !found {
		g.order = slices.Insert(g.order, i, m.User)
	}
}

func (g *group) remove(user uint64) {
	delete(g.members, user)
	if i, found := slices.BinarySearch(g.order, user); found {
		g.order = slices.Delete(g.order, i, i+1)
	}
}

// speaks reports whether m may send in g at now.
func (g *group) speaks(m timeline.Member, now time.Time) bool {
	if m.MutedUntil.After(now) {
		return false
	}
	return m.Role >= wire.RoleAdmin || !g.MutedUntil.After(now)
}

// group returns the group's state as this batch sees it, loading it from the
// store on first use: the group, its members (do-not-disturb included) and
// its newest message, three reads whatever the group's size.
func (tx *txn) group(conv uint64) (*group, error) {
	if g, ok := tx.groups[conv]; ok {
		return g, nil
	}
	if g, ok := tx.s.groups.get(conv); ok {
		return g, nil
	}
	st := tx.s.store
	info, err := st.Group(tx.ctx, conv)
	if errors.Is(err, timeline.ErrNotFound) {
		return nil, ErrNoGroup
	}
	if err != nil {
		return nil, storeErr("load group", err)
	}
	ms, err := st.Members(tx.ctx, conv)
	if err != nil {
		return nil, storeErr("load members", err)
	}
	last, err := st.Messages(tx.ctx, conv, timeline.Range{Desc: true, Limit: 1})
	if err != nil {
		return nil, storeErr("load newest message", err)
	}
	g := &group{Group: info, members: make(map[uint64]timeline.Member, len(ms)), order: make([]uint64, 0, len(ms))}
	for _, m := range ms {
		g.add(m)
	}
	if len(last) == 1 {
		g.last = last[0].Time
	}
	tx.s.groups.put(g)
	return g, nil
}

// mutable returns a copy of the group owned by this batch.
func (tx *txn) mutable(g *group) *group {
	if tx.groups[g.ID] == g {
		return g
	}
	c := g.clone()
	tx.groups[g.ID] = c
	return c
}

// liveGroup returns the group if it exists and is not dismissed.
func (tx *txn) liveGroup(conv uint64) (*group, error) {
	if err := tx.ownConv(conv); err != nil {
		return nil, err
	}
	g, err := tx.group(conv)
	if err != nil {
		return nil, err
	}
	if g.Dismissed {
		return nil, ErrDismissed
	}
	return g, nil
}

// memberOf returns user's membership of a live group.
func (tx *txn) memberOf(conv, user uint64) (*group, timeline.Member, error) {
	g, err := tx.liveGroup(conv)
	if err != nil {
		return nil, timeline.Member{}, err
	}
	m, ok := g.members[user]
	if !ok {
		return nil, timeline.Member{}, ErrNotMember
	}
	return g, m, nil
}

func (tx *txn) conversation(user, conv uint64) (timeline.Conversation, error) {
	if c, ok := tx.convs[userConv{user, conv}]; ok {
		return c, nil
	}
	c, err := tx.s.store.Conversation(tx.ctx, user, conv)
	if errors.Is(err, timeline.ErrNotFound) {
		return c, ErrNotMember
	}
	if err != nil {
		return c, storeErr("read conversation", err)
	}
	return c, nil
}

func (tx *txn) putConversation(c timeline.Conversation) {
	tx.convs[userConv{c.User, c.Conv}] = c
	tx.b.Conversations = append(tx.b.Conversations, c)
}

func (tx *txn) readSeq(user, conv uint64) (uint64, error) {
	if m, ok := tx.markers[userConv{user, conv}]; ok {
		return m, nil
	}
	c, err := tx.conversation(user, conv)
	return c.ReadSeq, err
}

func (tx *txn) setMarker(user, conv, readSeq uint64) {
	tx.markers[userConv{user, conv}] = readSeq
	tx.b.Markers = append(tx.b.Markers, timeline.Marker{User: user, Conv: conv, ReadSeq: readSeq})
}

func (tx *txn) dedup(sender uint64, id string) (timeline.Dedup, bool, error) {
	k := dedupKey{sender, id}
	if d, ok := tx.dedups[k]; ok {
		return d, true, nil
	}
	if r, ok := tx.read[k]; ok {
		return r.d, r.found, nil
	}
	d, err := tx.s.store.Dedup(tx.ctx, sender, id)
	if errors.Is(err, timeline.ErrNotFound) {
		return d, false, nil
	}
	if err != nil {
		return d, false, storeErr("read dedup", err)
	}
	return d, true, nil
}

func (tx *txn) convHead(conv uint64) (uint64, error) {
	n, err := tx.seq.Last(tx.ctx, sequencer.Key{Space: sequencer.Conv, ID: conv})
	if err != nil {
		return 0, storeErr("conv head", err)
	}
	return n, nil
}

// anyConvHead is convHead for a conversation of any shard: one this node
// does not serve has its committed messages in the store, and a delivery
// in flight may still bring the newest of them.
func (tx *txn) anyConvHead(conv uint64) (uint64, error) {
	if tx.serves(conv) {
		return tx.convHead(conv)
	}
	n, err := tx.s.store.LastConvSeq(tx.ctx, conv)
	if err != nil {
		return 0, storeErr("conv head", err)
	}
	return n, nil
}

// putMember writes m, undoing a removal of the same member earlier in the
// batch: a batch never both writes and removes one member.
func (tx *txn) putMember(m timeline.Member) {
	tx.b.RemoveMembers = slices.DeleteFunc(tx.b.RemoveMembers, func(k timeline.MemberKey) bool { return k.Conv == m.Conv && k.User == m.User })
	tx.b.Members = append(tx.b.Members, m)
}

// join makes user a member from conv_seq at on; the caller posts the notice
// at that conv_seq next.
func (tx *txn) join(g *group, user uint64, role wire.Role, at uint64) error {
	direct, err := tx.direct(user, g.ID)
	if err != nil {
		return err
	}
	if !direct {
		// The user's conversation entry, marker and activity index are
		// written where the record of the notice is applied.
		tx.out.init()
		tx.out.joins[userConv{user, g.ID}] = at
		g.add(timeline.Member{Conv: g.ID, User: user, Role: role, JoinedAt: at})
		tx.putMember(g.members[user])
		return nil
	}
	old, err := tx.conversation(user, g.ID)
	if err != nil && !errors.Is(err, ErrNotMember) {
		return err
	}
	if err := tx.rejoin(user, g.ID, old); err != nil {
		return err
	}
	g.add(timeline.Member{Conv: g.ID, User: user, Role: role, JoinedAt: at, DND: old.DND})
	tx.putMember(g.members[user])
	tx.putConversation(timeline.Conversation{User: user, Conv: g.ID, JoinedAt: at, DND: old.DND})
	// Everything before the join point counts as read, so unread starts at
	// the notice that made the user a member.
	tx.setMarker(user, g.ID, at-1)
	return nil
}

// rejoin notes where user's entry of conv stands in the activity index
// before the user joins: nowhere for a newcomer, at the message the user
// left with for a former member (unless this batch moved it already).
func (tx *txn) rejoin(user, conv uint64, old timeline.Conversation) error {
	prev, err := tx.rejoinPrev(user, conv, old)
	if err == nil {
		tx.touch(user, conv, prev)
	}
	return err
}

// rejoinPrev returns where user's entry of conv stands in the activity
// index before the user joins.
func (tx *txn) rejoinPrev(user, conv uint64, old timeline.Conversation) (time.Time, error) {
	if _, ok := tx.active[userConv{user, conv}]; ok || old.LeftAt == 0 {
		return time.Time{}, nil
	}
	msgs, err := tx.s.store.Messages(tx.ctx, conv, timeline.Range{From: old.LeftAt, To: old.LeftAt})
	if err != nil {
		return time.Time{}, storeErr("read the message a member left with", err)
	}
	if len(msgs) == 1 {
		return msgs[0].Time, nil
	}
	return time.Time{}, nil
}

// touch records where user's entry of conv stood in the activity index
// before this batch, the first time the batch moves it. The batch moves it
// to the batch's time.
func (tx *txn) touch(user, conv uint64, prev time.Time) {
	k := userConv{user, conv}
	if _, ok := tx.active[k]; !ok {
		tx.active[k] = prev
	}
}

// touchAt is touch to at, the time of a message applied from another
// shard's record, rather than the batch's time.
func (tx *txn) touchAt(user, conv uint64, prev, at time.Time) {
	tx.touch(user, conv, prev)
	if tx.activeAt == nil {
		tx.activeAt = make(map[userConv]time.Time)
	}
	tx.activeAt[userConv{user, conv}] = at
}

// activities returns the activity index moves of the batch.
func (tx *txn) activities() []timeline.Activity {
	var out []timeline.Activity
	for k, prev := range tx.active {
		at, ok := tx.activeAt[k]
		if !ok {
			at = tx.now
		}
		if prev.UnixMilli() != at.UnixMilli() {
			out = append(out, timeline.Activity{User: k.user, Conv: k.conv, At: at, Prev: prev})
		}
	}
	return out
}

// leave ends user's membership after conv_seq at, the notice of the leave.
func (tx *txn) leave(g *group, user, at uint64) error {
	m := g.members[user]
	g.remove(user)
	k := timeline.MemberKey{Conv: g.ID, User: user}
	tx.b.Members = slices.DeleteFunc(tx.b.Members, func(m timeline.Member) bool { return m.Conv == k.Conv && m.User == k.User })
	tx.b.RemoveMembers = append(tx.b.RemoveMembers, k)
	if direct, err := tx.direct(user, g.ID); err != nil || !direct {
		return err // the record of the notice ends the user's entry
	}
	c, err := tx.conversation(user, g.ID)
	if err != nil {
		return err
	}
	c.JoinedAt, c.LeftAt = m.JoinedAt, at
	tx.putConversation(c)
	return nil
}

// post appends a message to g's conversation and fans it out: one inbox row
// for every member and for each of also (who are leaving with this message).
func (tx *txn) post(g *group, sender uint64, clientMsgID string, kind wire.Kind, body []byte, also ...uint64) (*timeline.Message, error) {
	return tx.postMessage(g, timeline.Message{Sender: sender, ClientMsgID: clientMsgID, Kind: kind, Body: body}, also...)
}

// postMessage is post of m, whose Sender, ClientMsgID, Kind, Body and
// mentions are set: it records m's mentions, and a mentioned member gets
// the offline push even under do-not-disturb. A recall or an edit entry
// goes to no offline push: the device shows it when it next syncs.
func (tx *txn) postMessage(g *group, m timeline.Message, also ...uint64) (*timeline.Message, error) {
	sender, clientMsgID := m.Sender, m.ClientMsgID
	convSeq, err := tx.seq.Next(tx.ctx, sequencer.Key{Space: sequencer.Conv, ID: g.ID})
	if err != nil {
		return nil, storeErr("assign conv_seq", err)
	}
	id := tx.s.ids.next()
	tx.lastID = id
	m.Conv, m.ConvSeq, m.ID, m.Time = g.ID, convSeq, id, tx.now
	tx.b.Messages = append(tx.b.Messages, m)
	msg := &tx.b.Messages[len(tx.b.Messages)-1]
	tx.bodyBytes += len(m.Body)
	// The batch's slice may grow and move: deliveries keep their own copy.
	shared := new(timeline.Message)
	*shared = *msg
	tx.posted(len(tx.b.Messages)-1, shared)
	if m.MentionAll {
		tx.b.Mentions = append(tx.b.Mentions, timeline.Mention{Conv: g.ID, ConvSeq: convSeq})
	} else {
		for _, u := range m.Mentions {
			tx.b.Mentions = append(tx.b.Mentions, timeline.Mention{Conv: g.ID, User: u, ConvSeq: convSeq})
		}
	}
	amend := m.Kind == wire.KindRecall || m.Kind == wire.KindEdit
	tx.reserve(len(g.order) + len(also))
	// Members of shards served elsewhere get the message through one
	// outbox record; the others here, in this batch.
	var remotes []remote
	// Every recipient but one joining with this batch stands at the
	// group's newest committed message in the activity index.
	for _, u := range g.order {
		if !tx.s.local {
			direct, err := tx.direct(u, g.ID)
			if err != nil {
				return nil, err
			}
			if !direct {
				e := tx.remoteEffects(g, u, sender, convSeq)
				switch {
				case amend:
					e |= timeline.EffectNoPush
				case mentions(&m, u):
					e &^= timeline.EffectDND
				}
				remotes = append(remotes, remote{tx.s.shardOf(u), timeline.Recipient{User: u, Effects: e}})
				continue
			}
		}
		offline := offlineHook
		switch {
		case u == sender || amend:
			offline = offlineNone
		case g.members[u].DND && !mentions(&m, u):
			offline = offlineDND
		}
		tx.touch(u, g.ID, g.last)
		if err := tx.deliver(u, shared, offline); err != nil {
			return nil, err
		}
	}
	for _, u := range also {
		if !tx.s.local {
			direct, err := tx.direct(u, g.ID)
			if err != nil {
				return nil, err
			}
			if !direct {
				remotes = append(remotes, remote{tx.s.shardOf(u), timeline.Recipient{User: u, Effects: timeline.EffectLeave | timeline.EffectNoPush}})
				continue
			}
		}
		tx.touch(u, g.ID, g.last)
		if err := tx.deliver(u, shared, offlineNone); err != nil {
			return nil, err
		}
	}
	if !tx.s.local {
		tx.out.init()
		if len(remotes) > 0 {
			if err := tx.record(shared, tx.prevTime(g), remotes); err != nil {
				return nil, err
			}
		}
		tx.out.posted[g.ID] = true
	}
	if _, ok := g.members[sender]; ok && !senderRemote(remotes, sender) {
		// Sending reads everything before: the sender's marker moves with
		// the send, and the sender's devices learn it from the row itself.
		tx.setMarker(sender, g.ID, convSeq)
	}
	if clientMsgID != "" {
		d := timeline.Dedup{Sender: sender, ClientMsgID: clientMsgID, Conv: g.ID, ConvSeq: convSeq, MsgID: id, Time: tx.now}
		tx.dedups[dedupKey{sender, clientMsgID}] = d
		tx.b.Dedups = append(tx.b.Dedups, d)
	}
	return shared, nil
}

// mentions reports whether m mentions user.
func mentions(m *timeline.Message, user uint64) bool {
	if m.MentionAll {
		return true
	}
	_, found := slices.BinarySearch(m.Mentions, user)
	return found
}

// senderRemote reports whether the sender's row, and so the move of their
// marker, travels in the message's outbox record.
func senderRemote(rs []remote, sender uint64) bool {
	for _, r := range rs {
		if r.User == sender {
			return true
		}
	}
	return false
}

// reserve makes room for n more deliveries in the batch, doubling what it
// holds when it must grow: a commit appends its sends' rows member by
// member, and append alone grows a large slice by a quarter at a time,
// copying a commit's rows over and over (five times their size allocated,
// in BenchmarkFanout100).
func (tx *txn) reserve(n int) {
	tx.b.Rows = grow(tx.b.Rows, n)
	tx.deliveries = grow(tx.deliveries, n)
}

// grow returns s with room for n more elements, at least doubling its
// capacity when it has not.
func grow[E any](s []E, n int) []E {
	if cap(s)-len(s) >= n {
		return s
	}
	return slices.Grow(s, max(n, len(s)))
}

// deliver appends one inbox row for user.
func (tx *txn) deliver(user uint64, msg *timeline.Message, offline offlinePush) error {
	seq, err := tx.seq.Next(tx.ctx, sequencer.Key{Space: sequencer.Inbox, ID: user})
	if err != nil {
		return storeErr("assign seq", err)
	}
	row := timeline.Row{User: user, Seq: seq, Conv: msg.Conv, ConvSeq: msg.ConvSeq, MsgID: msg.ID, Kind: msg.Kind}
	tx.b.Rows = append(tx.b.Rows, row)
	tx.deliveries = append(tx.deliveries, delivery{Entry: Entry{Row: row, Msg: msg}, offline: offline})
	return nil
}

// deliverSetting appends an inbox-only row of kind (KindRead, KindDND)
// telling user's devices the new value of a setting of conv.
func (tx *txn) deliverSetting(kind wire.Kind, user, conv, value uint64) error {
	seq, err := tx.seq.Next(tx.ctx, sequencer.Key{Space: sequencer.Inbox, ID: user})
	if err != nil {
		return storeErr("assign seq", err)
	}
	row := timeline.Row{User: user, Seq: seq, Conv: conv, ConvSeq: value, Kind: kind}
	tx.b.Rows = append(tx.b.Rows, row)
	tx.deliveries = append(tx.deliveries, delivery{Entry: Entry{Row: row}})
	return nil
}

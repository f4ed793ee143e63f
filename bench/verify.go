package bench

import (
	"fmt"
	"maps"
	"slices"
	"sort"
	"sync"

	"github.com/inboxd/inboxd/wire"
)

// Violation kinds, one per guarantee the verifier checks.
const (
	ViolationSeqGap     = "seq-gap"       // inbox seqs not 1, 2, 3, …
	ViolationDuplicate  = "duplicate"     // a message twice in an inbox, or stored twice in a group
	ViolationMissing    = "missing"       // a stored (acknowledged) message absent from a member's inbox
	ViolationOrder      = "order"         // a conversation's messages out of conv_seq order
	ViolationConvGap    = "conv-gap"      // an inbox skips a conv_seq of one of the user's groups
	ViolationUnexpected = "unexpected"    // a message the model never sent, or to a group the user is not in
	ViolationMismatch   = "mismatch"      // two inboxes disagree on the message at a conv_seq
	ViolationUnread     = "unread"        // unread count or read marker differs from the model
	ViolationDevice     = "device-stream" // a device applied a different stream than the inbox holds
	ViolationAmend      = "amend"         // a message's recalled or edited state differs from its stored recalls and edits
	ViolationMention    = "mention"       // an unread mention count differs from the model
)

// Violation is one broken guarantee found by the Verifier.
type Violation struct {
	Kind   string `json:"kind"`
	User   uint64 `json:"user"`
	Device string `json:"device,omitempty"`
	Conv   uint64 `json:"conv,omitempty"`
	Detail string `json:"detail"`
}

func (v Violation) String() string {
	s := fmt.Sprintf("%s: user %d", v.Kind, v.User)
	if v.Device != "" {
		s += " device " + v.Device
	}
	if v.Conv != 0 {
		s += fmt.Sprintf(" conv %d", v.Conv)
	}
	return s + ": " + v.Detail
}

// SendState is what the load generator knows of one send.
type SendState uint8

const (
	// SendPending: not answered yet, or its answer was lost (a crash, a
	// dropped connection). It may or may not be stored.
	SendPending SendState = iota
	// SendAcked: the server acknowledged it, so it must be in every
	// member's inbox, once.
	SendAcked
	// SendRefused: the server answered with a permanent error; nothing was stored.
	SendRefused
)

// Op is what a send asks for: a message, or a recall or an edit of one.
type Op uint8

const (
	OpSend Op = iota
	OpRecall
	OpEdit
)

// Send is one message the generator sent, under its client msg id: a
// message (OpSend), or a RECALL or EDIT (each a new entry of the group,
// deduplicated and acknowledged like a message).
type Send struct {
	Conv        uint64
	Sender      uint64
	ClientMsgID string
	State       SendState
	MsgID       uint64 // from the ack
	ConvSeq     uint64 // from the ack
	Op          Op
	Target      uint64   // OpRecall, OpEdit: the conv_seq of the message changed
	Mentions    []uint64 // OpSend: the members it mentions, ascending
	MentionAll  bool     // OpSend: it mentions everyone
}

// Model is what the load generator did: the groups with their members and
// the messages sent to them. Membership is fixed from a group's creation
// (conv_seq 1, the create notice) to the end of the run, so every member
// must hold every message stored in the group.
//
// A Model is safe for concurrent use.
type Model struct {
	mu     sync.Mutex
	groups map[uint64]*groupModel
	users  map[uint64][]uint64 // user → their groups
	sends  []Send
	byKey  map[sendKey]int // (sender, client msg id) → index into sends
	marks  map[userConv]markModel
	strays map[string]*groupModel // by name: groups a retried CREATE_GROUP may have left (conv unknown)
}

type sendKey struct {
	sender uint64
	cmid   string
}

type userConv struct{ user, conv uint64 }

// markModel bounds a user's read marker set by MARK_READ: acked is the
// highest marker the server confirmed, maybe the highest asked for whose
// answer was lost.
type markModel struct{ acked, maybe uint64 }

type groupModel struct {
	conv    uint64
	owner   uint64
	members []uint64
	direct  bool // created by its first message, which may never come
}

// NewModel returns an empty model.
func NewModel() *Model {
	return &Model{
		groups: make(map[uint64]*groupModel),
		users:  make(map[uint64][]uint64),
		byKey:  make(map[sendKey]int),
		marks:  make(map[userConv]markModel),
		strays: make(map[string]*groupModel),
	}
}

// MaybeGroup records that a CREATE_GROUP of the group named name, by owner
// with members (owner included), got no answer or a retryable error that
// may still have created it (UNAVAILABLE, TIMEOUT: the store settles it
// later), and was made again. The group it may have left besides the one
// the run uses holds only its create notice, in each of its members'
// inboxes: the verifier accepts that, and nothing else of it.
func (m *Model) MaybeGroup(name string, owner uint64, members []uint64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.strays[name] = &groupModel{owner: owner, members: slices.Clone(members)}
}

// AddDirect records the direct conversation conv of users a and b, which
// their first send creates: both are its members from conv_seq 1, which is
// a message and no notice.
func (m *Model) AddDirect(conv, a, b uint64) {
	m.AddGroup(conv, 0, []uint64{a, b})
	m.mu.Lock()
	defer m.mu.Unlock()
	m.groups[conv].direct = true
}

// AddGroup records a group created by owner with members (owner included).
func (m *Model) AddGroup(conv, owner uint64, members []uint64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.groups[conv] = &groupModel{conv: conv, owner: owner, members: slices.Clone(members)}
	for _, u := range members {
		m.users[u] = append(m.users[u], conv)
	}
}

// Groups returns the groups of user.
func (m *Model) Groups(user uint64) []uint64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.users[user])
}

// NewSend records a send about to be made and returns its handle.
func (m *Model) NewSend(conv, sender uint64, cmid string) int {
	return m.New(Send{Conv: conv, Sender: sender, ClientMsgID: cmid})
}

// New records s, a send of any Op about to be made, and returns its handle.
func (m *Model) New(s Send) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	s.State, s.MsgID, s.ConvSeq = SendPending, 0, 0
	m.sends = append(m.sends, s)
	i := len(m.sends) - 1
	m.byKey[sendKey{s.Sender, s.ClientMsgID}] = i
	return i
}

// Ack records the server's acknowledgement of send i and returns its conv.
func (m *Model) Ack(i int, msgID, convSeq uint64) (conv uint64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := &m.sends[i]
	s.State, s.MsgID, s.ConvSeq = SendAcked, msgID, convSeq
	return s.Conv
}

// Refuse records that send i was refused for good.
func (m *Model) Refuse(i int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.sends[i].State = SendRefused
}

// Send returns a copy of send i.
func (m *Model) Send(i int) Send {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.sends[i]
}

// MarkRead records a MARK_READ of user in conv to convSeq: answered with
// the marker readSeq when ok, or with its outcome unknown.
func (m *Model) MarkRead(user, conv, convSeq, readSeq uint64, ok bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	k := userConv{user, conv}
	mm := m.marks[k]
	if ok {
		mm.acked = max(mm.acked, readSeq)
	} else {
		mm.maybe = max(mm.maybe, convSeq)
	}
	m.marks[k] = mm
}

// Counts returns how many sends are in each state.
func (m *Model) Counts() (pending, acked, refused int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, s := range m.sends {
		switch s.State {
		case SendPending:
			pending++
		case SendAcked:
			acked++
		case SendRefused:
			refused++
		}
	}
	return pending, acked, refused
}

// AckedFeatures counts the acknowledged recalls, edits and messages that
// mention someone.
func (m *Model) AckedFeatures() (recalls, edits, mentions int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, s := range m.sends {
		switch {
		case s.State != SendAcked:
		case s.Op == OpRecall:
			recalls++
		case s.Op == OpEdit:
			edits++
		case len(s.Mentions) > 0 || s.MentionAll:
			mentions++
		}
	}
	return recalls, edits, mentions
}

// Users returns every user of the model's groups, in increasing order.
func (m *Model) Users() []uint64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	us := make([]uint64, 0, len(m.users))
	for u := range m.users {
		us = append(us, u)
	}
	slices.Sort(us)
	return us
}

// InboxEntry is one inbox row as a client read it, with the fields of its
// message the verifier needs.
type InboxEntry struct {
	Seq         uint64
	Conv        uint64
	ConvSeq     uint64
	MsgID       uint64
	Kind        wire.Kind
	Sender      uint64
	ClientMsgID string
	Recalled    bool   // the message is served recalled
	Edited      bool   // the message is served with an edited_ms
	GroupName   string // of a create notice: the name of the group created
}

// ConvState is a user's view of one conversation as CONVERSATIONS reports it.
type ConvState struct {
	Conv    uint64
	Head    uint64
	ReadSeq uint64
	Unread  uint64
	// MentionUnread is CONVERSATIONS' mention_unread.
	MentionUnread uint64
}

// Verifier checks the inboxes read back at the end of a run against a Model.
// Feed it each user's whole inbox in seq order (Inbox), the user's
// CONVERSATIONS (Conversations) and each device's applied stream (Device),
// then call Finish. Each inbox is checked as it streams in, so the verifier
// keeps per user only a few numbers per group, never the entries.
//
// A Verifier is not safe for concurrent use.
type Verifier struct {
	m          *Model
	slots      map[userConv]uint64    // (conv, conv_seq) → msg id: what every member must hold there
	placed     map[sendKey]uint64     // a stored send → the conv_seq it was found at
	ackedHead  map[uint64]uint64      // conv → highest acknowledged conv_seq
	storedHead map[uint64]uint64      // conv → highest conv_seq found in any inbox
	served     map[userConv]amended   // (conv, conv_seq) → its state as the first inbox served it
	mentions   map[uint64][]mention   // conv → its stored messages that mention someone, by conv_seq (built by Finish)
	users      map[uint64]*userView   // users whose inbox was read
	strays     map[uint64]*groupModel // conv → the Model's stray group its create notice named
	out        []Violation
	maxOut     int
	dropped    int
	entries    int // inbox entries checked
	devices    int // device streams checked
}

// amended is a message's recalled and edited state.
type amended struct{ recalled, edited bool }

// mention is a stored message that mentions users (all: everyone).
type mention struct {
	convSeq uint64
	users   []uint64
	all     bool
}

// userView is what the verifier keeps of one user's inbox.
type userView struct {
	user    uint64
	last    uint64            // last seq
	digest  uint64            // of the stream, as devices compute it
	convs   map[uint64]uint64 // conv → last conv_seq
	markers map[uint64]uint64 // conv → read marker derived from the stream
	seen    map[uint64]bool   // msg ids in this inbox
	server  map[uint64]ConvState
}

// NewVerifier returns a verifier of m. It reports at most maxViolations
// violations in detail (0: 1000) and counts the rest.
func NewVerifier(m *Model, maxViolations int) *Verifier {
	if maxViolations <= 0 {
		maxViolations = 1000
	}
	v := &Verifier{
		m: m, slots: make(map[userConv]uint64), placed: make(map[sendKey]uint64),
		ackedHead: make(map[uint64]uint64), storedHead: make(map[uint64]uint64), served: make(map[userConv]amended),
		users: make(map[uint64]*userView), strays: make(map[uint64]*groupModel), maxOut: maxViolations,
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, s := range m.sends {
		if s.State != SendAcked {
			continue
		}
		v.slots[userConv{s.Conv, s.ConvSeq}] = s.MsgID
		v.placed[sendKey{s.Sender, s.ClientMsgID}] = s.ConvSeq
		v.ackedHead[s.Conv] = max(v.ackedHead[s.Conv], s.ConvSeq)
	}
	return v
}

func (v *Verifier) report(kind string, user uint64, device string, conv uint64, format string, args ...any) {
	if len(v.out) >= v.maxOut {
		v.dropped++
		return
	}
	v.out = append(v.out, Violation{Kind: kind, User: user, Device: device, Conv: conv, Detail: fmt.Sprintf(format, args...)})
}

func (v *Verifier) view(user uint64) *userView {
	uv := v.users[user]
	if uv == nil {
		uv = &userView{user: user, convs: make(map[uint64]uint64), markers: make(map[uint64]uint64),
			seen: make(map[uint64]bool), digest: digestSeed}
		v.users[user] = uv
	}
	return uv
}

// Inbox checks the next entries of user's inbox, which continue those of
// earlier calls for the same user.
func (v *Verifier) Inbox(user uint64, entries []InboxEntry) {
	uv := v.view(user)
	v.m.mu.Lock()
	defer v.m.mu.Unlock()
	for i := range entries {
		v.entry(uv, &entries[i])
	}
}

func (v *Verifier) entry(uv *userView, e *InboxEntry) {
	v.entries++
	u := uv.user
	switch {
	case e.Seq <= uv.last:
		v.report(ViolationDuplicate, u, "", e.Conv, "seq %d again after seq %d", e.Seq, uv.last)
		return
	case e.Seq != uv.last+1:
		v.report(ViolationSeqGap, u, "", e.Conv, "seq %d follows seq %d", e.Seq, uv.last)
	}
	uv.last = e.Seq
	uv.digest = Digest(uv.digest, e.Seq, e.Conv, e.ConvSeq, e.MsgID, e.Kind)

	g := v.m.groups[e.Conv]
	if g == nil && v.stray(uv, e) {
		return
	}
	if g == nil || !slices.Contains(g.members, u) {
		v.report(ViolationUnexpected, u, "", e.Conv, "seq %d from a group the user is not a member of", e.Seq)
		return
	}
	if !e.Kind.HasMessage() {
		if e.Kind == wire.KindRead {
			uv.markers[e.Conv] = max(uv.markers[e.Conv], e.ConvSeq)
		}
		return
	}
	if uv.seen[e.MsgID] {
		v.report(ViolationDuplicate, u, "", e.Conv, "msg %d (conv_seq %d) again at seq %d", e.MsgID, e.ConvSeq, e.Seq)
		return
	}
	uv.seen[e.MsgID] = true
	prev := uv.convs[e.Conv]
	switch {
	case e.ConvSeq <= prev:
		v.report(ViolationOrder, u, "", e.Conv, "conv_seq %d at seq %d after conv_seq %d", e.ConvSeq, e.Seq, prev)
	case e.ConvSeq != prev+1:
		v.report(ViolationConvGap, u, "", e.Conv, "conv_seq %d at seq %d follows conv_seq %d", e.ConvSeq, e.Seq, prev)
	}
	uv.convs[e.Conv] = max(prev, e.ConvSeq)
	v.storedHead[e.Conv] = max(v.storedHead[e.Conv], e.ConvSeq)
	if e.Sender == u {
		// Sending moves the sender's marker (docs/protocol.md, "Read markers").
		uv.markers[e.Conv] = max(uv.markers[e.Conv], e.ConvSeq)
	}

	slot := userConv{e.Conv, e.ConvSeq}
	state := amended{e.Recalled, e.Edited}
	if was, ok := v.served[slot]; !ok {
		v.served[slot] = state
	} else if was != state {
		v.report(ViolationMismatch, u, "", e.Conv, "conv_seq %d served %+v, to another member %+v", e.ConvSeq, state, was)
	}
	if want, ok := v.slots[slot]; ok {
		if want != e.MsgID {
			v.report(ViolationMismatch, u, "", e.Conv, "conv_seq %d holds msg %d, expected msg %d", e.ConvSeq, e.MsgID, want)
		} else if i, ok := v.m.byKey[sendKey{e.Sender, e.ClientMsgID}]; ok && !kindOf(v.m.sends[i].Op, e.Kind) {
			v.report(ViolationMismatch, u, "", e.Conv, "conv_seq %d is of kind %#x, its request op %d", e.ConvSeq, uint16(e.Kind), v.m.sends[i].Op)
		}
		return
	}
	// The first inbox to show this conv_seq: it must be the create notice
	// or one of the model's sends whose ack was lost, stored only here.
	switch {
	case e.Kind == wire.KindNotice && e.ConvSeq == 1 && e.Sender == g.owner:
	case e.Kind == wire.KindNotice:
		v.report(ViolationUnexpected, u, "", e.Conv, "notice at conv_seq %d the run never caused", e.ConvSeq)
	default:
		k := sendKey{e.Sender, e.ClientMsgID}
		i, ok := v.m.byKey[k]
		if !ok || v.m.sends[i].Conv != e.Conv {
			v.report(ViolationUnexpected, u, "", e.Conv, "conv_seq %d holds msg %d (sender %d, client msg id %q) that was never sent to it",
				e.ConvSeq, e.MsgID, e.Sender, e.ClientMsgID)
		} else if !kindOf(v.m.sends[i].Op, e.Kind) {
			v.report(ViolationMismatch, u, "", e.Conv, "conv_seq %d is of kind %#x, its request op %d", e.ConvSeq, uint16(e.Kind), v.m.sends[i].Op)
		} else if at, dup := v.placed[k]; dup {
			v.report(ViolationDuplicate, u, "", e.Conv, "client msg id %q of sender %d stored at conv_seq %d and %d",
				e.ClientMsgID, e.Sender, at, e.ConvSeq)
		} else {
			v.placed[k] = e.ConvSeq
		}
	}
	v.slots[slot] = e.MsgID
}

// stray reports whether e, of a conversation the Model does not know, is
// the create notice of a group that a retried CREATE_GROUP may have left
// (Model.MaybeGroup): conv_seq 1, named as that group, by its owner, in
// the inbox of one of its members, once. Finish checks that every member
// holds it.
func (v *Verifier) stray(uv *userView, e *InboxEntry) bool {
	sg := v.m.strays[e.GroupName]
	switch {
	case e.Kind != wire.KindNotice || e.ConvSeq != 1 || e.GroupName == "" || sg == nil:
		return false
	case e.Sender != sg.owner || !slices.Contains(sg.members, uv.user):
		return false
	case uv.convs[e.Conv] != 0:
		v.report(ViolationDuplicate, uv.user, "", e.Conv, "the create notice of a stray group again at seq %d", e.Seq)
		return true
	}
	if was := v.strays[e.Conv]; was != nil && was != sg {
		return false // named as another group in another inbox
	}
	v.strays[e.Conv] = sg
	uv.convs[e.Conv] = 1
	return true
}

// kindOf reports whether an entry of kind k is what a request of op stores.
func kindOf(op Op, k wire.Kind) bool {
	switch op {
	case OpRecall:
		return k == wire.KindRecall
	case OpEdit:
		return k == wire.KindEdit
	}
	return k.Amendable()
}

// Conversations records what CONVERSATIONS told user at the end.
func (v *Verifier) Conversations(user uint64, convs []ConvState) {
	uv := v.view(user)
	uv.server = make(map[uint64]ConvState, len(convs))
	for _, c := range convs {
		uv.server[c.Conv] = c
	}
}

// Device checks that a device of user applied the same stream as the inbox
// read by Inbox: n entries whose Digest is digest.
func (v *Verifier) Device(user uint64, device string, n, digest uint64) {
	uv := v.view(user)
	v.devices++
	if n != uv.last || digest != uv.digest {
		v.report(ViolationDevice, user, device, 0, "applied %d entries (digest %x), the inbox holds %d (digest %x)",
			n, digest, uv.last, uv.digest)
	}
}

// Checked returns how many inbox entries and device streams were checked.
func (v *Verifier) Checked() (entries, devices int) { return v.entries, v.devices }

// Finish completes the checks that need every inbox — every member holds
// every message stored in their groups, unread counts — and returns every
// violation found, plus how many more were not kept.
func (v *Verifier) Finish() (violations []Violation, more int) {
	v.m.mu.Lock()
	defer v.m.mu.Unlock()
	users := make([]uint64, 0, len(v.users))
	for u := range v.users {
		users = append(users, u)
	}
	slices.Sort(users)
	own := make(map[userConv]uint64)   // (sender, conv) → newest conv_seq of their stored messages
	want := make(map[userConv]amended) // (conv, conv_seq) → what its stored recalls and edits made it
	v.mentions = make(map[uint64][]mention)
	for k, cs := range v.placed {
		s := &v.m.sends[v.m.byKey[k]]
		uc := userConv{k.sender, s.Conv}
		own[uc] = max(own[uc], cs)
		target := userConv{s.Conv, s.Target}
		switch a := want[target]; {
		case s.Op == OpRecall:
			a.recalled = true
			want[target] = a
		case s.Op == OpEdit:
			a.edited = true
			want[target] = a
		case len(s.Mentions) > 0 || s.MentionAll:
			v.mentions[s.Conv] = append(v.mentions[s.Conv], mention{cs, s.Mentions, s.MentionAll})
		}
	}
	// An edit entry of a recalled message is served recalled too: its text
	// went with the recall.
	for k, cs := range v.placed {
		if s := &v.m.sends[v.m.byKey[k]]; s.Op == OpEdit {
			want[userConv{s.Conv, cs}] = amended{recalled: want[userConv{s.Conv, s.Target}].recalled}
		}
	}
	for slot, got := range v.served {
		if w := want[slot]; got != w {
			v.report(ViolationAmend, 0, "", slot.user, "conv_seq %d served %+v; its stored recalls and edits make it %+v", slot.conv, got, w)
		}
	}
	for slot, w := range want {
		if _, ok := v.served[slot]; !ok {
			v.report(ViolationAmend, 0, "", slot.user, "conv_seq %d, recalled or edited %+v, in no inbox", slot.conv, w)
		}
	}
	strays := slices.Sorted(maps.Keys(v.strays))
	for _, c := range strays {
		for _, u := range v.strays[c].members {
			if uv := v.users[u]; uv != nil && uv.convs[c] == 0 {
				v.report(ViolationMissing, u, "", c, "the create notice of a stray group (a retried CREATE_GROUP) in another member's inbox, not in this one")
			}
		}
	}
	for _, u := range users {
		uv := v.users[u]
		convs := slices.Clone(v.m.users[u])
		sort.Slice(convs, func(i, j int) bool { return convs[i] < convs[j] })
		for _, c := range convs {
			v.finishConv(uv, v.m.groups[c], own[userConv{u, c}])
		}
	}
	return v.out, v.dropped
}

func (v *Verifier) finishConv(uv *userView, g *groupModel, ownHead uint64) {
	u, c := uv.user, g.conv
	head := max(v.ackedHead[c], v.storedHead[c])
	have := uv.convs[c]
	for cs := have + 1; cs <= head; cs++ {
		msg := v.slots[userConv{c, cs}]
		acked := cs <= v.ackedHead[c] && msg != 0
		what := "stored"
		if acked {
			what = "acknowledged"
		}
		v.report(ViolationMissing, u, "", c, "%s conv_seq %d (msg %d) not in the inbox, which ends at conv_seq %d", what, cs, msg, have)
	}
	if uv.server == nil {
		return
	}
	sc, ok := uv.server[c]
	if !ok && g.direct && head == 0 {
		return // never written to: it does not exist
	}
	if !ok {
		v.report(ViolationUnread, u, "", c, "CONVERSATIONS does not list the group")
		return
	}
	// The model's marker: the owner's create notice, the user's own stored
	// messages, the acknowledged MARK_READs; a MARK_READ whose answer was
	// lost may or may not have moved it.
	lo := ownHead
	if u == g.owner {
		lo = max(lo, 1)
	}
	mm := v.m.marks[userConv{u, c}]
	lo = max(lo, min(mm.acked, head))
	hi := max(lo, min(mm.maybe, head))
	derived := uv.markers[c]
	switch {
	case sc.Head != have:
		v.report(ViolationUnread, u, "", c, "CONVERSATIONS head %d, the inbox ends at conv_seq %d", sc.Head, have)
	case sc.Unread != sc.Head-sc.ReadSeq:
		v.report(ViolationUnread, u, "", c, "unread %d, head %d − read_seq %d = %d", sc.Unread, sc.Head, sc.ReadSeq, sc.Head-sc.ReadSeq)
	case sc.ReadSeq < lo || sc.ReadSeq > hi:
		v.report(ViolationUnread, u, "", c, "read_seq %d (unread %d), the model says %d..%d", sc.ReadSeq, sc.Unread, lo, hi)
	case derived != sc.ReadSeq:
		v.report(ViolationUnread, u, "", c, "read_seq %d, but the inbox's own and read entries give %d", sc.ReadSeq, derived)
	}
	var mentioned uint64
	for _, mn := range v.mentions[c] {
		if mn.convSeq > sc.ReadSeq && mn.convSeq <= sc.Head && (mn.all || slices.Contains(mn.users, u)) {
			mentioned++
		}
	}
	if want := min(mentioned, wire.MaxMentionUnread); sc.MentionUnread != want {
		v.report(ViolationMention, u, "", c, "mention_unread %d, the model says %d (read_seq %d, head %d)", sc.MentionUnread, want, sc.ReadSeq, sc.Head)
	}
}

// digestSeed starts every stream digest.
const digestSeed = 0x9e3779b97f4a7c15

// Digest folds one applied inbox entry into a running digest of a stream.
// Two streams have equal digests, with overwhelming probability, only if
// they hold the same entries in the same order.
func Digest(d, seq, conv, convSeq, msgID uint64, kind wire.Kind) uint64 {
	for _, x := range [...]uint64{seq, conv, convSeq, msgID, uint64(kind)} {
		d ^= x
		d *= 0x100000001b3 // FNV-1a's prime, on whole words
		d ^= d >> 29
	}
	return d
}

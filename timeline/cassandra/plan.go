package cassandra

import (
	"cmp"
	"math/bits"
	"slices"
	"sync"

	"github.com/inboxd/inboxd/timeline"
)

// maxWriteBytes bounds one unlogged batch: far below Cassandra's largest
// mutation (half a commit log segment, 16 MiB by default), and small enough
// to keep each request short.
const maxWriteBytes = 256 << 10

// stmt is one statement with its values.
type stmt struct {
	cql  string
	args []any
}

// write is statements applied as one unlogged batch: on one partition, or
// on a few, packed (pack). Cassandra applies each partition's part of a
// batch atomically and in isolation: a reader sees all of it or none of it.
type write []stmt

// A write packs the writes of other partitions, each alone in its chain,
// up to packStatements statements and about packBytes: the requests, not
// the rows, were what a fan-out to groups of 100 cost the node and the
// driver most (a send's ~200 partitions took 9.5–9.9 ms a send as a
// request each, and a commit of a send 6–8 ms packed up to 16;
// docs/benchmarks.md). The bounds keep below Cassandra's warnings for an
// unlogged batch across more than 10 partitions and over 5 KiB (its
// measure of a batch's size runs to about twice size's estimate).
const (
	packStatements = 10
	packBytes      = 2 << 10
)

// chain is writes applied one after another, each once the one before has
// landed: a timeline's new buckets in its bucket index, then its entries
// bucket by bucket, lowest first. A reader therefore finds a prefix of the
// batch's entries of a timeline, never a gap.
type chain []write

// plan is a Batch's writes, by phase. The phases run one after another and
// the chains of a phase in parallel:
//
//  1. messages, groups, members and conversation entries: what an inbox row
//     refers to, or what its reader looks up next;
//  2. inbox rows, read markers, activity index entries and the clock;
//  3. dedup records, which tell a resend that its message is stored, so
//     they land once everything they vouch for has.
type plan struct {
	phases  [3][]chain
	buckets []bucketKey // bucket index rows the plan writes
}

func (s *Store) plan(b *timeline.Batch) *plan {
	p := new(plan)
	q := &s.q
	p.phases[0] = timelineChains(p, &s.buckets, &q.messages, 'c', b.Messages,
		func(m *timeline.Message) (uint64, uint64) { return m.Conv, m.ConvSeq },
		func(m *timeline.Message, bucket uint64) (stmt, int) {
			return stmt{q.insertMessage, []any{m.Conv, bucket, m.ConvSeq, m.ID, m.Sender, text(m.ClientMsgID),
				int(m.Kind), blob(m.Body), m.Time.UnixMilli(), ids(m.Mentions), m.MentionAll, m.Recalled,
				m.Edited.UnixMilli(), m.LastEdit}}, 96 + len(m.Body) + len(m.ClientMsgID) + 8*len(m.Mentions)
		})
	p.phases[1] = timelineChains(p, &s.buckets, &q.inbox, 'i', b.Rows,
		func(r *timeline.Row) (uint64, uint64) { return r.User, r.Seq },
		func(r *timeline.Row, bucket uint64) (stmt, int) {
			return stmt{q.insertRow, []any{r.User, bucket, r.Seq, r.Conv, r.ConvSeq, r.MsgID, int(r.Kind)}}, 64
		})

	// A Batch may write one record twice, the later write winning. All of
	// a batch's writes share one timestamp, on which Cassandra would keep
	// the larger value rather than the later one: so only the last write
	// of each key is kept. Removals need no such care: on equal
	// timestamps a deletion wins, as in Pebble, where removals go last.
	var meta partitions
	for _, g := range lastWins(b.Groups, func(g *timeline.Group) any { return g.ID }) {
		meta.add(key{'g', g.ID}, stmt{q.insertGroup, []any{g.ID, text(g.Name), g.Owner, g.Created.UnixMilli(),
			g.Open, g.MutedUntil.UnixMilli(), g.Dismissed, text(g.Announcement), text(g.AvatarURL),
			g.Direct[0], g.Direct[1], g.Blocked[0], g.Blocked[1]}}, 128+len(g.Name)+len(g.Announcement)+len(g.AvatarURL))
	}
	for _, m := range lastWins(b.Members, func(m *timeline.Member) any { return timeline.MemberKey{Conv: m.Conv, User: m.User} }) {
		meta.add(key{'m', m.Conv}, stmt{q.insertMember, []any{m.Conv, m.User, int(m.Role), m.JoinedAt,
			m.MutedUntil.UnixMilli(), m.DND}}, 64)
	}
	for _, k := range b.RemoveMembers {
		meta.add(key{'m', k.Conv}, stmt{q.deleteMember, []any{k.Conv, k.User}}, 32)
	}
	for _, c := range lastWins(b.Conversations, func(c *timeline.Conversation) any { return [2]uint64{c.User, c.Conv} }) {
		meta.add(key{'u', c.User}, stmt{q.insertConversation, []any{c.User, c.Conv, c.JoinedAt, c.LeftAt, c.DND}}, 64)
	}
	p.phases[0] = append(p.phases[0], meta.chains()...)

	// Nothing refers to a read marker (the KindRead row that announces one
	// carries its value) or to the clock: they go with the rows.
	var late partitions
	for _, m := range lastWins(b.Markers, func(m *timeline.Marker) any { return [2]uint64{m.User, m.Conv} }) {
		late.add(key{'u', m.User}, stmt{q.updateMarker, []any{m.ReadSeq, m.User, m.Conv}}, 48)
	}
	// An activity index entry moves within its user's partition: the
	// delete and the insert land together.
	for _, a := range b.Activities {
		if !a.Prev.IsZero() {
			late.add(key{'a', a.User}, stmt{q.deleteActivity, []any{a.User, a.Prev.UnixMilli(), a.Conv}}, 48)
		}
		late.add(key{'a', a.User}, stmt{q.insertActivity, []any{a.User, a.At.UnixMilli(), a.Conv}}, 48)
	}
	for _, m := range b.Mentions {
		late.add(key{'n', mentionPartition(m.Conv, m.User)}, stmt{q.insertMention, []any{m.Conv, m.User, m.ConvSeq}}, 48)
	}
	if b.Clock != 0 {
		late.add(key{'k', uint64(b.ClockNode)}, stmt{q.insertClock, []any{b.ClockNode, b.Clock}}, 32)
	}
	s.planOutbox(&late, b)
	p.phases[1] = append(p.phases[1], late.chains()...)

	type dedupKey struct {
		sender uint64
		id     string
	}
	for _, d := range lastWins(b.Dedups, func(d *timeline.Dedup) any { return dedupKey{d.Sender, d.ClientMsgID} }) {
		p.phases[2] = append(p.phases[2], chain{{stmt{q.insertDedup, []any{d.Sender, text(d.ClientMsgID),
			d.Conv, d.ConvSeq, d.MsgID, d.Time.UnixMilli()}}}})
	}
	for i := range p.phases {
		p.phases[i] = pack(p.phases[i])
	}
	return p
}

// pack returns chains with the small writes that are alone in their chain
// packed together, in order, within packStatements and packBytes. A chain
// of several writes keeps them apart: its order is what a reader relies
// on.
func pack(chains []chain) []chain {
	var out []chain
	var packed write
	size := 0
	flush := func() {
		if len(packed) > 0 {
			out = append(out, chain{packed})
			packed, size = nil, 0
		}
	}
	for _, c := range chains {
		n := 0
		if len(c) == 1 {
			n = c[0].size()
		}
		if n == 0 || n > packBytes || len(c[0]) > packStatements {
			out = append(out, c)
			continue
		}
		if len(packed)+len(c[0]) > packStatements || size+n > packBytes {
			flush()
		}
		packed = append(packed, c[0]...)
		size += n
	}
	flush()
	return out
}

// size estimates the bytes of w's values, and a little for each column.
func (w write) size() int {
	n := 0
	for _, st := range w {
		for _, a := range st.args {
			switch v := a.(type) {
			case []byte:
				n += len(v)
			case []uint64:
				n += 8 * len(v)
			}
			n += 16
		}
	}
	return n
}

// timelineChains returns one chain for each timeline that entries write to.
func timelineChains[T any](p *plan, cache *bucketCache, tq *timelineQueries, space byte, entries []T,
	pos func(*T) (key, seq uint64), insert func(e *T, bucket uint64) (stmt, int)) []chain {
	// Group by timeline in one pass: a fan-out batch holds rows of many
	// users, each user's already in seq order, which sorting the whole
	// batch would spend most of a commit's CPU time on.
	byKey := make(map[uint64][]*T)
	var keys []uint64
	for i := range entries {
		k, _ := pos(&entries[i])
		if _, ok := byKey[k]; !ok {
			keys = append(keys, k)
		}
		byKey[k] = append(byKey[k], &entries[i])
	}
	chains := make([]chain, len(keys))
	for i, k := range keys {
		es := byKey[k]
		bySeq := func(a, b *T) int {
			_, sa := pos(a)
			_, sb := pos(b)
			return cmp.Compare(sa, sb)
		}
		if !slices.IsSortedFunc(es, bySeq) {
			slices.SortStableFunc(es, bySeq)
		}
		chains[i] = timelineChain(p, cache, tq, space, k, es, pos, insert)
	}
	return chains
}

// timelineChain returns the chain of one timeline's entries, in seq order:
// first the index rows of its buckets that the cache does not know, then the
// entries, in a new write at each bucket and at maxWriteBytes.
func timelineChain[T any](p *plan, cache *bucketCache, tq *timelineQueries, space byte, key uint64, entries []*T,
	pos func(*T) (key, seq uint64), insert func(e *T, bucket uint64) (stmt, int)) chain {
	var index write
	var c chain
	size := 0
	for i, e := range entries {
		_, seq := pos(e)
		bk := bucketKey{space, key, seq / tq.bucketSize}
		if i == 0 || bk != p.buckets[len(p.buckets)-1] {
			p.buckets = append(p.buckets, bk)
			if !cache.has(bk) {
				index = append(index, stmt{tq.insertBucket, []any{key, bk.bucket}})
			}
			c = append(c, nil)
			size = 0
		}
		st, n := insert(e, bk.bucket)
		if size > 0 && size+n > maxWriteBytes {
			c = append(c, nil)
			size = 0
		}
		c[len(c)-1] = append(c[len(c)-1], st)
		size += n
	}
	if len(index) > 0 {
		c = append(chain{index}, c...)
	}
	return c
}

// key names a partition of the metadata tables: a table letter and an id.
// ids returns a list to bind as a frozen list: never nil, which the
// driver would write as a null.
func ids(list []uint64) []uint64 {
	if list == nil {
		return []uint64{}
	}
	return list
}

// mentionPartition folds a mentions partition key (conv, user) into the id
// of a key: two partitions that fold alike only share a write.
func mentionPartition(conv, user uint64) uint64 {
	return conv ^ bits.RotateLeft64(user*0x9E3779B97F4A7C15, 32)
}

type key struct {
	table byte
	id    uint64
}

// partitions collects statements by partition, in the order first seen.
type partitions struct {
	index  map[key]int
	writes []write
	sizes  []int
}

func (ps *partitions) add(k key, st stmt, size int) {
	if ps.index == nil {
		ps.index = make(map[key]int)
	}
	i, ok := ps.index[k]
	if !ok || ps.sizes[i]+size > maxWriteBytes {
		i = len(ps.writes)
		ps.index[k] = i
		ps.writes = append(ps.writes, nil)
		ps.sizes = append(ps.sizes, 0)
	}
	ps.writes[i] = append(ps.writes[i], st)
	ps.sizes[i] += size
}

// chains returns a chain for each write: writes of different partitions,
// and the parts of one partition split at maxWriteBytes, are independent.
func (ps *partitions) chains() []chain {
	out := make([]chain, len(ps.writes))
	for i, w := range ps.writes {
		out[i] = chain{w}
	}
	return out
}

// lastWins returns items without those that a later item of the same key
// overwrites.
func lastWins[T any](items []T, key func(*T) any) []T {
	if len(items) < 2 {
		return items
	}
	last := make(map[any]int, len(items))
	for i := range items {
		last[key(&items[i])] = i
	}
	if len(last) == len(items) {
		return items
	}
	out := make([]T, 0, len(last))
	for i := range items {
		if last[key(&items[i])] == i {
			out = append(out, items[i])
		}
	}
	return out
}

// text and blob return a value that the driver sends as an empty value,
// never as null: a null is a tombstone.
func text(s string) []byte {
	if s == "" {
		return []byte{}
	}
	return []byte(s)
}

func blob(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

// bucketKey names one bucket of one timeline; space is 'i' (inbox) or 'c'
// (conversation).
type bucketKey struct {
	space  byte
	key    uint64
	bucket uint64
}

// bucketCache remembers the bucket index rows that committed batches wrote,
// so that a batch writes the index row of a bucket only when it is new to
// this store. The store is the keyspace's one writer, and index rows are
// never deleted, so a remembered row exists. When full the cache starts
// over, which costs index rows written again, idempotently.
type bucketCache struct {
	mu   sync.Mutex
	max  int
	seen map[bucketKey]struct{}
}

func (c *bucketCache) has(k bucketKey) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, ok := c.seen[k]
	return ok
}

func (c *bucketCache) add(keys []bucketKey) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.seen == nil || len(c.seen)+len(keys) > c.max {
		c.seen = make(map[bucketKey]struct{}, len(keys))
	}
	for _, k := range keys {
		c.seen[k] = struct{}{}
	}
}

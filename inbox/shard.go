package inbox

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/inboxd/inboxd/cluster"
	"github.com/inboxd/inboxd/sequencer"
	"github.com/inboxd/inboxd/timeline"
	"github.com/inboxd/inboxd/wire"
)

// shardOf returns the shard of a user or conversation id.
func (s *Service) shardOf(id uint64) int { return cluster.ShardOf(id, s.own.ShardCount()) }

// serves reports whether this node serves the shard of a user or
// conversation id now.
func (s *Service) serves(id uint64) bool {
	if s.local {
		return true
	}
	_, ok := s.own.Serving(s.shardOf(id))
	return ok
}

// ownUser fails with ErrNotOwner unless this node serves user's shard.
func (s *Service) ownUser(user uint64) error { return s.owner(s.serves(user), "user", user) }

// ownConv fails with ErrNotOwner unless this node serves conv's shard.
func (s *Service) ownConv(conv uint64) error { return s.owner(s.serves(conv), "conversation", conv) }

func (s *Service) owner(served bool, what string, id uint64) error {
	if !served {
		return fmt.Errorf("%w: %s %d is in shard %d", ErrNotOwner, what, id, s.shardOf(id))
	}
	return nil
}

// servesShard reports whether this node serves shard under the epoch the
// batch began with: a shard that moved since is not served until the next
// batch, which first forgets what was cached of it (checkEpochs).
func (tx *txn) servesShard(shard int) bool {
	if tx.s.local {
		return true
	}
	epoch, ok := tx.s.own.Serving(shard)
	return ok && epoch == tx.s.out.epochs[shard]
}

// serves is servesShard for the shard of a user or conversation id.
func (tx *txn) serves(id uint64) bool { return tx.s.local || tx.servesShard(tx.s.shardOf(id)) }

// ownUser and ownConv are Service.ownUser and ownConv for the batch.
func (tx *txn) ownUser(user uint64) error { return tx.s.owner(tx.serves(user), "user", user) }
func (tx *txn) ownConv(conv uint64) error { return tx.s.owner(tx.serves(conv), "conversation", conv) }

// newConvID returns a new conversation id in a shard this node serves, so
// that a group starts on the node of the command that creates it.
func (tx *txn) newConvID() (uint64, error) {
	s := tx.s
	if s.local {
		return s.ids.next(), nil
	}
	served := len(s.own.Shards())
	if served == 0 {
		return 0, fmt.Errorf("%w: no shard served here", ErrNotOwner)
	}
	// An id lands in a served shard with probability served/shards: a few
	// draws on average, and a bound far beyond any bad luck.
	for range 64 * s.own.ShardCount() / served {
		if id := s.ids.next(); tx.serves(id) {
			return id, nil
		}
	}
	return 0, fmt.Errorf("%w: no id found in a served shard", ErrNotOwner)
}

// pair names the stream from a source shard to a destination shard.
type pair struct{ src, dst int }

// outState is what the committer knows of the streams: the last outbox seq
// of each source shard it writes, the last stream number of each pair it
// writes, and the applied mark of each stream into the shards it applies.
// Each is recovered from the store on first use, and forgotten after a
// failed commit (the batch may have landed) and when the shard moves away.
type outState struct {
	seq        map[int]uint64 // source: last outbox seq
	recovered  map[int]bool   // source: seq and fromOutbox read
	fromOutbox map[pair]uint64
	streams    map[pair]uint64
	applied    map[pair]uint64
	loaded     map[int]bool // dest: its applied marks read
	// epochs is each shard's epoch as the committer last saw it, 0 when
	// not served.
	epochs []uint64
}

func newOutState() outState {
	return outState{
		seq: map[int]uint64{}, recovered: map[int]bool{}, fromOutbox: map[pair]uint64{},
		streams: map[pair]uint64{}, applied: map[pair]uint64{}, loaded: map[int]bool{},
	}
}

// recover reads source's outbox: its last seq and the last stream number of
// each pair in it.
func (o *outState) recover(ctx context.Context, st timeline.Store, src int) error {
	if o.recovered[src] {
		return nil
	}
	last, err := st.OutboxLow(ctx, src)
	if err != nil {
		return err
	}
	for {
		recs, err := st.Outbox(ctx, src, last, outboxPage)
		if err != nil {
			return err
		}
		for _, r := range recs {
			last = r.Seq
			for _, d := range r.Dests {
				k := pair{src, d.Shard}
				o.fromOutbox[k] = max(o.fromOutbox[k], d.Stream)
			}
		}
		if len(recs) < outboxPage {
			break
		}
	}
	o.seq[src], o.recovered[src] = last, true
	return nil
}

// outboxPage is how many outbox records one read returns.
const outboxPage = 512

// load reads the applied marks of every stream into dest.
func (o *outState) load(ctx context.Context, st timeline.Store, dest int) error {
	if o.loaded[dest] {
		return nil
	}
	marks, err := st.Applied(ctx, dest)
	if err != nil {
		return err
	}
	for _, m := range marks {
		o.applied[pair{m.Source, dest}] = m.Stream
	}
	o.loaded[dest] = true
	return nil
}

// forget drops what is known of the streams of shards: as sources and as
// destinations.
func (o *outState) forget(shards ...int) {
	for _, sh := range shards {
		delete(o.seq, sh)
		delete(o.recovered, sh)
		delete(o.loaded, sh)
	}
	// A pair forgotten makes both of its ends be read again: the
	// recovered and loaded flags stand for every pair of a shard.
	for _, m := range []map[pair]uint64{o.fromOutbox, o.streams, o.applied} {
		for k := range m {
			if slices.Contains(shards, k.src) || slices.Contains(shards, k.dst) {
				delete(m, k)
				delete(o.recovered, k.src)
				delete(o.loaded, k.dst)
			}
		}
	}
}

// checkEpochs forgets, before a batch, what the committer holds of every
// shard whose owner changed since the last batch (lost, gained, or lost and
// gained back): its groups, its sequence heads and its streams, which
// another node may have moved meanwhile. It costs a Serving call per shard
// per batch, and nothing in the embedded mode, whose shards never move.
func (s *Service) checkEpochs() {
	n := s.own.ShardCount()
	if s.out.epochs == nil {
		s.out.epochs = make([]uint64, n)
	}
	var changed []int
	for sh := range n {
		epoch, ok := s.own.Serving(sh)
		if !ok {
			epoch = 0
		}
		if epoch != s.out.epochs[sh] {
			s.out.epochs[sh] = epoch
			changed = append(changed, sh)
		}
	}
	if len(changed) == 0 {
		return
	}
	moved := make([]bool, n)
	for _, sh := range changed {
		moved[sh] = true
	}
	s.out.forget(changed...)
	for _, id := range slices.Collect(maps.Keys(s.groups.byID)) {
		if moved[s.shardOf(id)] {
			s.groups.remove(id)
		}
	}
	s.seq.Forget(func(k sequencer.Key) bool { return moved[s.shardOf(k.ID)] })
	for _, sh := range changed {
		s.fresh[sh].Store(s.out.epochs[sh])
	}
}

// committed returns the committed head of k that the committer holds, if
// it holds one loaded under the shard's current epoch. One cached under an
// earlier epoch is stale: the committer forgets it only at its next batch,
// and meanwhile the shard may have moved away and back, with another node
// writing past it (a read cut there would miss acknowledged entries).
func (s *Service) committed(k sequencer.Key) (uint64, bool) {
	if !s.local {
		sh := s.shardOf(k.ID)
		if epoch, ok := s.own.Serving(sh); !ok || epoch != s.fresh[sh].Load() {
			return 0, false
		}
	}
	return s.seq.Committed(k)
}

// txOut is a batch's changes to outState, merged when it commits.
type txOut struct {
	seq     map[int]uint64
	streams map[pair]uint64
	applied map[pair]uint64
	// joins holds the conv_seq at which a user of another shard joins, for
	// the record of that notice.
	joins map[userConv]uint64
	// posted notes the conversations this batch posted to: the previous
	// message of a later post is then in this batch.
	posted map[uint64]bool
}

func (t *txOut) init() {
	if t.seq == nil {
		*t = txOut{seq: map[int]uint64{}, streams: map[pair]uint64{}, applied: map[pair]uint64{},
			joins: map[userConv]uint64{}, posted: map[uint64]bool{}}
	}
}

// nextOutboxSeq assigns the next seq of source's outbox.
func (tx *txn) nextOutboxSeq(src int) (uint64, error) {
	tx.out.init()
	n, ok := tx.out.seq[src]
	if !ok {
		if err := tx.s.out.recover(tx.ctx, tx.s.store, src); err != nil {
			return 0, storeErr("recover outbox", err)
		}
		n = tx.s.out.seq[src]
	}
	tx.out.seq[src] = n + 1
	return n + 1, nil
}

// nextStream assigns the next number of the stream src→dst.
func (tx *txn) nextStream(src, dst int) (uint64, error) {
	k := pair{src, dst}
	n, err := tx.lastStream(k)
	if err != nil {
		return 0, err
	}
	tx.out.streams[k] = n + 1
	return n + 1, nil
}

// lastStream returns the last number assigned in the stream k, as this
// batch sees it: on first use, the highest of the outbox's records and the
// destination's applied mark.
func (tx *txn) lastStream(k pair) (uint64, error) {
	tx.out.init()
	if n, ok := tx.out.streams[k]; ok {
		return n, nil
	}
	o := &tx.s.out
	if n, ok := o.streams[k]; ok {
		return n, nil
	}
	if err := o.recover(tx.ctx, tx.s.store, k.src); err != nil {
		return 0, storeErr("recover outbox", err)
	}
	applied, err := tx.streamApplied(k)
	if err != nil {
		return 0, err
	}
	n := max(o.fromOutbox[k], applied)
	o.streams[k] = n
	return n, nil
}

// streamApplied returns the applied mark of the stream k: from the
// committer's cache when this node serves the destination (it alone moves
// the mark), else read now, as another node moves it.
func (tx *txn) streamApplied(k pair) (uint64, error) {
	if tx.servesShard(k.dst) {
		return tx.appliedMark(k)
	}
	marks, err := tx.s.store.Applied(tx.ctx, k.dst)
	if err != nil {
		return 0, storeErr("read applied marks", err)
	}
	for _, m := range marks {
		if m.Source == k.src {
			return m.Stream, nil
		}
	}
	return 0, nil
}

// direct reports whether user gets conv's entries straight in this batch:
// the user's shard is served here, and no record from conv's shard to it
// waits to be applied (a shard moved here with its stream in flight), which
// would then land after what this batch writes.
func (tx *txn) direct(user, conv uint64) (bool, error) {
	s := tx.s
	if s.local {
		return true, nil
	}
	if !tx.serves(user) {
		return false, nil
	}
	k := pair{s.shardOf(conv), s.shardOf(user)}
	if k.src == k.dst {
		return true, nil // a shard has no stream to itself
	}
	last, err := tx.lastStream(k)
	if err != nil {
		return false, err
	}
	applied, err := tx.appliedMark(k)
	return last <= applied, err
}

// remote is a recipient whose shard another node serves.
type remote struct {
	shard int
	timeline.Recipient
}

// remoteEffects returns what the apply of g's message at convSeq does for
// the member u besides the row.
func (tx *txn) remoteEffects(g *group, u, sender, convSeq uint64) timeline.Effect {
	var e timeline.Effect
	if at, ok := tx.out.joins[userConv{u, g.ID}]; ok && at == convSeq {
		e |= timeline.EffectJoin
	}
	switch {
	case u == sender:
		e |= timeline.EffectSender | timeline.EffectNoPush
	case g.members[u].DND:
		e |= timeline.EffectDND
	}
	return e
}

// prevTime returns the time of g's newest message before the one this
// batch posts next.
func (tx *txn) prevTime(g *group) time.Time {
	if tx.out.posted[g.ID] {
		return tx.now
	}
	return g.last
}

// record adds to the batch the outbox record of msg for the recipients of
// other shards: one record, a part per destination shard, each numbered in
// its stream.
func (tx *txn) record(msg *timeline.Message, prev time.Time, rs []remote) error {
	src := tx.s.shardOf(msg.Conv)
	seq, err := tx.nextOutboxSeq(src)
	if err != nil {
		return err
	}
	rec := timeline.OutboxRecord{Source: src, Seq: seq, Conv: msg.Conv, ConvSeq: msg.ConvSeq, MsgID: msg.ID,
		Kind: msg.Kind, Time: msg.Time, Prev: prev}
	slices.SortStableFunc(rs, func(a, b remote) int { return cmp.Compare(a.shard, b.shard) })
	for i, r := range rs {
		if i == 0 || rs[i-1].shard != r.shard {
			n, err := tx.nextStream(src, r.shard)
			if err != nil {
				return err
			}
			rec.Dests = append(rec.Dests, timeline.OutboxDest{Shard: r.shard, Stream: n})
		}
		d := &rec.Dests[len(rec.Dests)-1]
		d.Recipients = append(d.Recipients, r.Recipient)
	}
	tx.b.Outbox = append(tx.b.Outbox, rec)
	return nil
}

// settingRecord adds the record of a conversation setting of kind (KindDND)
// for user of another shard, applied as the inbox-only row of that kind.
func (tx *txn) settingRecord(kind wire.Kind, user, conv, value uint64) error {
	tx.out.init()
	msg := timeline.Message{Conv: conv, ConvSeq: value, Kind: kind, Time: tx.now}
	return tx.record(&msg, time.Time{}, []remote{{tx.s.shardOf(user), timeline.Recipient{User: user}}})
}

// commitOut merges a committed batch's stream state.
func (s *Service) commitOut(tx *txn) {
	for k, v := range tx.out.seq {
		s.out.seq[k] = v
	}
	for k, v := range tx.out.streams {
		s.out.streams[k] = v
	}
	for k, v := range tx.out.applied {
		s.out.applied[k] = v
	}
}

// abortOut forgets the stream state a failed batch touched: it may have
// landed, so it is read again, and the outbox of its sources is delivered
// again from the store.
func (s *Service) abortOut(tx *txn) {
	var touched []int
	for src := range tx.out.seq {
		touched = append(touched, src)
	}
	for k := range tx.out.applied {
		touched = append(touched, k.dst)
	}
	if len(touched) == 0 {
		return
	}
	s.out.forget(touched...)
	if s.sender != nil {
		s.sender.reload(touched...)
	}
}

package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/inboxd/inboxd/internal/backoff"
	"github.com/inboxd/inboxd/wire"
	"github.com/inboxd/inboxd/wire/wirepb"
	"google.golang.org/protobuf/proto"
)

// load runs the load phase: sends at the configured rate, mark-reads,
// churn, offline users, the reconnect storm and the server kills, for the
// configured time or number of messages, whichever ends first.
func (r *runner) load(ctx context.Context, rep *Report) {
	cfg := r.cfg
	r.hists.ack.reset()
	r.hists.delivery.reset()
	base := r.snapshot()
	start := time.Now()
	end := start.Add(cfg.Duration)
	// Nodes stopped and restarted in a cluster are waited for: the load
	// goes on, within a bound per node, until the last came back.
	events := cfg.nodeEvents()
	lctx, cancel := context.WithDeadline(ctx, end.Add(time.Duration(events)*outageBound))
	defer cancel()

	var wg sync.WaitGroup
	spawn := func(f func(context.Context, *rand.Rand), stream uint64) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			f(lctx, rand.New(rand.NewPCG(cfg.Seed, stream)))
		}()
	}
	if cfg.Churn > 0 {
		spawn(r.churn, 3)
	}
	if cfg.OfflineUsers > 0 {
		spawn(r.offline, 4)
	}
	if cfg.Storm {
		spawn(r.storm, 5)
	}
	switch {
	case events > 0:
		wg.Add(1)
		go func() {
			defer wg.Done()
			if cfg.Chaos > 0 {
				r.clusterChaos(lctx, rand.New(rand.NewPCG(cfg.Seed, 6)))
			}
			if cfg.Rolling {
				r.rolling(lctx)
			}
			if backoff.Sleep(lctx, time.Until(end)) {
				cancel()
			}
		}()
	case cfg.Chaos > 0 && r.srv != nil:
		// Under the run's context, not the load's: every kill happens
		// even on a machine so slow that the load ends first.
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.chaos(ctx, rand.New(rand.NewPCG(cfg.Seed, 6)))
		}()
	}
	if cfg.Progress != nil {
		spawn(func(ctx context.Context, _ *rand.Rand) { r.progress(ctx, base, start) }, 7)
	}
	r.pace(lctx, rand.New(rand.NewPCG(cfg.Seed, 2)))
	cancel()
	wg.Wait()
	window := time.Since(start)
	r.fillLoad(rep, base, r.snapshot(), window)
}

// sample is the counters at one moment.
type sample struct {
	pushed, acked, sends int64
	serverCPU            time.Duration
	clientCPU            time.Duration
}

func (r *runner) snapshot() sample {
	s := sample{pushed: r.stats.pushed.Load(), acked: r.stats.acked.Load(), sends: r.stats.sends.Load(), clientCPU: selfCPU()}
	if r.srv != nil {
		s.serverCPU, _ = r.srv.sample()
	}
	return s
}

// selfCPU is the generator's own CPU time so far (getrusage).
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func (r *runner) fillLoad(rep *Report, a, b sample, window time.Duration) {
	sec := window.Seconds()
	rep.LoadSeconds = sec
	rep.SendsPerSec = float64(b.acked-a.acked) / sec
	rep.DeliveriesPerSec = float64(b.pushed-a.pushed) / sec
	rep.ClientCPUSeconds = (b.clientCPU - a.clientCPU).Seconds()
	rep.ClientCPUCores = rep.ClientCPUSeconds / sec
	if r.srv != nil {
		rep.ServerCPUSeconds = (b.serverCPU - a.serverCPU).Seconds()
		rep.ServerCPUCores = rep.ServerCPUSeconds / sec
		if n := b.pushed - a.pushed; n > 0 {
			rep.ServerCPUPerDeliveryUs = rep.ServerCPUSeconds * 1e6 / float64(n)
		}
	}
	rep.AckLatency = r.hists.ack.summary()
	rep.DeliveryLatency = r.hists.delivery.summary()
}

// pace makes the sends: new ones at the configured rate, and the retries
// of those whose outcome was lost, until ctx ends or the count is reached.
func (r *runner) pace(ctx context.Context, rng *rand.Rand) {
	cfg := r.cfg
	start := time.Now()
	sentAt := make([]int64, 0, cfg.Messages) // by model handle
	made, marks := 0, 0
	var cmid []byte
	for ctx.Err() == nil && made < cfg.Messages {
		el := time.Since(start).Seconds()
		for due := min(int(el*cfg.Rate)+1, cfg.Messages); made < due; made++ {
			g := r.groups[rng.IntN(len(r.groups))]
			s, d := r.nextSend(g, rng)
			if d == nil {
				r.stats.noSender.Add(1)
				continue
			}
			cmid = strconv.AppendInt(append(append(cmid[:0], r.nonce...), '-'), int64(len(sentAt)), 36)
			s.Sender, s.ClientMsgID = d.user.id, string(cmid)
			h := r.model.New(s)
			sentAt = append(sentAt, r.now())
			r.sendOn(d, &s, h, sentAt[h], 1)
		}
		for due := int(el * cfg.MarkReadRate); marks < due; marks++ {
			r.markRead(rng)
		}
		r.resend(time.Now(), sentAt, rng)
		time.Sleep(time.Millisecond)
	}
	r.sentAt = sentAt
}

// nextSend returns the next send to g, by the feature mix (its Sender and
// ClientMsgID left to set), and the device to send it from; nil when no
// device can.
func (r *runner) nextSend(g *group, rng *rand.Rand) (Send, *device) {
	f := r.cfg.Features
	switch roll := rng.Float64(); {
	case roll < f.Recall+f.Edit:
		op := OpEdit
		if roll < f.Recall {
			op = OpRecall
		}
		// A message its sender had acknowledged, of any group.
		r.amendMu.Lock()
		n := len(r.amendable)
		var h int
		if n > 0 {
			h = r.amendable[rng.IntN(n)]
		}
		r.amendMu.Unlock()
		if n == 0 {
			break
		}
		orig := r.model.Send(h)
		d := r.users[orig.Sender-r.cfg.UserBase-1].onlineDevice()
		if d == nil {
			return Send{}, nil
		}
		r.stats.amends.Add(1)
		return Send{Conv: orig.Conv, Op: op, Target: orig.ConvSeq}, d
	case roll < f.Recall+f.Edit+f.Mention && !g.direct: // SEND_DIRECT mentions nobody
		d := r.pickSender(g, rng)
		if d == nil {
			return Send{}, nil
		}
		r.stats.mentions.Add(1)
		s := Send{Conv: g.conv}
		if d.user == g.owner && rng.IntN(4) == 0 {
			s.MentionAll = true
			return s, d
		}
		for range 1 + rng.IntN(3) {
			s.Mentions = append(s.Mentions, g.members[rng.IntN(len(g.members))].id)
		}
		slices.Sort(s.Mentions)
		s.Mentions = slices.Compact(s.Mentions)
		return s, d
	}
	return Send{Conv: g.conv}, r.pickSender(g, rng)
}

// pickSender returns an online device of a random member of g, or nil.
func (r *runner) pickSender(g *group, rng *rand.Rand) *device {
	for range 8 {
		u := g.members[rng.IntN(len(g.members))]
		d := u.devices[rng.IntN(len(u.devices))]
		if d.online.Load() {
			return d
		}
		if d = u.onlineDevice(); d != nil {
			return d
		}
	}
	return nil
}

// sendOn makes send h, s, from d: a SEND, RECALL or EDIT, its attempt-th
// attempt (from 1).
func (r *runner) sendOn(d *device, s *Send, h int, sentAt int64, attempt int) {
	r.stats.sends.Add(1)
	req := &request{kind: reqSend, send: h, attempt: attempt, start: r.now()}
	cmd := map[Op]wire.Command{OpSend: wire.CmdSend, OpRecall: wire.CmdRecall, OpEdit: wire.CmdEdit}[s.Op]
	// SEND_DIRECT's body is SEND's with the recipient in field 1, where
	// SEND has the conversation; resends go the same way.
	to := s.Conv
	if g := r.byConv[s.Conv]; s.Op == OpSend && g != nil && g.direct {
		cmd, to = wire.CmdSendDirect, g.peer(d.user).id
		r.stats.directSends.Add(1)
	}
	err := d.write(cmd, req, func(b []byte) []byte {
		if s.Op != OpSend {
			return appendAmendRequest(b, s.Conv, s.Target, s.ClientMsgID, s.Op == OpEdit)
		}
		return appendMentions(appendSendRequest(b, to, []byte(s.ClientMsgID), sentAt, r.cfg.BodySize), s.Mentions, s.MentionAll)
	})
	if err != nil {
		r.retry(h, attempt)
	}
}

// resend sends again, under the same client msg id, the sends due for a
// retry, each from a device of its own sender.
func (r *runner) resend(now time.Time, sentAt []int64, rng *rand.Rand) {
	for _, it := range r.takeRetries(now) {
		s := r.model.Send(it.send)
		if s.State != SendPending {
			continue
		}
		u := r.users[s.Sender-r.cfg.UserBase-1]
		d := u.onlineDevice()
		if d == nil {
			r.retryMu.Lock()
			r.retryQ = append(r.retryQ, retryItem{send: it.send, attempt: it.attempt, due: now.Add(100*time.Millisecond + rand.N(100*time.Millisecond))})
			r.retryMu.Unlock()
			continue
		}
		r.sendOn(d, &s, it.send, sentAt[it.send], it.attempt+1)
	}
}

// markRead moves a random member's read marker of a random group to the
// group's newest acknowledged message.
func (r *runner) markRead(rng *rand.Rand) {
	g := r.groups[rng.IntN(len(r.groups))]
	cs := g.head.Load()
	d := r.pickSender(g, rng)
	if cs == 0 || d == nil {
		return
	}
	r.stats.markReads.Add(1)
	r.marksInFlight.Add(1)
	err := d.write(wire.CmdMarkRead, &request{kind: reqMarkRead, conv: g.conv, convSeq: cs}, func(b []byte) []byte {
		return appendVarintFields(b, g.conv, cs)
	})
	if err != nil {
		r.marksInFlight.Add(-1)
	}
}

// churn disconnects a random online device Churn times a second; each
// comes back after up to ChurnDown and catches up by seq.
func (r *runner) churn(ctx context.Context, rng *rand.Rand) {
	every := time.Duration(float64(time.Second) / r.cfg.Churn)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		d := r.devs[rng.IntN(len(r.devs))]
		d.goAway(rand.N(r.cfg.ChurnDown + 1))
	}
}

// offline takes OfflineUsers of the users offline a fifth into the run;
// they come back when the load ends and catch up.
func (r *runner) offline(ctx context.Context, rng *rand.Rand) {
	select {
	case <-ctx.Done():
		return
	case <-time.After(r.cfg.Duration / 5):
	}
	n := int(r.cfg.OfflineUsers * float64(len(r.users)))
	for _, i := range rng.Perm(len(r.users))[:n] {
		u := r.users[i]
		u.offline.Store(true)
		for _, d := range u.devices {
			d.goAway(0)
		}
	}
}

// storm disconnects every device at once, halfway; all reconnect at once.
func (r *runner) storm(ctx context.Context, _ *rand.Rand) {
	select {
	case <-ctx.Done():
		return
	case <-time.After(r.cfg.Duration / 2):
	}
	for _, d := range r.devs {
		d.goAway(0)
	}
}

// chaos kills the server with SIGKILL Chaos times, at random moments of
// the middle of the run, and restarts it on the same data.
func (r *runner) chaos(ctx context.Context, rng *rand.Rand) {
	d := r.cfg.Duration
	at := make([]time.Duration, r.cfg.Chaos)
	for i := range at {
		at[i] = d/10 + time.Duration(rng.Int64N(int64(d*7/10)))
	}
	slices.Sort(at)
	start := time.Now()
	for _, a := range at {
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Until(start.Add(a))):
		}
		r.log.Info("bench: kill -9 inboxd", "at", a)
		if err := r.srv.nodes[0].restart(context.WithoutCancel(ctx)); err != nil {
			r.log.Error("bench: restart inboxd", "err", err)
			r.violation(Violation{Kind: "restart", Detail: err.Error()})
			return
		}
		r.stats.kills.Add(1)
	}
}

// progress prints a line a second (to a terminal).
func (r *runner) progress(ctx context.Context, base sample, start time.Time) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	prev := base
	for {
		select {
		case <-ctx.Done():
			fmt.Fprintln(r.cfg.Progress)
			return
		case <-t.C:
		}
		cur := r.snapshot()
		fmt.Fprintf(r.cfg.Progress, "\r%5.0fs  acks/s %7d  deliveries/s %8d  acked %9d  reconnects %6d  errors %5d   ",
			time.Since(start).Seconds(), cur.acked-prev.acked, cur.pushed-prev.pushed, cur.acked-base.acked,
			r.stats.reconnects.Load(), r.errorCount())
		prev = cur
	}
}

func (r *runner) errorCount() int64 {
	var n int64
	for i := range r.stats.errors {
		n += r.stats.errors[i].Load()
	}
	return n
}

// finish brings every device back, waits for every send to be answered,
// lets every device catch up, and verifies.
func (r *runner) finish(ctx context.Context, rep *Report) {
	for _, u := range r.users {
		u.offline.Store(false)
	}
	for _, d := range r.devs {
		d.wakeUp()
	}
	// Drain: retry what is unanswered until everything is.
	deadline := time.Now().Add(r.cfg.DrainTimeout)
	rng := rand.New(rand.NewPCG(r.cfg.Seed, 8))
	for time.Now().Before(deadline) && ctx.Err() == nil {
		pending, _, _ := r.model.Counts()
		if pending == 0 && r.marksInFlight.Load() == 0 {
			break
		}
		r.resend(time.Now(), r.sentAt, rng)
		time.Sleep(5 * time.Millisecond)
	}
	pending, acked, refused := r.model.Counts()
	rep.Acked, rep.Refused, rep.Unresolved = int64(acked), int64(refused), int64(pending)
	rep.Sends, rep.Retries, rep.DuplicateAcks = r.stats.sends.Load(), r.stats.retries.Load(), r.stats.duplicateAcks.Load()
	rep.DirectSends = r.stats.directSends.Load()
	rep.NoSender, rep.MarkReads = r.stats.noSender.Load(), r.stats.markReads.Load()
	rep.AckedRecalls, rep.AckedEdits, rep.AckedMentions = r.model.AckedFeatures()
	rep.Reconnects, rep.ConnectFailures, rep.GapSyncs = r.stats.reconnects.Load(), r.stats.connectFailures.Load(), r.stats.gapSyncs.Load()
	rep.Pushed, rep.Synced = r.stats.pushed.Load(), r.stats.synced.Load()
	rep.Errors = map[string]int64{}
	for i := range r.stats.errors {
		if n := r.stats.errors[i].Load(); n > 0 {
			rep.Errors[codeName(wire.Code(i))] = n
		}
	}
	if r.srv != nil {
		rep.ServerKills = int(r.stats.kills.Load())
		rep.ServerPeakRSS = r.srv.peakRSS()
		r.omu.Lock()
		rep.Outages = r.outages
		r.omu.Unlock()
	}
	if r.cfg.Server.Bare {
		return // the baseline stores nothing: there is nothing to verify
	}
	if err := r.verify(ctx, rep); err != nil {
		rep.VerifyError = err.Error()
	}
}

// verify catches every device up, reads every user's inbox from seq 1 and
// their conversations, and checks them against the model.
func (r *runner) verify(ctx context.Context, rep *Report) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	if len(r.addrs) > 1 {
		r.settle(ctx)
	}
	v := NewVerifier(r.model, r.cfg.MaxViolations)
	var vmu sync.Mutex
	err := inParallel(16, len(r.users), func(i int) error {
		if err := r.verifyUser(ctx, r.users[i], v, &vmu); err != nil {
			return fmt.Errorf("user %d: %w", r.users[i].id, err)
		}
		return nil
	})
	out, more := v.Finish()
	r.vmu.Lock()
	rep.Violations = append(append([]Violation{}, r.violations...), out...)
	r.vmu.Unlock()
	rep.MoreViolations = more
	rep.Verified = true
	rep.CheckedEntries, rep.CheckedDevices = v.Checked()
	return err
}

// verifyUser catches up each device of u, then reads u's inbox and
// conversations through the first and hands all to the verifier.
func (r *runner) verifyUser(ctx context.Context, u *user, v *Verifier, vmu *sync.Mutex) error {
	for _, d := range u.devices {
		if err := retryOffline(ctx, func() error { return d.catchUp(ctx) }); err != nil {
			return fmt.Errorf("device %s catch-up: %w", d.name, err)
		}
	}
	err := r.readInbox(ctx, u, func(page []InboxEntry) {
		vmu.Lock()
		v.Inbox(u.id, page)
		vmu.Unlock()
	})
	if err != nil {
		return err
	}
	// Every page of the list: nothing is sent any more, so no
	// conversation moves between two pages.
	var cs []ConvState
	for more := true; more; {
		var page wirepb.ConversationsResponse
		req := &wirepb.ConversationsRequest{Offset: uint32(len(cs))}
		err := retryOffline(ctx, func() error {
			d := u.onlineDevice()
			if d == nil {
				return errOffline
			}
			b, err := d.call(ctx, wire.CmdConversations, func(b []byte) []byte {
				b, _ = proto.MarshalOptions{}.MarshalAppend(b, req) // plain data cannot fail to encode
				return b
			})
			if err != nil {
				return err
			}
			return proto.Unmarshal(b, &page)
		})
		if err != nil {
			return fmt.Errorf("CONVERSATIONS: %w", err)
		}
		for _, c := range page.Conversations {
			cs = append(cs, ConvState{Conv: c.Conv, Head: c.Head, ReadSeq: c.ReadSeq, Unread: c.Unread, MentionUnread: c.MentionUnread})
		}
		more = page.HasMore && len(page.Conversations) > 0
	}
	vmu.Lock()
	defer vmu.Unlock()
	v.Conversations(u.id, cs)
	for _, d := range u.devices {
		d.st.Lock()
		v.Device(u.id, d.name, d.applied, d.digest)
		d.st.Unlock()
	}
	return nil
}

// readInbox reads u's inbox from seq 1 by SYNC, through an online device,
// and hands each page to f.
func (r *runner) readInbox(ctx context.Context, u *user, f func([]InboxEntry)) error {
	var after uint64
	for {
		var resp wirepb.SyncResponse
		err := retryOffline(ctx, func() error {
			d := u.onlineDevice()
			if d == nil {
				return errOffline
			}
			b, err := d.call(ctx, wire.CmdSync, func(b []byte) []byte { return appendVarintFields(b, after, wire.MaxSyncLimit) })
			if err != nil {
				return err
			}
			return proto.Unmarshal(b, &resp)
		})
		if err != nil {
			return fmt.Errorf("SYNC after %d: %w", after, err)
		}
		page := make([]InboxEntry, len(resp.Entries))
		for i, e := range resp.Entries {
			page[i] = InboxEntry{Seq: e.Seq, Conv: e.Conv, ConvSeq: e.ConvSeq, MsgID: e.MsgId, Kind: wire.Kind(e.Kind)}
			if m := e.Message; m != nil {
				page[i].Sender, page[i].ClientMsgID = m.Sender, m.ClientMsgId
				page[i].Recalled, page[i].Edited = m.Recalled, m.EditedMs != 0
				var n wire.Notice
				if page[i].Kind == wire.KindNotice && json.Unmarshal(m.Body, &n) == nil && n.Type == wire.NoticeCreate {
					page[i].GroupName = n.Name
				}
			}
		}
		f(page)
		if len(page) > 0 {
			after = page[len(page)-1].Seq
		}
		if !resp.HasMore || len(page) == 0 {
			return nil
		}
	}
}

// settleWait bounds how long settle waits for the deliveries of a cluster.
const settleWait = time.Minute

// settle waits, within settleWait, until every user's inbox holds each of
// their groups up to its newest acknowledged conv_seq. In a cluster the
// rows of members served by another node than the conversation's are
// written after the ack, as the outbox is delivered: the verifier checks
// the inboxes once that is done (what is still missing then is reported).
func (r *runner) settle(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, settleWait)
	defer cancel()
	heads := make(map[uint64]uint64, len(r.groups))
	for _, g := range r.groups {
		heads[g.conv] = g.head.Load()
	}
	inParallel(16, len(r.users), func(i int) error {
		u := r.users[i]
		for {
			last := map[uint64]uint64{}
			err := r.readInbox(ctx, u, func(page []InboxEntry) {
				for _, e := range page {
					last[e.Conv] = max(last[e.Conv], e.ConvSeq)
				}
			})
			behind := 0
			for _, conv := range r.model.Groups(u.id) {
				if last[conv] < heads[conv] {
					behind++
				}
			}
			if err == nil && behind == 0 || !backoff.Sleep(ctx, 200*time.Millisecond) {
				return nil
			}
		}
	})
}

// retryOffline runs f until it succeeds or fails otherwise than by a
// device being offline or a retryable error, for at most a minute; it
// waits the server's retry_after_ms between attempts.
func retryOffline(ctx context.Context, f func() error) error {
	deadline := time.Now().Add(time.Minute)
	for {
		err := f()
		if err == nil || !transient(err) || time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(retryWait(err, minRetryWait)):
		}
	}
}

func transient(err error) bool {
	if se, ok := err.(*serverError); ok {
		return se.code.Retryable()
	}
	return isOffline(err)
}

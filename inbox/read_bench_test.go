package inbox

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/inboxd/inboxd/timeline"
	"github.com/inboxd/inboxd/timeline/pebble"
	"github.com/inboxd/inboxd/wire"
)

// The read benchmarks (issue 10) measure what one page costs against what
// it returns, each beside a baseline in the same run: the store reading
// exactly the messages or rows the page holds. They set up without fsync
// (reads do not sync). docs/benchmarks.md has the figures.
//
//	go test -run '^$' -bench 'SyncPage64K|ConversationsPage' -benchtime 200x ./inbox

// benchService is a service on a fresh store in a temporary directory.
func benchService(b *testing.B) (*Service, *pebble.Store) {
	b.Helper()
	st, err := pebble.Open(pebble.Options{Dir: b.TempDir(), NoSync: true})
	if err != nil {
		b.Fatal(err)
	}
	svc, err := New(ctx, Config{Store: st})
	if err != nil {
		st.Close()
		b.Fatal(err)
	}
	b.Cleanup(func() {
		svc.Close()
		st.Close()
	})
	return svc, st
}

// BenchmarkSyncPage64K: SYNC with limit 1000 over an inbox of 1,000
// messages of 64 KiB, against reading the page's messages alone.
func BenchmarkSyncPage64K(b *testing.B) {
	svc, st := benchService(b)
	conv := benchGroup(b, svc, 1, 2)
	body := bytes.Repeat([]byte("x"), 64<<10)
	for i := range 1000 {
		if _, err := svc.SendGroupMessage(ctx, 1, conv, fmt.Sprint(i), wire.KindText, body); err != nil {
			b.Fatal(err)
		}
	}
	res, err := svc.Sync(ctx, 2, 1, 1000)
	if err != nil {
		b.Fatal(err)
	}
	page := clientPage(res.Entries)
	b.Run("Sync", func(b *testing.B) {
		for b.Loop() {
			if _, err := svc.Sync(ctx, 2, 1, 1000); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(len(res.Entries)), "entries/read")
		b.ReportMetric(float64(page), "entries/page")
	})
	b.Run("Baseline", func(b *testing.B) {
		for b.Loop() {
			if _, err := st.Messages(ctx, conv, timeline.Range{From: 2, Limit: page}); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(page), "entries/page")
	})
}

// clientPage returns how many of entries reach the client in one frame of
// the default size (what the gateway's cut keeps), counted as the page
// budget counts them.
func clientPage(entries []Entry) int {
	const frame = 256<<10 - 64
	used := 0
	for i, e := range entries {
		used += 128
		if e.Msg != nil {
			used += len(e.Msg.Body) + len(e.Msg.ClientMsgID)
		}
		if used > frame && i > 0 {
			return i
		}
	}
	return len(entries)
}

// BenchmarkConversationsPage: a CONVERSATIONS page for a user in 10,000
// groups, first and deep in the list, against scanning the user's
// conversation entries (the list in conv id order, nothing else).
func BenchmarkConversationsPage(b *testing.B) {
	svc, st := benchService(b)
	const groups = 10_000
	for i := range groups {
		benchGroup(b, svc, 1, uint64(2+i%50))
	}
	for _, offset := range []int{0, groups / 2} {
		b.Run(fmt.Sprintf("Page/offset=%d", offset), func(b *testing.B) {
			n := 0
			for b.Loop() {
				n = conversationsPage(b, svc, 1, offset)
			}
			b.ReportMetric(float64(n), "entries/page")
		})
	}
	b.Run("Baseline", func(b *testing.B) {
		for b.Loop() {
			if _, err := st.Conversations(ctx, 1); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(groups, "entries/scan")
	})
}

// conversationsPage reads one page from offset, as the gateway does, and
// says how many conversations it holds.
func conversationsPage(b *testing.B, svc *Service, user uint64, offset int) int {
	page, err := svc.Conversations(ctx, user, offset, 0)
	if err != nil {
		b.Fatal(err)
	}
	return len(page.Conversations)
}

func benchGroup(b *testing.B, svc *Service, owner uint64, members ...uint64) uint64 {
	b.Helper()
	g, err := svc.CreateGroup(ctx, owner, NewGroup{Members: members})
	if err != nil {
		b.Fatal(err)
	}
	return g.ID
}

package inbox

import (
	"errors"
	"slices"
	"testing"
)

// TestReadReceipts checks the counts and lists against the markers: the
// sender is left out, a member who joined after the message is left out,
// and pages of both lists join up to the whole list.
func TestReadReceipts(t *testing.T) {
	e := newEnv(t, Config{})
	conv := e.create(1, 2, 3, 4, 5, 6) // conv_seq 1: the create notice
	m := e.send(1, conv, "a", "hello") // conv_seq 2, sent by 1: 1 has read it
	for _, u := range []uint64{2, 4, 6} {
		if _, err := e.svc.MarkRead(ctx, u, conv, m.ConvSeq); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := e.svc.MarkRead(ctx, 3, conv, 1); err != nil { // 3 read only the notice
		t.Fatal(err)
	}
	if err := e.svc.Invite(ctx, 1, conv, []uint64{7}); err != nil { // conv_seq 3: 7 never received m
		t.Fatal(err)
	}
	if _, err := e.svc.MarkRead(ctx, 7, conv, 3); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name      string
		asker     uint64
		q         ReceiptsQuery
		members   int
		read      int
		users     []uint64
		nextAfter uint64
	}{
		{"readers", 1, ReceiptsQuery{ConvSeq: m.ConvSeq}, 5, 3, []uint64{2, 4, 6}, 0},
		{"not read", 2, ReceiptsQuery{ConvSeq: m.ConvSeq, Unread: true}, 5, 3, []uint64{3, 5}, 0},
		{"first page", 1, ReceiptsQuery{ConvSeq: m.ConvSeq, Limit: 2}, 5, 3, []uint64{2, 4}, 4},
		{"second page", 1, ReceiptsQuery{ConvSeq: m.ConvSeq, Limit: 2, AfterUser: 4}, 5, 3, []uint64{6}, 0},
		{"the notice", 5, ReceiptsQuery{ConvSeq: 1}, 5, 4, []uint64{2, 3, 4, 6}, 0}, // 1 created it: the sender
		{"asked by a later member", 7, ReceiptsQuery{ConvSeq: 3}, 6, 1, []uint64{7}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.q.Conv = conv
			r, err := e.svc.ReadReceipts(ctx, tt.asker, tt.q)
			if err != nil {
				t.Fatal(err)
			}
			if r.Members != tt.members || r.Read != tt.read || !slices.Equal(r.Users, tt.users) || r.NextAfter != tt.nextAfter {
				t.Errorf("got %d of %d, users %v, next %d; want %d of %d, users %v, next %d",
					r.Read, r.Members, r.Users, r.NextAfter, tt.read, tt.members, tt.users, tt.nextAfter)
			}
		})
	}
}

func TestReadReceiptsRefusals(t *testing.T) {
	e := newEnv(t, Config{})
	conv := e.create(1, 2)
	e.send(1, conv, "a", "hello") // conv_seq 2
	if err := e.svc.Invite(ctx, 1, conv, []uint64{3}); err != nil {
		t.Fatal(err) // conv_seq 3
	}
	gone := e.create(1, 2)
	if err := e.svc.Dismiss(ctx, 1, gone); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		asker uint64
		q     ReceiptsQuery
		want  error
	}{
		{"not a member", 9, ReceiptsQuery{Conv: conv, ConvSeq: 2}, ErrNotMember},
		{"beyond the head", 1, ReceiptsQuery{Conv: conv, ConvSeq: 4}, ErrInvalid},
		{"far beyond", 1, ReceiptsQuery{Conv: conv, ConvSeq: 1 << 63}, ErrInvalid},
		{"conv_seq 0", 1, ReceiptsQuery{Conv: conv}, ErrInvalid},
		{"before the asker joined", 3, ReceiptsQuery{Conv: conv, ConvSeq: 2}, ErrInvalid},
		{"no group", 1, ReceiptsQuery{Conv: 12345, ConvSeq: 1}, ErrNoGroup},
		{"dismissed", 1, ReceiptsQuery{Conv: gone, ConvSeq: 1}, ErrDismissed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := e.svc.ReadReceipts(ctx, tt.asker, tt.q); !errors.Is(err, tt.want) {
				t.Errorf("got %v, want %v", err, tt.want)
			}
		})
	}
}

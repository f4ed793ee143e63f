package relay_test

import (
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/inboxd/inboxd/client"
	"github.com/inboxd/inboxd/cluster"
	"github.com/inboxd/inboxd/wire/wirepb"
)

// typist is a device that records the typing events it receives.
type typist struct {
	*device
	mu  sync.Mutex
	evs []*wirepb.TypingEvent
}

// typists returns the users of the events received, in order.
func (d *typist) typists() []uint64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []uint64
	for _, ev := range d.evs {
		out = append(out, ev.User)
	}
	return out
}

// waitTypists waits until n events came, or 10 s passed, and returns the
// typists of those that came.
func (d *typist) waitTypists(n int) []uint64 {
	deadline := time.Now().Add(10 * time.Second)
	for len(d.typists()) < n && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	return d.typists()
}

// dialTypists connects a device of each user, recording typing events.
func (c *testCluster) dialTypists(users []uint64) []*typist {
	c.t.Helper()
	var out []*typist
	for _, u := range users {
		d := &typist{}
		d.device = c.dial(u, "phone", client.Config{OnTyping: func(ev *wirepb.TypingEvent) {
			d.mu.Lock()
			defer d.mu.Unlock()
			d.evs = append(d.evs, ev)
		}})
		out = append(out, d)
	}
	return out
}

// TestClusterTyping: typing events reach the members of the other node,
// for a conversation of either node and a typist of either node: through
// CmdForward to the conversation's node, then CmdTyping to the node of the
// members. The typist's own devices and non-members get nothing.
func TestClusterTyping(t *testing.T) {
	c := startCluster(t)
	us := c.users(3)
	devs := c.dialTypists(slices.Concat(us[0][:2], us[1][:2]))
	stranger := c.dial(us[1][2], "phone", client.Config{})
	for node := range 2 {
		creator := devs[2*node]
		var others []uint64
		for _, d := range devs {
			if d != creator {
				others = append(others, d.user)
			}
		}
		g, err := creator.c.CreateGroup(ctxT(t), &wirepb.CreateGroupRequest{Members: others})
		if err != nil {
			t.Fatal(err)
		}
		if got := cluster.ShardOf(g.Id, shards) % 2; got != node {
			t.Fatalf("group of node %d's user is in a shard of node %d", node, got)
		}
		// Every device types in turn, of both nodes; pushes to one
		// connection keep their order, and a TYPING is answered once its
		// events are queued, so each device sees the others in turn.
		for _, d := range devs {
			if err := d.c.Typing(ctxT(t), g.Id); err != nil {
				t.Fatalf("node %d's group: user %d typing: %v", node, d.user, err)
			}
		}
		if err := stranger.c.Typing(ctxT(t), g.Id); !errors.Is(err, client.ErrNotMember) {
			t.Errorf("a stranger's TYPING in node %d's group: %v, want NOT_MEMBER", node, err)
		}
		for _, d := range devs {
			var want []uint64
			for range node + 1 { // node 1's round follows node 0's
				for _, o := range devs {
					if o != d {
						want = append(want, o.user)
					}
				}
			}
			if got := d.waitTypists(len(want)); !slices.Equal(got, want) {
				t.Errorf("node %d's group: user %d saw typists %v, want %v", node, d.user, got, want)
			}
		}
	}
	for i, n := range c.nodes {
		if n.count(t, "inboxd_relay_typing_events_total", "ok") == 0 {
			t.Errorf("node %d relayed no typing event", i)
		}
	}
}

// TestClusterPresenceAndReceipts: PRESENCE on either node answers for the
// users of both, through CmdPresence; READ_RECEIPTS of a conversation of
// the other node, forwarded there, counts the markers of both nodes' users;
// with the peer link cut, TYPING still succeeds (the event for the other
// node is lost and counted), PRESENCE of the other node's users is
// UNAVAILABLE, of this node's users still answered.
func TestClusterPresenceAndReceipts(t *testing.T) {
	c := startCluster(t)
	us := c.users(3)
	devs := []*device{c.dial(us[0][0], "phone", client.Config{}), c.dial(us[0][1], "phone", client.Config{}),
		c.dial(us[1][0], "phone", client.Config{}), c.dial(us[1][1], "phone", client.Config{MaxAttempts: 1})}
	offline := []uint64{us[0][2], us[1][2]}
	ask := slices.Concat(offline, []uint64{devs[3].user, devs[2].user, devs[1].user, devs[0].user})
	want := []uint64{devs[0].user, devs[1].user, devs[2].user, devs[3].user}
	slices.Sort(want)
	for _, d := range []*device{devs[0], devs[3]} {
		online, err := d.c.Presence(ctxT(t), ask...)
		if err != nil {
			t.Fatalf("presence asked at user %d's node: %v", d.user, err)
		}
		if !slices.Equal(online, want) {
			t.Errorf("presence asked at user %d's node: %v, want %v", d.user, online, want)
		}
	}
	for i, n := range c.nodes {
		if n.count(t, "inboxd_relay_presence_queries_total", "ok") == 0 {
			t.Errorf("node %d asked no presence of the other", i)
		}
	}

	// A group of node 0, its message read by one user of each node.
	g, err := devs[0].c.CreateGroup(ctxT(t), &wirepb.CreateGroupRequest{Members: []uint64{devs[1].user, devs[2].user, devs[3].user}})
	if err != nil {
		t.Fatal(err)
	}
	ack, err := devs[0].c.Send(ctxT(t), g.Id, "", 1, []byte("read me"))
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range devs[1:3] {
		// MARK_READ runs on the reader's shard: wait for the message's
		// delivery there first.
		deadline := time.Now().Add(10 * time.Second)
		for !slices.Contains(d.bodies(g.Id), "read me") && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
		if _, err := d.c.MarkRead(ctxT(t), g.Id, ack.ConvSeq); err != nil {
			t.Fatal(err)
		}
	}
	r, err := devs[3].c.ReadReceipts(ctxT(t), &wirepb.ReadReceiptsRequest{Conv: g.Id, ConvSeq: ack.ConvSeq})
	if err != nil {
		t.Fatal(err)
	}
	readers := []uint64{devs[1].user, devs[2].user}
	slices.Sort(readers)
	if r.Members != 3 || r.Read != 2 || !slices.Equal(r.Users, readers) {
		t.Errorf("receipts asked at node 1: %v, want %v of 3", r, readers)
	}

	// A group of node 1 with members of both nodes, then the link to node
	// 0 cut: a TYPING there still succeeds, its event for node 0 lost.
	g1, err := devs[2].c.CreateGroup(ctxT(t), &wirepb.CreateGroupRequest{Members: []uint64{devs[0].user, devs[3].user}})
	if err != nil {
		t.Fatal(err)
	}
	c.nodes[0].srv.Close()
	if err := devs[3].c.Typing(ctxT(t), g1.Id); err != nil {
		t.Errorf("TYPING with a member's node unreachable: %v", err)
	}
	if c.nodes[1].count(t, "inboxd_relay_typing_events_total", "unavailable") == 0 {
		t.Error("the typing event for the unreachable node is not counted unavailable")
	}
	if _, err := devs[3].c.Presence(ctxT(t), devs[0].user); !errors.Is(err, client.ErrUnavailable) {
		t.Errorf("presence over a cut link: %v, want UNAVAILABLE", err)
	}
	if online, err := devs[3].c.Presence(ctxT(t), devs[2].user); err != nil || !slices.Equal(online, []uint64{devs[2].user}) {
		t.Errorf("presence of node 1's own user with the link cut: %v, %v", online, err)
	}
}

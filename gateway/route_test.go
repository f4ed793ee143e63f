package gateway

import (
	"errors"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/inboxd/inboxd/cluster"
	"github.com/inboxd/inboxd/cluster/clustertest"
	"github.com/inboxd/inboxd/internal/gatewaytest"
	"github.com/inboxd/inboxd/wire"
	"github.com/inboxd/inboxd/wire/wirepb"
)

// otherNode is the client address of the node that is not under test.
const otherNode = "192.0.2.7:7600"

// TestAuthRouted checks AUTH on a node given an Ownership: it answers the
// users of the shards it serves, and sends the others to the shard's owner,
// or away for now while the shard has none, closing the connection.
func TestAuthRouted(t *testing.T) {
	const shards = 3
	ring := clustertest.NewRing(shards)
	own := ring.View(1)
	ring.SetNode(cluster.NodeInfo{ID: 2, Addr: otherNode})
	ring.Move(0, 1)
	ring.Move(1, 2) // shard 2 has no owner
	s := start(t, Config{Ownership: own})
	tests := []struct {
		shard    int
		code     wire.Code
		redirect string
		retry    bool
	}{
		{0, 0, "", false},
		{1, wire.CodeRedirect, otherNode, false},
		{2, wire.CodeUnavailable, "", true},
	}
	for _, tt := range tests {
		user := clustertest.UserOf(tt.shard, shards)
		c := s.dial()
		var resp wirepb.AuthResponse
		err := c.call(wire.CmdAuth, &wirepb.AuthRequest{Token: gatewaytest.Token(t, user, "phone", time.Hour)}, &resp)
		if tt.code == 0 {
			if err != nil || resp.UserId != user {
				t.Fatalf("shard %d: AUTH = %v, %v; this node serves it", tt.shard, &resp, err)
			}
			continue
		}
		var pe protoError
		if !errors.As(err, &pe) || wire.Code(pe.e.Code) != tt.code || pe.e.Redirect != tt.redirect || (pe.e.RetryAfterMs > 0) != tt.retry {
			t.Fatalf("shard %d: AUTH = %v, want %v redirect %q retry %v", tt.shard, err, tt.code, tt.redirect, tt.retry)
		}
		if e := c.closeError(); e != nil {
			t.Errorf("shard %d: ERROR frame %v after the AUTH answer", tt.shard, e)
		}
	}
	m := s.gw.metrics
	for _, want := range []struct {
		code wire.Code
		n    float64
	}{{wire.CodeRedirect, 1}, {wire.CodeUnavailable, 1}} {
		if got := testutil.ToFloat64(m.redirects[redirectAuth][codeSlot(want.code)]); got != want.n {
			t.Errorf("redirects{when=auth, code=%v} = %v, want %v", want.code, got, want.n)
		}
	}
	waitValue(t, "disconnects{not_served}", func() float64 { return testutil.ToFloat64(m.disconnects[transportTCP][closedNotServed]) }, 2)
	if got := testutil.ToFloat64(m.authFailures[authUnavailable]); got != 0 {
		t.Errorf("auth_failures{unavailable} = %v: a user sent away is not a failed AUTH", got)
	}
}

// TestOwnershipMoveClosesSessions checks that a change of ownership closes
// the sessions of the users whose shard moved away, with REDIRECT to the
// new owner or UNAVAILABLE while it has none, and only those.
func TestOwnershipMoveClosesSessions(t *testing.T) {
	const shards = 2
	ring := clustertest.NewRing(shards)
	own := ring.View(1)
	ring.SetNode(cluster.NodeInfo{ID: 2, Addr: otherNode})
	ring.Move(0, 1)
	ring.Move(1, 1)
	s := start(t, Config{Ownership: own})
	u0, u1 := clustertest.UserOf(0, shards), clustertest.UserOf(1, shards)
	phone, laptop, other := s.login(u0, "phone"), s.login(u0, "laptop"), s.login(u1, "phone")

	ring.Move(0, 2)
	for _, c := range []*conn{phone, laptop} {
		if e := c.closeError(); wire.Code(e.GetCode()) != wire.CodeRedirect || e.GetRedirect() != otherNode {
			t.Fatalf("user of the moved shard closed with %v, want REDIRECT to %s", e, otherNode)
		}
	}
	if err := other.call(wire.CmdHeartbeat, &wirepb.Empty{}, nil); err != nil {
		t.Fatalf("user of the shard still served: %v", err)
	}
	m := s.gw.metrics
	waitValue(t, "users_online", usersOnline(s.gw), 1)

	ring.Move(1, -1)
	if e := other.closeError(); wire.Code(e.GetCode()) != wire.CodeUnavailable || e.GetRetryAfterMs() == 0 {
		t.Fatalf("user of a shard with no owner closed with %v, want UNAVAILABLE with a retry hint", e)
	}
	if got := testutil.ToFloat64(m.redirects[redirectMoved][codeSlot(wire.CodeRedirect)]); got != 2 {
		t.Errorf("redirects{when=moved, code=REDIRECT} = %v, want 2", got)
	}
	if got := testutil.ToFloat64(m.redirects[redirectMoved][codeSlot(wire.CodeUnavailable)]); got != 1 {
		t.Errorf("redirects{when=moved, code=UNAVAILABLE} = %v, want 1", got)
	}
	waitValue(t, "users_online", usersOnline(s.gw), 0)
	s.gw.mu.RLock()
	defer s.gw.mu.RUnlock()
	if len(s.gw.byShard) != 0 {
		t.Errorf("byShard = %v after every session closed", s.gw.byShard)
	}
}

func usersOnline(gw *Server) func() float64 {
	return func() float64 {
		gw.mu.RLock()
		defer gw.mu.RUnlock()
		return float64(len(gw.byUser))
	}
}

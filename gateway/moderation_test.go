package gateway

import (
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/inboxd/inboxd/internal/gatewaytest"
	"github.com/inboxd/inboxd/token"
	"github.com/inboxd/inboxd/wire"
	"github.com/inboxd/inboxd/wire/wirepb"
)

// gate is a Gate whose answers the test sets.
type gate struct {
	mu      sync.Mutex
	refuse  map[uint64]wire.Code // at AUTH
	banned  map[uint64]bool      // on SEND
	issued  time.Time            // the issue time of the last token asked about
	devices []string
}

func (g *gate) Admit(user uint64, device string, issued time.Time) wire.Code {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.issued = issued
	g.devices = append(g.devices, device)
	return g.refuse[user]
}

func (g *gate) Banned(user uint64) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.banned[user]
}

func (g *gate) set(f func()) {
	g.mu.Lock()
	defer g.mu.Unlock()
	f()
}

func TestGate(t *testing.T) {
	g := &gate{refuse: map[uint64]wire.Code{}, banned: map[uint64]bool{}}
	s := start(t, Config{Gate: g})

	// AUTH is refused with the Gate's code, and counted under it.
	g.set(func() { g.refuse[5], g.refuse[6] = wire.CodeBanned, wire.CodeRevoked })
	for user, want := range map[uint64]wire.Code{5: wire.CodeBanned, 6: wire.CodeRevoked} {
		c := s.dial()
		err := c.call(wire.CmdAuth, &wirepb.AuthRequest{Token: gatewaytest.Token(t, user, "phone", time.Hour)}, &wirepb.AuthResponse{})
		if code(err) != want {
			t.Errorf("user %d: AUTH %v, want %v", user, err, want)
		}
	}
	m := s.gw.metrics
	for _, c := range []struct {
		name string
		got  float64
	}{
		{"auth failures banned", testutil.ToFloat64(m.authFailures[authBanned])},
		{"auth failures revoked", testutil.ToFloat64(m.authFailures[authRevoked])},
		{"disconnects banned", testutil.ToFloat64(m.disconnects[transportTCP][closedBanned])},
		{"disconnects revoked", testutil.ToFloat64(m.disconnects[transportTCP][closedRevoked])},
	} {
		if c.got != 1 {
			t.Errorf("%s = %v, want 1", c.name, c.got)
		}
	}

	// The token's issue time reaches the Gate.
	issued := time.Now().Add(-time.Minute).Truncate(time.Second)
	tok, err := token.Sign(secret, token.Claims{User: 7, Device: "laptop", Expiry: time.Now().Add(time.Hour), Issued: issued})
	if err != nil {
		t.Fatal(err)
	}
	laptop := s.dial()
	if err := laptop.call(wire.CmdAuth, &wirepb.AuthRequest{Token: tok}, &wirepb.AuthResponse{}); err != nil {
		t.Fatal(err)
	}
	g.set(func() {
		if !g.issued.Equal(issued) {
			t.Errorf("the Gate saw issue time %v, want %v", g.issued, issued)
		}
	})

	// A banned user's SEND is refused on a connection still open.
	g.set(func() { g.banned[7] = true })
	err = laptop.call(wire.CmdSend, &wirepb.SendRequest{Conv: 1, ClientMsgId: "a", Kind: 1}, &wirepb.SendAck{})
	if code(err) != wire.CodeBanned {
		t.Errorf("SEND of a banned user: %v", err)
	}

	// Disconnect closes the devices named, with the code given.
	phone := s.login(7, "phone")
	if n := s.gw.Disconnect(7, "phone", wire.CodeRevoked, "revoked"); n != 1 {
		t.Errorf("Disconnect of one device closed %d", n)
	}
	if e := phone.closeError(); wire.Code(e.GetCode()) != wire.CodeRevoked {
		t.Errorf("the phone closed with %v, want REVOKED", e)
	}
	if n := s.gw.Disconnect(7, "", wire.CodeBanned, "banned"); n != 1 {
		t.Errorf("Disconnect of every device closed %d, want the laptop", n)
	}
	if e := laptop.closeError(); wire.Code(e.GetCode()) != wire.CodeBanned {
		t.Errorf("the laptop closed with %v, want BANNED", e)
	}
}

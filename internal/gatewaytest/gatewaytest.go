// Package gatewaytest runs a gateway in front of a real inbox service on an
// in-memory Pebble store, for tests over loopback TCP: the gateway's own
// tests and the Go client's end-to-end tests share it.
//
// It does not import package gateway, so that the gateway's internal tests
// can use it without an import cycle: the test creates the gateway (with
// Secret and a loopback address) and hands it to Start.
//
// It is the server's own test helper (README, "Layout"), not an API.
package gatewaytest

import (
	"context"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/inboxd/inboxd/inbox"
	"github.com/inboxd/inboxd/timeline/pebble"
	"github.com/inboxd/inboxd/token"
)

// Secret is the token secret of the gateways under test: Token signs with it.
const Secret = "gatewaytest secret of 16+ bytes"

// Addr is the address a gateway under test listens on: loopback, any port.
const Addr = "127.0.0.1:0"

// WSAddr is the address of a gateway's WebSocket listener under test:
// loopback, any port, written otherwise than Addr (the gateway tells its
// listeners apart by their addresses as written).
const WSAddr = "localhost:0"

// Gateway is what Start needs of a *gateway.Server.
type Gateway interface {
	inbox.Notifier
	// Addr blocks until the gateway listens and returns its address, nil if
	// it failed to start.
	Addr() *net.TCPAddr
	Shutdown(ctx context.Context) error
}

// Start creates an inbox service on a fresh in-memory store, with gw as its
// notifier, and runs serve(svc) — gw's Serve on the service or on a wrapper
// of it — on a goroutine. It returns the service and gw's address once gw
// listens. When the test ends it shuts gw down, checks that serve returned
// cleanly, and closes the service and the store; cleanups registered later
// (clients the test dialled) run first.
func Start(t testing.TB, gw Gateway, serve func(*inbox.Service) error) (*inbox.Service, string) {
	t.Helper()
	svc, addrs := StartAll(t, []Gateway{gw}, func(_ int, svc *inbox.Service) error { return serve(svc) })
	return svc, addrs[0]
}

// StartAll is Start for several gateways in front of one inbox service, as
// the nodes of a cluster in one process: every gateway is notified of every
// entry, and pushes it to the user's sessions it holds. serve(i, svc) runs
// gateway i. It returns the gateways' addresses in order.
func StartAll(t testing.TB, gws []Gateway, serve func(i int, svc *inbox.Service) error) (*inbox.Service, []string) {
	t.Helper()
	return StartAllConfig(t, gws, inbox.Config{}, serve)
}

// StartConfig is Start with the service configured by cfg (its Store and
// Notifier are set here): a test's clock, windows, limits.
func StartConfig(t testing.TB, gw Gateway, cfg inbox.Config, serve func(*inbox.Service) error) (*inbox.Service, string) {
	t.Helper()
	svc, addrs := StartAllConfig(t, []Gateway{gw}, cfg, func(_ int, svc *inbox.Service) error { return serve(svc) })
	return svc, addrs[0]
}

// StartAllConfig is StartAll with the service configured by cfg, as
// StartConfig.
func StartAllConfig(t testing.TB, gws []Gateway, cfg inbox.Config, serve func(i int, svc *inbox.Service) error) (*inbox.Service, []string) {
	t.Helper()
	st, err := pebble.Open(pebble.Options{Dir: "db", FS: vfs.NewMem()})
	if err != nil {
		t.Fatal(err)
	}
	var notifier inbox.Notifier = notifiers(gws)
	if len(gws) == 1 {
		notifier = gws[0]
	}
	cfg.Store, cfg.Notifier = st, notifier
	svc, err := inbox.New(context.Background(), cfg)
	if err != nil {
		st.Close()
		t.Fatal(err)
	}
	served := make([]chan error, len(gws))
	addrs := make([]string, len(gws))
	var failed error
	for i, gw := range gws {
		served[i] = make(chan error, 1)
		go func() { served[i] <- serve(i, svc) }()
		if addr := gw.Addr(); addr != nil {
			addrs[i] = addr.String()
		} else if failed == nil {
			failed = fmt.Errorf("gateway %d did not start: %w", i, <-served[i])
			served[i] <- nil
		}
	}
	// Registered before a failure is reported, so that the gateways that
	// did start are stopped.
	t.Cleanup(func() {
		for i, gw := range gws {
			if err := gw.Shutdown(context.Background()); err != nil {
				t.Error(err)
			}
			if err := <-served[i]; err != nil {
				t.Error(err)
			}
		}
		svc.Close()
		st.Close()
	})
	if failed != nil {
		t.Fatal(failed)
	}
	return svc, addrs
}

// notifiers hands every entry to each gateway.
type notifiers []Gateway

func (ns notifiers) Notify(user uint64, entries []inbox.Entry) bool {
	online := false
	for _, n := range ns {
		online = n.Notify(user, entries) || online
	}
	return online
}

// Token returns a connection token for user's device, valid for ttl (a
// negative ttl: expired), signed with Secret.
func Token(t testing.TB, user uint64, device string, ttl time.Duration) string {
	t.Helper()
	tok, err := token.Sign([]byte(Secret), token.Claims{User: user, Device: device, Expiry: time.Now().Add(ttl)})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

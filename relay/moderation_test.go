package relay_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/inboxd/inboxd/api"
	"github.com/inboxd/inboxd/client"
	"github.com/inboxd/inboxd/internal/gatewaytest"
	"github.com/inboxd/inboxd/peer"
	"github.com/inboxd/inboxd/relay"
	"github.com/inboxd/inboxd/token"
	"github.com/inboxd/inboxd/wire"
)

// Bans and revocations set through one node's server API, enforced on the
// other node: at once by the announcement (relay.CmdRestrictions), and by
// the other node's own re-read when the announcement is lost.

const apiKey = "relay-test-key-0123456789"

// serveAPI starts node i's server API over loopback HTTP and returns its
// URL.
func (c *testCluster) serveAPI(i int) string {
	t := c.t
	t.Helper()
	keyFile := filepath.Join(t.TempDir(), "api-keys")
	if err := os.WriteFile(keyFile, []byte(apiKey+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	keys, err := api.NewKeys(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	n := c.nodes[i]
	h, err := api.Handler(api.Config{Keys: keys, Service: n.svc, Sessions: n.gw, Moderation: n.mod, Peers: n.relay, Node: int64(i + 1)})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv.URL
}

// post calls the API at url and decodes its 200 answer into resp.
func post(t *testing.T, url, path, body string, resp any) {
	t.Helper()
	req, err := http.NewRequest("POST", url+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+apiKey)
	r, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Body.Close()
	b, err := io.ReadAll(r.Body)
	if err != nil || r.StatusCode != http.StatusOK {
		t.Fatalf("POST %s: %d %s %v", path, r.StatusCode, b, err)
	}
	if err := json.Unmarshal(b, resp); err != nil {
		t.Fatalf("POST %s: %s: %v", path, b, err)
	}
}

// follow runs node i's Follower until the test ends.
func (c *testCluster) follow(i int) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		c.nodes[i].follow.Run(ctx)
	}()
	c.t.Cleanup(func() {
		cancel()
		<-done
	})
}

// authAt dials node i alone with tok, once.
func (c *testCluster) authAt(i int, tok string) error {
	c.t.Helper()
	cl, err := client.Dial(ctxT(c.t), client.Config{Addr: c.nodes[i].addr, Token: tok, MaxAttempts: 1})
	if err == nil {
		cl.Close()
	}
	return err
}

// tokenIssued is a token of user's device issued at issued.
func tokenIssued(t *testing.T, user uint64, dev string, issued time.Time) string {
	t.Helper()
	tok, err := token.Sign(secret, token.Claims{User: user, Device: dev, Expiry: time.Now().Add(time.Hour), Issued: issued})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// stopped waits for d's client to be closed for good, and returns why.
func (d *device) stopped(t *testing.T) error {
	t.Helper()
	select {
	case <-d.c.Done():
		return d.c.Err()
	case <-time.After(10 * time.Second):
		t.Fatalf("user %d's device is still connected after 10 s", d.user)
		return nil
	}
}

// TestClusterBan: a ban and a revocation made through node 0's API reach
// node 1 by the announcement, no Follower running: node 1 closes the
// user's device there with BANNED (REVOKED), and refuses its AUTH as soon
// as the call returns.
func TestClusterBan(t *testing.T) {
	c := startCluster(t)
	url := c.serveAPI(0)
	us := c.users(2)[1] // users of node 1
	banned, revoked := us[0], us[1]
	phone := c.dial(banned, "phone", client.Config{})
	other := c.dial(revoked, "phone", client.Config{})
	laptop := c.dial(revoked, "laptop", client.Config{})

	var d api.Disconnected
	post(t, url, fmt.Sprintf("/v1/users/%d/ban", banned), "", &d)
	if d.Disconnected != 0 {
		t.Errorf("the ban closed %d connections on node 0, where the user has none", d.Disconnected)
	}
	if err := c.authAt(1, gatewaytest.Token(t, banned, "tablet", time.Hour)); !errors.Is(err, client.ErrBanned) {
		t.Errorf("AUTH at node 1 once the ban is answered: %v, want BANNED", err)
	}
	if err := phone.stopped(t); !errors.Is(err, client.ErrBanned) {
		t.Errorf("the banned device on node 1 stopped with %v, want BANNED", err)
	}
	if got := c.nodes[0].count(t, "inboxd_relay_announcements_total", "ok"); got != 1 {
		t.Errorf("announcements counted ok: %v, want 1", got)
	}

	var rv api.Revoked
	post(t, url, fmt.Sprintf("/v1/users/%d/revoke", revoked), `{"device":"phone"}`, &rv)
	if err := c.authAt(1, gatewaytest.Token(t, revoked, "phone", time.Hour)); !errors.Is(err, client.ErrRevoked) {
		t.Errorf("AUTH at node 1 with the revoked device's old token: %v, want REVOKED", err)
	}
	if err := other.stopped(t); !errors.Is(err, client.ErrRevoked) {
		t.Errorf("the revoked device on node 1 stopped with %v, want REVOKED", err)
	}
	if err := c.authAt(1, tokenIssued(t, revoked, "phone", time.Unix(rv.RevokedBefore, 0))); err != nil {
		t.Errorf("AUTH at node 1 with a token issued after the revocation: %v", err)
	}
	// The user's other device is not closed: a revoked client would stop.
	if _, err := laptop.c.Conversations(ctxT(t)); err != nil {
		t.Errorf("the laptop not revoked: %v", err)
	}
	select {
	case <-laptop.c.Done():
		t.Errorf("the laptop not revoked stopped: %v", laptop.c.Err())
	default:
	}

	post(t, url, fmt.Sprintf("/v1/users/%d/unban", banned), "", &d)
	if err := c.authAt(1, gatewaytest.Token(t, banned, "tablet", time.Hour)); err != nil {
		t.Errorf("AUTH at node 1 once the unban is answered: %v", err)
	}
}

// TestClusterBanFallback: node 1's peer link is cut, so node 0's
// announcement of a ban is lost; node 1's Follower reads the ban from the
// store on its own and closes the device with BANNED.
func TestClusterBanFallback(t *testing.T) {
	c := startCluster(t)
	url := c.serveAPI(0)
	c.follow(1)
	user := c.users(1)[1][0]
	phone := c.dial(user, "phone", client.Config{})

	c.nodes[1].srv.Close()
	var d api.Disconnected
	post(t, url, fmt.Sprintf("/v1/users/%d/ban", user), "", &d)
	if got := c.nodes[0].count(t, "inboxd_relay_announcements_total", "ok"); got != 0 {
		t.Fatalf("an announcement over the cut link counted ok")
	}
	if err := phone.stopped(t); !errors.Is(err, client.ErrBanned) {
		t.Errorf("the banned device on node 1 stopped with %v, want BANNED", err)
	}
	if err := c.authAt(1, gatewaytest.Token(t, user, "phone", time.Hour)); !errors.Is(err, client.ErrBanned) {
		t.Errorf("AUTH at node 1 after the re-read: %v, want BANNED", err)
	}
}

// syncer is a relay.Syncer that counts its calls and fails with err.
type syncer struct {
	calls int
	err   error
}

func (s *syncer) Sync(context.Context) error {
	s.calls++
	return s.err
}

// TestWithRestrictions: CmdRestrictions syncs and answers an empty body;
// a body or a failed re-read is refused with the code named, and every
// other command goes to the next handler.
func TestWithRestrictions(t *testing.T) {
	next := peer.HandlerFunc(func(context.Context, uint32, wire.Command, []byte) ([]byte, error) {
		return []byte("next"), nil
	})
	tests := []struct {
		name  string
		cmd   wire.Command
		body  []byte
		err   error
		calls int
		want  string
		code  wire.Code
	}{
		{"announced", relay.CmdRestrictions, nil, nil, 1, "", 0},
		{"with a body", relay.CmdRestrictions, []byte{1}, nil, 0, "", wire.CodeBadRequest},
		{"the store fails", relay.CmdRestrictions, nil, errors.New("down"), 1, "", wire.CodeUnavailable},
		{"another command", relay.CmdForward, []byte{1}, nil, 0, "next", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := &syncer{err: tt.err}
			got, err := relay.WithRestrictions(s, next).Serve(context.Background(), 2, tt.cmd, tt.body)
			if string(got) != tt.want || peer.Code(err) != tt.code || s.calls != tt.calls {
				t.Errorf("%q, %v (code %v), %d syncs; want %q, code %v, %d syncs", got, err, peer.Code(err), s.calls, tt.want, tt.code, tt.calls)
			}
		})
	}
}

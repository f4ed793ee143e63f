package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/inboxd/inboxd/client"
	"github.com/inboxd/inboxd/token"
	"github.com/inboxd/inboxd/wire"
	"github.com/inboxd/inboxd/wire/wirepb"
)

const apiKey = "inboxd-binary-test-api-key"

func writeAPIKeys(t *testing.T, keys ...string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "api-keys")
	if err := os.WriteFile(path, []byte(strings.Join(keys, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// callAPI calls the instance's server API with key (none if empty).
func (in *instance) callAPI(t *testing.T, key, method, path, body string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, "http://"+in.api+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, b
}

// TestServerAPI drives the binary's server API and checks what clients
// see over TCP: a group created for them, and a system message posted
// twice with one key, in every member's inbox exactly once.
func TestServerAPI(t *testing.T) {
	in := startInboxd(t, "-api", "127.0.0.1:0", "-api-key-file", writeAPIKeys(t, apiKey))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	for _, key := range []string{"", "not-the-key-of-this-server"} {
		if code, b := in.callAPI(t, key, "POST", "/v1/groups", `{"owner":1,"members":[2]}`); code != http.StatusUnauthorized {
			t.Errorf("key %q: %d %s, want 401", key, code, b)
		}
	}

	var mu sync.Mutex
	systems := map[uint64]int{} // system messages received, by user
	dial := func(user uint64) *client.Client {
		c, err := client.Dial(ctx, client.Config{Addr: in.listen, Token: in.token(t, user, time.Hour), OnEntry: func(e *wirepb.Entry) {
			if wire.Kind(e.Kind) == wire.KindSystemMessage {
				mu.Lock()
				systems[user]++
				mu.Unlock()
			}
		}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	dial(2)
	dial(3)

	code, b := in.callAPI(t, apiKey, "POST", "/v1/groups", `{"owner":1,"members":[2,3,4]}`)
	var g struct{ ID string }
	if err := json.Unmarshal(b, &g); code != http.StatusCreated || err != nil {
		t.Fatalf("create: %d %s", code, b)
	}
	for i := range 2 {
		code, b := in.callAPI(t, apiKey, "POST", "/v1/groups/"+g.ID+"/system-messages", `{"client_msg_id":"welcome","body":"welcome, team"}`)
		if code != http.StatusOK || strings.Contains(string(b), `"duplicate":true`) != (i == 1) {
			t.Fatalf("system message, call %d: %d %s", i+1, code, b)
		}
	}
	c4 := dial(4) // offline until now: reads it by SYNC
	if err := c4.WaitSynced(ctx); err != nil {
		t.Fatal(err)
	}
	want := map[uint64]int{2: 1, 3: 1, 4: 1}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		mu.Lock()
		got := fmt.Sprint(systems)
		mu.Unlock()
		if got == fmt.Sprint(want) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("system messages received %s, want %v", got, want)
		}
	}
	// Nothing more arrives: the retry stored nothing.
	var convs struct {
		Conversations []struct {
			Head, Unread uint64
		}
	}
	if code, b := in.callAPI(t, apiKey, "GET", "/v1/users/4/conversations", ""); code != http.StatusOK || json.Unmarshal(b, &convs) != nil ||
		len(convs.Conversations) != 1 || convs.Conversations[0].Head != 2 {
		t.Errorf("user 4's conversations: %d %s, want one at head 2 (creation, system message)", code, b)
	}
}

// TestServerAPIBanAndRevoke bans and revokes through the binary's server
// API and checks the effect on devices connected over TCP.
func TestServerAPIBanAndRevoke(t *testing.T) {
	in := startInboxd(t, "-api", "127.0.0.1:0", "-api-key-file", writeAPIKeys(t, apiKey))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tok := func(user uint64, device string, issued time.Time) string {
		tok, err := token.Sign(in.secret, token.Claims{User: user, Device: device, Expiry: time.Now().Add(time.Hour), Issued: issued})
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	dial := func(tok string) (*client.Client, error) {
		c, err := client.Dial(ctx, client.Config{Addr: in.listen, Token: tok})
		if err == nil {
			t.Cleanup(func() { c.Close() })
		}
		return c, err
	}
	stopped := func(c *client.Client, want error) {
		t.Helper()
		select {
		case <-c.Done():
			if !errors.Is(c.Err(), want) {
				t.Errorf("the device stopped with %v, want %v", c.Err(), want)
			}
		case <-ctx.Done():
			t.Fatal("the device is still connected")
		}
	}
	api := func(path, body string) string {
		t.Helper()
		code, b := in.callAPI(t, apiKey, "POST", path, body)
		if code != http.StatusOK {
			t.Fatalf("POST %s: %d %s", path, code, b)
		}
		return string(b)
	}

	// A banned device is disconnected and cannot reconnect until unbanned.
	banned, err := dial(tok(2, "phone", time.Now()))
	if err != nil {
		t.Fatal(err)
	}
	api("/v1/users/2/ban", "")
	stopped(banned, client.ErrBanned)
	if _, err := dial(tok(2, "phone", time.Now())); !errors.Is(err, client.ErrBanned) {
		t.Errorf("reconnect of a banned user: %v", err)
	}
	api("/v1/users/2/unban", "")
	if _, err := dial(tok(2, "phone", time.Now())); err != nil {
		t.Errorf("reconnect after unban: %v", err)
	}

	// A revoked device's old token fails; a new one works.
	old := tok(3, "laptop", time.Now().Add(-time.Minute))
	laptop, err := dial(old)
	if err != nil {
		t.Fatal(err)
	}
	var rv struct {
		RevokedBefore int64 `json:"revoked_before"`
	}
	if err := json.Unmarshal([]byte(api("/v1/users/3/revoke", `{"device":"laptop"}`)), &rv); err != nil {
		t.Fatal(err)
	}
	stopped(laptop, client.ErrRevoked)
	if _, err := dial(old); !errors.Is(err, client.ErrRevoked) {
		t.Errorf("the old token: %v, want REVOKED", err)
	}
	if _, err := dial(tok(3, "laptop", time.Unix(rv.RevokedBefore, 0))); err != nil {
		t.Errorf("a new token: %v", err)
	}
}

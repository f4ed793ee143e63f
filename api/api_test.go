package api

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/goleak"

	"github.com/inboxd/inboxd/client"
	"github.com/inboxd/inboxd/gateway"
	"github.com/inboxd/inboxd/inbox"
	"github.com/inboxd/inboxd/internal/gatewaytest"
	"github.com/inboxd/inboxd/internal/httpserve"
	"github.com/inboxd/inboxd/timeline"
	"github.com/inboxd/inboxd/timeline/pebble"
	"github.com/inboxd/inboxd/token"
	"github.com/inboxd/inboxd/wire"
	"github.com/inboxd/inboxd/wire/wirepb"
)

// gnet's worker pool lives as long as the process.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		goleak.IgnoreAnyFunction("github.com/panjf2000/ants/v2.(*poolCommon).purgeStaleWorkers"),
		goleak.IgnoreAnyFunction("github.com/panjf2000/ants/v2.(*poolCommon).ticktock"))
}

const (
	key1 = "first-key-0123456789abcdef"
	key2 = "second-key-0123456789abcdef"
)

// env is the API in front of a real gateway and inbox on in-memory Pebble,
// over loopback HTTP and TCP.
type env struct {
	t       *testing.T
	url     string // the API's
	addr    string // the gateway's
	keyFile string
	svc     *inbox.Service
	reg     *prometheus.Registry
	// restrictions is the store of the bans and revocations: a store of its
	// own, as gatewaytest keeps the inbox's to itself.
	restrictions timeline.Restrictions
	moderation   *Moderation
	log          *lockedBuffer // the API's log
	// ahead moves the API's clock forward (a time.Duration): the time of
	// its revocations.
	ahead atomic.Int64
}

// lockedBuffer is a log's output, written by the server's goroutines.
type lockedBuffer struct {
	mu  sync.Mutex
	buf strings.Builder
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func newEnv(t *testing.T) *env {
	t.Helper()
	st, err := pebble.Open(pebble.Options{Dir: "restrictions", FS: vfs.NewMem()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	mod, err := LoadModeration(t.Context(), st)
	if err != nil {
		t.Fatal(err)
	}
	gw, err := gateway.New(gateway.Config{Addr: gatewaytest.Addr, Secret: []byte(gatewaytest.Secret), Gate: mod})
	if err != nil {
		t.Fatal(err)
	}
	svc, addr := gatewaytest.Start(t, gw, func(s *inbox.Service) error { return gw.Serve(s) })
	e := &env{t: t, addr: addr, svc: svc, keyFile: filepath.Join(t.TempDir(), "api-keys"), reg: prometheus.NewRegistry(),
		restrictions: st, moderation: mod, log: new(lockedBuffer)}
	e.writeKeys("# the backends' keys\n" + key1 + "\n")
	keys, err := NewKeys(e.keyFile)
	if err != nil {
		t.Fatal(err)
	}
	h, err := Handler(Config{Keys: keys, Service: svc, Sessions: gw, Moderation: mod, Node: 7, Registerer: e.reg,
		Now:    func() time.Time { return time.Now().Add(time.Duration(e.ahead.Load())) },
		Logger: slog.New(slog.NewTextHandler(e.log, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := httpserve.Listen("127.0.0.1:0", h, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Shutdown(context.Background()) })
	e.url = "http://" + srv.Addr().String()
	return e
}

// writeKeys replaces the key file, with a modification time of its own so
// that the change is seen whatever the file system's time granularity.
var keyWrites sync.Mutex

func (e *env) writeKeys(text string) {
	e.t.Helper()
	keyWrites.Lock()
	defer keyWrites.Unlock()
	if err := os.WriteFile(e.keyFile, []byte(text), 0o600); err != nil {
		e.t.Fatal(err)
	}
	mt := time.Now().Add(time.Duration(len(text)) * time.Second)
	if err := os.Chtimes(e.keyFile, mt, mt); err != nil {
		e.t.Fatal(err)
	}
}

// do calls the API with key (none if empty) and returns the status and body.
func (e *env) do(key, method, path, body string) (int, []byte) {
	e.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, e.url+path, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return resp.StatusCode, b
}

// call is do with key1, failing the test unless the status is want; it
// decodes the answer into out if out is not nil.
func (e *env) call(want int, method, path, body string, out any) {
	e.t.Helper()
	code, b := e.do(key1, method, path, body)
	if code != want {
		e.t.Fatalf("%s %s: %d %s, want %d", method, path, code, b, want)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			e.t.Fatalf("%s %s: %v in %s", method, path, err, b)
		}
	}
}

func (e *env) createGroup(owner uint64, members ...uint64) string {
	e.t.Helper()
	ms, _ := json.Marshal(members)
	var g struct{ ID string }
	e.call(http.StatusCreated, "POST", "/v1/groups", fmt.Sprintf(`{"owner":%d,"members":%s}`, owner, ms), &g)
	return g.ID
}

// device is a client connected over TCP, recording every entry it gets.
type device struct {
	c *client.Client

	mu      sync.Mutex
	entries []*wirepb.Entry
}

func (e *env) connect(user uint64, name string) *device {
	e.t.Helper()
	d, err := e.dial(e.token(user, name, time.Now()))
	if err != nil {
		e.t.Fatal(err)
	}
	return d
}

// token is a token of user's device issued at issued (the zero time: a
// token without iat).
func (e *env) token(user uint64, name string, issued time.Time) string {
	e.t.Helper()
	tok, err := token.Sign([]byte(gatewaytest.Secret), token.Claims{User: user, Device: name, Expiry: time.Now().Add(time.Hour), Issued: issued})
	if err != nil {
		e.t.Fatal(err)
	}
	return tok
}

// dial connects a device with tok.
func (e *env) dial(tok string) (*device, error) {
	d := &device{}
	c, err := client.Dial(context.Background(), client.Config{
		Addr: e.addr, Token: tok,
		OnEntry: func(en *wirepb.Entry) {
			d.mu.Lock()
			d.entries = append(d.entries, en)
			d.mu.Unlock()
		},
	})
	if err != nil {
		return nil, err
	}
	e.t.Cleanup(func() { c.Close() })
	d.c = c
	return d, nil
}

// waitKinds waits until the device has n entries of kind, and fails the
// test if it gets more.
func (d *device) waitKinds(t *testing.T, kind wire.Kind, n int) []*wirepb.Entry {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		d.mu.Lock()
		var got []*wirepb.Entry
		for _, en := range d.entries {
			if wire.Kind(en.Kind) == kind {
				got = append(got, en)
			}
		}
		d.mu.Unlock()
		switch {
		case len(got) > n:
			t.Fatalf("%d entries of kind %d, want %d", len(got), kind, n)
		case len(got) == n:
			return got
		case time.Now().After(deadline):
			t.Fatalf("%d entries of kind %d after 10 s, want %d", len(got), kind, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestAuthorization(t *testing.T) {
	e := newEnv(t)
	create := `{"owner":1,"members":[2]}`
	refused := func(what, key string) {
		t.Helper()
		code, b := e.do(key, "POST", "/v1/groups", create)
		var ae Error
		json.Unmarshal(b, &ae)
		if code != http.StatusUnauthorized || ae.Code != "UNAUTHENTICATED" {
			t.Errorf("%s: %d %s, want 401 UNAUTHENTICATED", what, code, b)
		}
		if strings.Contains(string(b), key) && key != "" {
			t.Errorf("%s: the answer quotes the key", what)
		}
	}
	refused("no key", "")
	refused("a wrong key", "not-a-key-of-the-file-at-all")
	refused("a key's prefix", key1[:len(key1)-1])
	code, _ := e.do("", "GET", "/v1/nope", "")
	if code != http.StatusUnauthorized {
		t.Errorf("unknown route without a key: %d, want 401", code)
	}

	// Rotation: both keys work while the file holds both, then only the new.
	e.writeKeys(key1 + "\n" + key2 + "\n")
	for _, k := range []string{key1, key2} {
		if code, b := e.do(k, "GET", "/v1/users/1/conversations", ""); code != http.StatusOK {
			t.Fatalf("key %q after adding key2: %d %s", k[:5], code, b)
		}
	}
	e.writeKeys(key2 + "\n")
	refused("a removed key", key1)
	if code, b := e.do(key2, "GET", "/v1/users/1/conversations", ""); code != http.StatusOK {
		t.Fatalf("key2: %d %s", code, b)
	}
	// An unreadable file keeps the keys last read.
	os.Remove(e.keyFile)
	for range 2 {
		if code, _ := e.do(key2, "GET", "/v1/users/1/conversations", ""); code != http.StatusOK {
			t.Errorf("after the file went: %d, want the last keys kept", code)
		}
	}

	// Nothing the refused calls asked for happened.
	page, err := e.svc.Conversations(context.Background(), 1, 0, 10)
	if err != nil || len(page.Conversations) != 0 {
		t.Errorf("user 1 has %d conversations after refused calls, want 0 (%v)", len(page.Conversations), err)
	}
	if got := testutil.ToFloat64(requestsOf(t, e.reg, "POST /v1/groups", "401")); got != 4 {
		t.Errorf("inboxd_api_requests_total{POST /v1/groups,401} = %v, want 4", got)
	}
	// The log says the key file went, and quotes no key, good or bad.
	log := e.log.String()
	if n := strings.Count(log, "key file unreadable"); n != 1 {
		t.Errorf("the log says %d times that the key file went, want once:\n%s", n, log)
	}
	for _, k := range []string{key1, key2, "not-a-key-of-the-file-at-all", key1[:len(key1)-1]} {
		if strings.Contains(log, k) {
			t.Errorf("the log quotes the key %q", k)
		}
	}
}

func requestsOf(t *testing.T, reg *prometheus.Registry, route, code string) prometheus.Collector {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "x"})
	for _, mf := range mfs {
		if mf.GetName() != "inboxd_api_requests_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			var r, s string
			for _, l := range m.GetLabel() {
				switch l.GetName() {
				case "route":
					r = l.GetValue()
				case "code":
					s = l.GetValue()
				}
			}
			if r == route && s == code {
				c.Add(m.GetCounter().GetValue())
			}
		}
	}
	return c
}

func TestBadInput(t *testing.T) {
	e := newEnv(t)
	conv := e.createGroup(1, 2)
	tests := []struct {
		name, method, path, body string
		status                   int
		code                     string
	}{
		{"unknown field", "POST", "/v1/groups", `{"owner":1,"admins":[2]}`, 400, "BAD_REQUEST"},
		{"wrong type", "POST", "/v1/groups", `{"owner":"1"}`, 400, "BAD_REQUEST"},
		{"negative user", "POST", "/v1/groups", `{"owner":-1}`, 400, "BAD_REQUEST"},
		{"two objects", "POST", "/v1/groups", `{"owner":1}{"owner":2}`, 400, "BAD_REQUEST"},
		{"no body", "POST", "/v1/groups/" + conv + "/kick", ``, 400, "BAD_REQUEST"},
		{"not JSON", "POST", "/v1/groups", `owner=1`, 400, "BAD_REQUEST"},
		{"too large", "POST", "/v1/groups/" + conv + "/system-messages", `{"client_msg_id":"a","body":"` + strings.Repeat("x", MaxBody) + `"}`, 413, "FRAME_TOO_LARGE"},
		{"zero owner", "POST", "/v1/groups", `{"members":[2]}`, 400, "INVALID"},
		{"bad group id", "GET", "/v1/groups/abc", ``, 400, "INVALID"},
		{"unknown group", "GET", "/v1/groups/12345", ``, 404, "NO_GROUP"},
		{"send to an unknown group", "POST", "/v1/groups/12345/system-messages", `{"client_msg_id":"a","body":"x"}`, 404, "NO_GROUP"},
		{"recall in an unknown group", "POST", "/v1/groups/12345/messages/2/recall", `{"client_msg_id":"a"}`, 404, "NO_GROUP"},
		{"recall of a notice", "POST", "/v1/groups/" + conv + "/messages/1/recall", `{"client_msg_id":"a"}`, 400, "INVALID"},
		{"recall past the head", "POST", "/v1/groups/" + conv + "/messages/99/recall", `{"client_msg_id":"a"}`, 400, "INVALID"},
		{"recall without a key", "POST", "/v1/groups/" + conv + "/messages/1/recall", `{}`, 400, "INVALID"},
		{"recall of conv_seq 0", "POST", "/v1/groups/" + conv + "/messages/0/recall", `{"client_msg_id":"a"}`, 400, "INVALID"},
		{"recall without a body", "POST", "/v1/groups/" + conv + "/messages/1/recall", ``, 400, "BAD_REQUEST"},
		{"bad role", "POST", "/v1/groups/" + conv + "/role", `{"actor":1,"user":2,"role":"king"}`, 400, "INVALID"},
		{"not the owner", "POST", "/v1/groups/" + conv + "/dismiss", `{"actor":2}`, 403, "FORBIDDEN"},
		{"not a member", "POST", "/v1/groups/" + conv + "/messages", `{"sender":9,"client_msg_id":"a","body":"x"}`, 403, "NOT_MEMBER"},
		{"server kind", "POST", "/v1/groups/" + conv + "/messages", `{"sender":1,"client_msg_id":"a","kind":32769,"body":"x"}`, 400, "INVALID"},
		{"kind out of range", "POST", "/v1/groups/" + conv + "/messages", `{"sender":1,"client_msg_id":"a","kind":70000,"body":"x"}`, 400, "BAD_REQUEST"},
		{"bad limit", "GET", "/v1/users/1/conversations?limit=x", ``, 400, "INVALID"},
		{"unknown route", "GET", "/v1/nope", ``, 404, "UNKNOWN_COMMAND"},
		{"wrong method", "DELETE", "/v1/groups", ``, 405, "UNKNOWN_COMMAND"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, b := e.do(key1, tt.method, tt.path, tt.body)
			var ae Error
			if err := json.Unmarshal(b, &ae); err != nil || code != tt.status || ae.Code != tt.code || ae.Message == "" {
				t.Errorf("%d %s, want %d %s", code, b, tt.status, tt.code)
			}
		})
	}
	var g Group
	e.call(http.StatusOK, "GET", "/v1/groups/"+conv, "", &g)
	if len(g.Members) != 2 {
		t.Errorf("after the refused calls the group has %+v", g.Members)
	}
}

// TestWrongMethod: a path served with other methods is answered 405 with
// an Allow header naming them, after the key check; a path not served at
// all is 404 without one.
func TestWrongMethod(t *testing.T) {
	e := newEnv(t)
	conv := e.createGroup(1, 2)
	tests := []struct {
		name, key, method, path string
		status                  int
		allow                   string
	}{
		{"delete the groups", key1, "DELETE", "/v1/groups", 405, "POST"},
		{"post to a group", key1, "POST", "/v1/groups/" + conv, 405, "GET, HEAD"},
		{"get a ban", key1, "GET", "/v1/users/2/ban", 405, "POST"},
		{"put the devices", key1, "PUT", "/v1/users/2/devices", 405, "GET, HEAD"},
		{"no such path", key1, "PUT", "/v1/nope", 404, ""},
		{"no key", "", "DELETE", "/v1/groups", 401, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := http.NewRequest(tt.method, e.url+tt.path, nil)
			if err != nil {
				t.Fatal(err)
			}
			if tt.key != "" {
				req.Header.Set("Authorization", "Bearer "+tt.key)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var ae Error
			if err := json.NewDecoder(resp.Body).Decode(&ae); err != nil || resp.StatusCode != tt.status || ae.Message == "" {
				t.Errorf("%d %+v (%v), want %d", resp.StatusCode, ae, err, tt.status)
			}
			if got := resp.Header.Get("Allow"); got != tt.allow {
				t.Errorf("Allow: %q, want %q", got, tt.allow)
			}
		})
	}
	if got := testutil.ToFloat64(requestsOf(t, e.reg, unknownRoute, "405")); got != 4 {
		t.Errorf("inboxd_api_requests_total{route=%q,code=\"405\"} = %v, want 4", unknownRoute, got)
	}
}

// TestRepeatedGroupCalls: an invite, kick or mute repeated once it took
// effect (a backend's retry) succeeds and posts nothing: the members see
// each notice once. A kick of a user who never was a member succeeds too;
// the calls an actor may not make are still refused.
func TestRepeatedGroupCalls(t *testing.T) {
	e := newEnv(t)
	bob := e.connect(2, "phone")
	conv := e.createGroup(1, 2, 3)
	until := time.Now().Add(time.Hour).UnixMilli()
	calls := []struct{ path, body string }{
		{"/invite", `{"actor":1,"users":[4]}`},
		{"/mute", fmt.Sprintf(`{"actor":1,"user":3,"until_ms":%d}`, until)},
		{"/mute", fmt.Sprintf(`{"actor":1,"until_ms":%d}`, until)},
		{"/mute", `{"actor":1,"user":3,"until_ms":0}`},
		{"/kick", `{"actor":1,"user":4}`},
	}
	for _, c := range calls {
		for range 2 {
			e.call(http.StatusNoContent, "POST", "/v1/groups/"+conv+c.path, c.body, nil)
		}
	}
	e.call(http.StatusNoContent, "POST", "/v1/groups/"+conv+"/kick", `{"actor":1,"user":9}`, nil)
	e.call(http.StatusNoContent, "POST", "/v1/groups/"+conv+"/mute", `{"actor":1,"user":2,"until_ms":0}`, nil)
	for _, c := range []struct{ path, body, code string }{
		{"/kick", `{"actor":2,"user":9}`, "FORBIDDEN"}, // a plain member kicks nobody
		{"/kick", `{"actor":9,"user":2}`, "NOT_MEMBER"},
		{"/invite", `{"actor":9,"users":[2]}`, "NOT_MEMBER"},
	} {
		code, b := e.do(key1, "POST", "/v1/groups/"+conv+c.path, c.body)
		if code != http.StatusForbidden || !strings.Contains(string(b), c.code) {
			t.Errorf("POST %s %s: %d %s, want 403 %s", c.path, c.body, code, b, c.code)
		}
	}
	// A last message, after which every notice has arrived.
	e.call(http.StatusOK, "POST", "/v1/groups/"+conv+"/system-messages", `{"client_msg_id":"end","body":"end"}`, nil)
	bob.waitKinds(t, wire.KindSystemMessage, 1)
	var types []string
	for _, n := range bob.waitKinds(t, wire.KindNotice, 6) {
		var body struct{ Type string }
		json.Unmarshal(n.Message.Body, &body)
		types = append(types, body.Type)
	}
	if want := []string{"create", "invite", "mute", "mute_group", "mute", "kick"}; !slices.Equal(types, want) {
		t.Errorf("notices %q, want %q", types, want)
	}
}

// TestGroupCallsSeenByClients makes every group call and checks what the
// members' devices receive over TCP.
func TestGroupCallsSeenByClients(t *testing.T) {
	e := newEnv(t)
	bob := e.connect(2, "phone")
	conv := e.createGroup(1, 2, 3)
	bob.waitKinds(t, wire.KindNotice, 1)

	e.call(http.StatusNoContent, "POST", "/v1/groups/"+conv+"/invite", `{"actor":1,"users":[4,5]}`, nil)
	e.call(http.StatusNoContent, "POST", "/v1/groups/"+conv+"/role", `{"actor":1,"user":2,"role":"admin"}`, nil)
	e.call(http.StatusNoContent, "POST", "/v1/groups/"+conv+"/mute", fmt.Sprintf(`{"actor":2,"user":3,"until_ms":%d}`, time.Now().Add(time.Hour).UnixMilli()), nil)
	e.call(http.StatusNoContent, "POST", "/v1/groups/"+conv+"/kick", `{"actor":2,"user":4}`, nil)
	e.call(http.StatusNoContent, "POST", "/v1/groups/"+conv+"/mute", fmt.Sprintf(`{"actor":1,"until_ms":%d}`, time.Now().Add(time.Hour).UnixMilli()), nil)
	notices := bob.waitKinds(t, wire.KindNotice, 6)
	var types []string
	for _, n := range notices {
		var body struct{ Type string }
		json.Unmarshal(n.Message.Body, &body)
		types = append(types, body.Type)
	}
	if want := []string{"create", "invite", "role", "mute", "kick", "mute_group"}; !slices.Equal(types, want) {
		t.Errorf("notices %q, want %q", types, want)
	}

	var g Group
	e.call(http.StatusOK, "GET", "/v1/groups/"+conv, "", &g)
	roles := map[uint64]string{}
	for _, m := range g.Members {
		roles[m.User] = m.Role
		if m.User == 3 && m.MutedUntil == 0 {
			t.Error("member 3 is not muted")
		}
	}
	if want := map[uint64]string{1: "owner", 2: "admin", 3: "member", 5: "member"}; !maps(roles, want) {
		t.Errorf("members %v, want %v", roles, want)
	}

	e.call(http.StatusNoContent, "POST", "/v1/groups/"+conv+"/dismiss", `{"actor":1}`, nil)
	bob.waitKinds(t, wire.KindNotice, 7)
	code, b := e.do(key1, "GET", "/v1/groups/"+conv, "")
	if code != http.StatusGone || !strings.Contains(string(b), "DISMISSED") {
		t.Errorf("GET a dismissed group: %d %s", code, b)
	}

	// A create retried with its idempotency key creates one group.
	var first, again Group
	create := `{"owner":1,"members":[2],"idempotency_key":"team-42"}`
	e.call(http.StatusCreated, "POST", "/v1/groups", create, &first)
	e.call(http.StatusOK, "POST", "/v1/groups", create, &again)
	if first.Duplicate || !again.Duplicate || first.ID != again.ID {
		t.Errorf("create %+v, retried %+v", first, again)
	}
	bob.waitKinds(t, wire.KindNotice, 8)
	code, b = e.do(key1, "GET", "/v1/groups/"+conv, "")
	if code != http.StatusGone || !strings.Contains(string(b), "DISMISSED") {
		t.Errorf("GET a dismissed group: %d %s", code, b)
	}
}

// TestGroupProfile: the profile call as clients see it, a notice per
// change, GET returning it, a repeat posting nothing, and the refusals.
func TestGroupProfile(t *testing.T) {
	e := newEnv(t)
	bob := e.connect(2, "phone")
	conv := e.createGroup(1, 2)
	bob.waitKinds(t, wire.KindNotice, 1)

	profile := `{"actor":1,"name":"ops","announcement":"standup at 10","avatar_url":"https://example.com/ops.png"}`
	e.call(http.StatusNoContent, "POST", "/v1/groups/"+conv+"/profile", profile, nil)
	e.call(http.StatusNoContent, "POST", "/v1/groups/"+conv+"/profile", profile, nil) // a retry: nothing new
	e.call(http.StatusNoContent, "POST", "/v1/groups/"+conv+"/profile", `{"actor":1,"announcement":"","name":null}`, nil)
	notices := bob.waitKinds(t, wire.KindNotice, 5)
	var types []string
	for _, n := range notices {
		var body wire.Notice
		if err := json.Unmarshal(n.Message.Body, &body); err != nil {
			t.Fatal(err)
		}
		types = append(types, string(body.Type))
	}
	if want := []string{"create", "rename", "announcement", "avatar", "announcement"}; !slices.Equal(types, want) {
		t.Errorf("notices %q, want %q", types, want)
	}
	var g Group
	e.call(http.StatusOK, "GET", "/v1/groups/"+conv, "", &g)
	if g.Name != "ops" || g.Announcement != "" || g.AvatarURL != "https://example.com/ops.png" {
		t.Errorf("GET after the changes: %+v", g)
	}

	for _, tt := range []struct {
		body   string
		status int
		code   string
	}{
		{`{"actor":2,"name":"mine"}`, http.StatusForbidden, "FORBIDDEN"},
		{`{"actor":1}`, http.StatusBadRequest, "INVALID"},
		{`{"actor":1,"name":""}`, http.StatusBadRequest, "INVALID"},
		{fmt.Sprintf(`{"actor":1,"announcement":%q}`, strings.Repeat("a", wire.MaxAnnouncement+1)), http.StatusBadRequest, "INVALID"},
		{`{"actor":1,"avatar":"x"}`, http.StatusBadRequest, "BAD_REQUEST"},
	} {
		code, b := e.do(key1, "POST", "/v1/groups/"+conv+"/profile", tt.body)
		if code != tt.status || !strings.Contains(string(b), `"code":"`+tt.code+`"`) {
			t.Errorf("%.60s: %d %s, want %d %s", tt.body, code, b, tt.status, tt.code)
		}
	}
}

// TestSendIntoBlockedDirect: a send as a user into a direct conversation
// whose other user blocks them is 403 BLOCKED, and stores nothing.
func TestSendIntoBlockedDirect(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	if _, err := e.svc.SendDirect(ctx, 1, 2, "first", wire.KindText, nil); err != nil {
		t.Fatal(err)
	}
	if err := e.svc.Block(ctx, 2, 1, true); err != nil {
		t.Fatal(err)
	}
	conv := strconv.FormatUint(wire.DirectConv(1, 2), 10)
	code, b := e.do(key1, "POST", "/v1/groups/"+conv+"/messages", `{"sender":1,"client_msg_id":"second","body":"hi"}`)
	if code != http.StatusForbidden || !strings.Contains(string(b), `"code":"BLOCKED"`) {
		t.Fatalf("send from a blocked user: %d %s, want 403 BLOCKED", code, b)
	}
	var convs Conversations
	e.call(http.StatusOK, "GET", "/v1/users/2/conversations", "", &convs)
	if len(convs.Conversations) != 1 || convs.Conversations[0].Peer != 1 || fmt.Sprint(convs.Conversations[0].Conv) != conv {
		t.Fatalf("user 2's conversations %+v, want the direct one with peer 1", convs)
	}
	if msgs, err := e.svc.History(ctx, 2, wire.DirectConv(1, 2), 0, 10); err != nil || len(msgs) != 1 {
		t.Fatalf("history after the refusal: %d messages, %v; want the first only", len(msgs), err)
	}
}

func maps(a, b map[uint64]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// TestSystemMessageOnce posts a system message twice with one key: every
// member, online or not, has it exactly once.
func TestSystemMessageOnce(t *testing.T) {
	e := newEnv(t)
	conv := e.createGroup(1, 2, 3)
	bob, carol := e.connect(2, "phone"), e.connect(3, "laptop")
	body := `{"client_msg_id":"order-42-shipped","body":"your order shipped"}`
	var first, again SendResult
	e.call(http.StatusOK, "POST", "/v1/groups/"+conv+"/system-messages", body, &first)
	e.call(http.StatusOK, "POST", "/v1/groups/"+conv+"/system-messages", body, &again)
	if first.Duplicate || !again.Duplicate || first.MsgID != again.MsgID || first.ConvSeq != 2 || again.ConvSeq != 2 {
		t.Errorf("first %+v, retry %+v", first, again)
	}
	for _, d := range []*device{bob, carol} {
		got := d.waitKinds(t, wire.KindSystemMessage, 1)
		if m := got[0].Message; string(m.Body) != "your order shipped" || m.Sender != wire.SystemSender || m.ClientMsgId != "order-42-shipped" {
			t.Errorf("system message %+v", m)
		}
	}
	// The owner was offline: it is in the inbox once, read by SYNC.
	owner := e.connect(1, "desk")
	if err := owner.c.WaitSynced(context.Background()); err != nil {
		t.Fatal(err)
	}
	owner.waitKinds(t, wire.KindSystemMessage, 1)
	// A user's send after it: one more conv_seq, nothing repeated.
	var sent SendResult
	e.call(http.StatusOK, "POST", "/v1/groups/"+conv+"/messages", `{"sender":2,"client_msg_id":"m1","body":"thanks"}`, &sent)
	if sent.ConvSeq != 3 {
		t.Errorf("send as user 2: %+v", sent)
	}
	carol.waitKinds(t, wire.KindText, 1)
	bob.waitKinds(t, wire.KindSystemMessage, 1)
}

// TestSystemRecall recalls a member's message as the system, twice with
// one key: every member, online or not, gets the recall entry exactly
// once, and a member's HISTORY serves the message recalled.
func TestSystemRecall(t *testing.T) {
	e := newEnv(t)
	conv := e.createGroup(1, 2, 3)
	bob, carol := e.connect(2, "phone"), e.connect(3, "laptop")
	var sent SendResult
	e.call(http.StatusOK, "POST", "/v1/groups/"+conv+"/messages", `{"sender":2,"client_msg_id":"m1","body":"spam"}`, &sent)
	path := fmt.Sprintf("/v1/groups/%s/messages/%d/recall", conv, sent.ConvSeq)
	body := `{"client_msg_id":"mod-7"}`
	var first, again SendResult
	e.call(http.StatusOK, "POST", path, body, &first)
	e.call(http.StatusOK, "POST", path, body, &again)
	if first.Duplicate || !again.Duplicate || first.MsgID != again.MsgID || first.ConvSeq != sent.ConvSeq+1 || again.ConvSeq != first.ConvSeq {
		t.Errorf("first %+v, retry %+v", first, again)
	}
	// A recall of the recall entry, or of the message again under another
	// key, is refused.
	e.call(http.StatusBadRequest, "POST", fmt.Sprintf("/v1/groups/%s/messages/%d/recall", conv, first.ConvSeq), `{"client_msg_id":"mod-8"}`, nil)
	e.call(http.StatusBadRequest, "POST", path, `{"client_msg_id":"mod-9"}`, nil)

	owner := e.connect(1, "desk") // offline until now: reads it by SYNC
	if err := owner.c.WaitSynced(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, d := range []*device{bob, carol, owner} {
		m := d.waitKinds(t, wire.KindRecall, 1)[0].Message
		a, err := wire.ParseAmend(m.Body)
		if m.Sender != wire.SystemSender || err != nil || a.Actor != wire.SystemSender || a.ConvSeq != sent.ConvSeq || ID(a.MsgID) != sent.MsgID {
			t.Errorf("recall entry %+v (%+v, %v)", m, a, err)
		}
	}
	msgs, err := carol.c.History(t.Context(), mustUint(t, conv), sent.ConvSeq+1, 1)
	if err != nil || len(msgs) != 1 || msgs[0].ConvSeq != sent.ConvSeq || !msgs[0].Recalled || len(msgs[0].Body) != 0 {
		t.Fatalf("HISTORY of the recalled message: %v, %v", msgs, err)
	}
	// A send after it: the devices have it, and still one recall entry.
	e.call(http.StatusOK, "POST", "/v1/groups/"+conv+"/messages", `{"sender":1,"client_msg_id":"m2","body":"sorry"}`, nil)
	for _, d := range []*device{bob, carol} {
		d.waitKinds(t, wire.KindText, 2)
		d.waitKinds(t, wire.KindRecall, 1)
	}
}

func mustUint(t *testing.T, s string) uint64 {
	t.Helper()
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestDevicesAndConversations(t *testing.T) {
	e := newEnv(t)
	var devs Devices
	e.call(http.StatusOK, "GET", "/v1/users/2/devices", "", &devs)
	if len(devs.Devices) != 0 {
		t.Errorf("devices of an offline user: %+v", devs)
	}
	before := time.Now().Add(-time.Second).UnixMilli()
	phone := e.connect(2, "phone")
	e.connect(2, "laptop")
	e.call(http.StatusOK, "GET", "/v1/users/2/devices", "", &devs)
	if len(devs.Devices) != 2 || devs.Devices[0].Device != "laptop" || devs.Devices[1].Device != "phone" {
		t.Fatalf("devices %+v, want laptop and phone", devs)
	}
	for _, d := range devs.Devices {
		if d.Node != 7 || d.SinceMs < before || d.SinceMs > time.Now().UnixMilli() {
			t.Errorf("device %+v", d)
		}
	}
	phone.c.Close()
	for deadline := time.Now().Add(10 * time.Second); len(devs.Devices) != 1; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("devices after the phone closed: %+v", devs)
		}
		e.call(http.StatusOK, "GET", "/v1/users/2/devices", "", &devs)
	}

	a, b := e.createGroup(1, 2), e.createGroup(3, 2)
	for i := range 3 {
		e.call(http.StatusOK, "POST", "/v1/groups/"+a+"/messages", fmt.Sprintf(`{"sender":1,"client_msg_id":"a%d","body":"hi"}`, i), nil)
	}
	var convs Conversations
	e.call(http.StatusOK, "GET", "/v1/users/2/conversations", "", &convs)
	if len(convs.Conversations) != 2 || convs.HasMore {
		t.Fatalf("conversations %+v", convs)
	}
	if c := convs.Conversations[0]; fmt.Sprint(c.Conv) != a || c.Unread != 4 || c.Head != 4 || c.LastMsAt == 0 {
		t.Errorf("latest conversation %+v, want %s with 4 unread", c, a)
	}
	if c := convs.Conversations[1]; fmt.Sprint(c.Conv) != b || c.Unread != 1 {
		t.Errorf("second conversation %+v, want %s with 1 unread", c, b)
	}
	e.call(http.StatusOK, "GET", "/v1/users/2/conversations?offset=1&limit=1", "", &convs)
	if len(convs.Conversations) != 1 || fmt.Sprint(convs.Conversations[0].Conv) != b {
		t.Errorf("second page %+v", convs)
	}
}

package api

import (
	"context"
	"errors"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/inboxd/inboxd/client"
	"github.com/inboxd/inboxd/timeline/pebble"
	"github.com/inboxd/inboxd/wire"
)

// waitStopped waits for a client the server closed for good, and returns
// why it stopped.
func (d *device) waitStopped(t *testing.T) error {
	t.Helper()
	select {
	case <-d.c.Done():
		return d.c.Err()
	case <-time.After(10 * time.Second):
		t.Fatal("the device is still connected after 10 s")
		return nil
	}
}

func TestBan(t *testing.T) {
	e := newEnv(t)
	conv := e.createGroup(1, 2)
	phone, laptop := e.connect(2, "phone"), e.connect(2, "laptop")

	var d Disconnected
	e.call(http.StatusOK, "POST", "/v1/users/2/ban", "", &d)
	if d.Disconnected != 2 {
		t.Errorf("ban disconnected %d devices, want 2", d.Disconnected)
	}
	for _, dev := range []*device{phone, laptop} {
		if err := dev.waitStopped(t); !errors.Is(err, client.ErrBanned) {
			t.Errorf("a banned device stopped with %v, want BANNED", err)
		}
	}
	// Every later AUTH, with any token, and every send is refused.
	if _, err := e.dial(e.token(2, "tablet", time.Now().Add(time.Minute))); !errors.Is(err, client.ErrBanned) {
		t.Errorf("AUTH of a banned user: %v", err)
	}
	code, b := e.do(key1, "POST", "/v1/groups/"+conv+"/messages", `{"sender":2,"client_msg_id":"x","body":"hi"}`)
	if code != http.StatusForbidden || !strings.Contains(string(b), `"BANNED"`) {
		t.Errorf("send as a banned user: %d %s", code, b)
	}
	// The ban holds across a restart: it is in the store.
	again, err := LoadModeration(context.Background(), e.restrictions)
	if err != nil || !again.Banned(2) || again.Admit(2, "phone", time.Now()) != wire.CodeBanned {
		t.Errorf("the ban read back from the store: %v, %v", again.Banned(2), err)
	}

	e.call(http.StatusOK, "POST", "/v1/users/2/unban", "{}", &d)
	e.connect(2, "phone")
	e.call(http.StatusOK, "POST", "/v1/groups/"+conv+"/messages", `{"sender":2,"client_msg_id":"x","body":"hi"}`, nil)
	if again, _ := LoadModeration(context.Background(), e.restrictions); again.Banned(2) {
		t.Error("the unban did not reach the store")
	}
}

func TestRevoke(t *testing.T) {
	e := newEnv(t)
	issued := time.Now().Add(-time.Minute)
	oldPhone, oldLaptop := e.token(2, "phone", issued), e.token(2, "laptop", issued)
	phone, err := e.dial(oldPhone)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.dial(oldLaptop); err != nil {
		t.Fatal(err)
	}

	// One device: its connection closes and its old token fails; the other
	// device stays.
	var rv Revoked
	e.call(http.StatusOK, "POST", "/v1/users/2/revoke", `{"device":"phone"}`, &rv)
	if rv.Disconnected != 1 || rv.RevokedBefore <= issued.Unix() {
		t.Errorf("revoke the phone: %+v", rv)
	}
	if err := phone.waitStopped(t); !errors.Is(err, client.ErrRevoked) {
		t.Errorf("the revoked phone stopped with %v, want REVOKED", err)
	}
	if _, err := e.dial(oldPhone); !errors.Is(err, client.ErrRevoked) {
		t.Errorf("the phone's old token: %v, want REVOKED", err)
	}
	if _, err := e.dial(e.token(2, "phone", time.Time{})); !errors.Is(err, client.ErrRevoked) {
		t.Errorf("a token without iat after a revocation: %v, want REVOKED", err)
	}
	if _, err := e.dial(e.token(2, "phone", time.Unix(rv.RevokedBefore, 0))); err != nil {
		t.Errorf("a token issued at revoked_before: %v", err)
	}
	var devs Devices
	e.call(http.StatusOK, "GET", "/v1/users/2/devices", "", &devs)
	if len(devs.Devices) != 2 {
		t.Errorf("devices after revoking the phone %+v, want the laptop and the new phone", devs)
	}

	// Every device, with no body. The new phone's token was issued at the
	// first revocation's revoked_before: the second revocation comes a
	// second later, or the phone's token would be as new as it allows.
	e.ahead.Store(int64(time.Second))
	e.call(http.StatusOK, "POST", "/v1/users/2/revoke", "", &rv)
	if rv.Disconnected != 2 {
		t.Errorf("revoke every device disconnected %d, want 2", rv.Disconnected)
	}
	if _, err := e.dial(oldLaptop); !errors.Is(err, client.ErrRevoked) {
		t.Errorf("the laptop's old token: %v, want REVOKED", err)
	}
	if _, err := e.dial(e.token(2, "laptop", time.Unix(rv.RevokedBefore, 0))); err != nil {
		t.Errorf("a new laptop token: %v", err)
	}
	// Other users are untouched, and the revocation is in the store.
	e.connect(3, "phone")
	again, err := LoadModeration(context.Background(), e.restrictions)
	if err != nil || again.Admit(2, "laptop", issued) != wire.CodeRevoked || again.Admit(3, "laptop", issued) != 0 {
		t.Errorf("the revocations read back from the store: %v", err)
	}
}

// TestModerationRestart sets a ban and revocations on an on-disk Pebble
// store, closes it, and finds them in a store opened again.
func TestModerationRestart(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "db")
	st, err := pebble.Open(pebble.Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	m, err := LoadModeration(t.Context(), st)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1_800_000_000, 500_000_000)
	if err := m.SetBanned(t.Context(), 2, true); err != nil {
		t.Fatal(err)
	}
	before, err := m.Revoke(t.Context(), 3, "phone", now)
	if err != nil || !before.Equal(time.Unix(1_800_000_001, 0)) {
		t.Fatalf("Revoke: %v %v, want the second after", before, err)
	}
	if _, err := m.Revoke(t.Context(), 3, "phone", now.Add(-time.Hour)); err != nil {
		t.Fatal(err)
	}
	st.Close()

	st, err = pebble.Open(pebble.Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	m, err = LoadModeration(t.Context(), st)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		user   uint64
		device string
		issued time.Time
		want   wire.Code
	}{
		{2, "phone", now.Add(time.Hour), wire.CodeBanned},
		{3, "phone", now, wire.CodeRevoked},          // the second of the revocation
		{3, "phone", time.Time{}, wire.CodeRevoked},  // no iat
		{3, "phone", time.Unix(1_800_000_001, 0), 0}, // revoked_before; an earlier revocation did not move it back
		{3, "laptop", now.Add(-time.Hour), 0},        // another device
		{4, "phone", time.Time{}, 0},                 // another user
	}
	for _, tt := range tests {
		if got := m.Admit(tt.user, tt.device, tt.issued); got != tt.want {
			t.Errorf("Admit(%d, %s, %v) = %v, want %v", tt.user, tt.device, tt.issued, got, tt.want)
		}
	}
}

// TestModerationSync: a Moderation learns what another one (another
// node's) wrote to the store by Sync, which names each user whose record
// changed once; a change of its own is never replaced by the read.
func TestModerationSync(t *testing.T) {
	st, err := pebble.Open(pebble.Options{Dir: "db", FS: vfs.NewMem()})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	here, err := LoadModeration(t.Context(), st)
	if err != nil {
		t.Fatal(err)
	}
	there, err := LoadModeration(t.Context(), st)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1_800_000_000, 0)
	if err := there.SetBanned(t.Context(), 2, true); err != nil {
		t.Fatal(err)
	}
	if _, err := there.Revoke(t.Context(), 3, "phone", now); err != nil {
		t.Fatal(err)
	}
	if here.Banned(2) {
		t.Fatal("a ban of another Moderation seen before Sync")
	}
	if err := here.SetBanned(t.Context(), 4, true); err != nil {
		t.Fatal(err)
	}
	changed, err := here.Sync(t.Context())
	slices.Sort(changed)
	if err != nil || !slices.Equal(changed, []uint64{2, 3}) {
		t.Fatalf("Sync: %v, %v; want users 2 and 3", changed, err)
	}
	if !here.Banned(2) || here.Admit(3, "phone", now) != wire.CodeRevoked || !here.Banned(4) {
		t.Error("after Sync the changes of both are not all in force")
	}
	if changed, err := here.Sync(t.Context()); err != nil || len(changed) != 0 {
		t.Errorf("Sync with nothing new: %v, %v", changed, err)
	}
	if err := there.SetBanned(t.Context(), 2, false); err != nil {
		t.Fatal(err)
	}
	if changed, _ := here.Sync(t.Context()); !slices.Equal(changed, []uint64{2}) || here.Banned(2) {
		t.Errorf("Sync after an unban: %v, banned %v", changed, here.Banned(2))
	}
}

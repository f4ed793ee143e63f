package main

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestAdmin runs each admin call against an HTTP server that records the
// request, and checks the request and what is printed.
func TestAdmin(t *testing.T) {
	type seen struct{ method, path, auth, body string }
	var got seen
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got = seen{r.Method, r.URL.Path, r.Header.Get("Authorization"), string(b)}
		if strings.HasSuffix(r.URL.Path, "/404") {
			w.WriteHeader(http.StatusNotFound)
			io.WriteString(w, `{"code":"NO_GROUP","message":"no such group"}`)
			return
		}
		io.WriteString(w, `{"ok":true}`+"\n")
	}))
	defer srv.Close()
	keys := filepath.Join(t.TempDir(), "api-keys")
	if err := os.WriteFile(keys, []byte("# comment\n\n  the-first-key-0123456789  \nsecond-key-0123456789\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"INBOXD_API": srv.URL, "INBOXD_API_KEY_FILE": keys}

	tests := []struct {
		args                     string
		method, path, body, fail string
	}{
		{"admin --id k1 system-message 77 your order shipped", "POST", "/v1/groups/77/system-messages", `{"body":"your order shipped","client_msg_id":"k1"}`, ""},
		{"admin --id k2 send 1 77 hi there", "POST", "/v1/groups/77/messages", `{"body":"hi there","client_msg_id":"k2","sender":1}`, ""},
		{"admin --id r1 recall 77 5", "POST", "/v1/groups/77/messages/5/recall", `{"client_msg_id":"r1"}`, ""},
		{"admin --name lunch create-group 1 2 3", "POST", "/v1/groups", `{"members":[2,3],"name":"lunch","owner":1}`, ""},
		{"admin --id t1 create-group 1", "POST", "/v1/groups", `{"idempotency_key":"t1","members":[],"name":"","owner":1}`, ""},
		{"admin group 77", "GET", "/v1/groups/77", ``, ""},
		{"admin invite 1 77 4 5", "POST", "/v1/groups/77/invite", `{"actor":1,"users":[4,5]}`, ""},
		{"admin kick 1 77 4", "POST", "/v1/groups/77/kick", `{"actor":1,"user":4}`, ""},
		{"admin dismiss 1 77", "POST", "/v1/groups/77/dismiss", `{"actor":1}`, ""},
		{"admin profile 1 77 name the ops team", "POST", "/v1/groups/77/profile", `{"actor":1,"name":"the ops team"}`, ""},
		{"admin profile 1 77 announcement", "POST", "/v1/groups/77/profile", `{"actor":1,"announcement":""}`, ""},
		{"admin ban 2", "POST", "/v1/users/2/ban", ``, ""},
		{"admin unban 2", "POST", "/v1/users/2/unban", ``, ""},
		{"admin revoke 2 phone", "POST", "/v1/users/2/revoke", `{"device":"phone"}`, ""},
		{"admin revoke 2", "POST", "/v1/users/2/revoke", ``, ""},
		{"admin devices 2", "GET", "/v1/users/2/devices", ``, ""},
		{"admin conversations 2", "GET", "/v1/users/2/conversations", ``, ""},
		{"admin group 404", "GET", "/v1/groups/404", ``, "404 Not Found: {\"code\":\"NO_GROUP\""},
	}
	for _, tt := range tests {
		a, out, errOut := testApp(env)
		status := run(context.Background(), strings.Fields(tt.args), a)
		if tt.fail != "" {
			if status != 1 || !strings.Contains(errOut.String(), tt.fail) {
				t.Errorf("%s: status %d, stderr %q", tt.args, status, errOut)
			}
			continue
		}
		if status != 0 {
			t.Errorf("%s: status %d: %s", tt.args, status, errOut)
			continue
		}
		want := seen{tt.method, tt.path, "Bearer the-first-key-0123456789", tt.body}
		if got != want {
			t.Errorf("%s: request %+v, want %+v", tt.args, got, want)
		}
		if out.String() != `{"ok":true}`+"\n" {
			t.Errorf("%s: printed %q", tt.args, out)
		}
	}

	// A generated client msg id; usage errors.
	a, _, _ := testApp(env)
	if run(context.Background(), []string{"admin", "system-message", "77", "x"}, a) != 0 || !strings.Contains(got.body, `"client_msg_id":"inboxctl-`) {
		t.Errorf("generated id: %s", got.body)
	}
	for _, args := range []string{"admin", "admin nope 1", "admin ban", "admin kick 1 77", "admin send x 77 hi", "admin revoke 2 phone extra", "admin profile 1 77 avatar x", "admin profile 1 77",
		"admin recall 77", "admin recall 77 5 6"} {
		a, _, _ := testApp(env)
		if status := run(context.Background(), strings.Fields(args), a); status != 2 {
			t.Errorf("%s: status %d, want 2", args, status)
		}
	}
	a, _, errOut := testApp(map[string]string{"INBOXD_API": srv.URL})
	if run(context.Background(), []string{"admin", "ban", "2"}, a) != 1 || !strings.Contains(errOut.String(), "no key") {
		t.Errorf("no key file: %s", errOut)
	}
}

package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"
)

// adminCmd calls inboxd's server API (docs/api.md) as the application's
// backend would: one call per run, its JSON answer printed as it came.
type adminCmd struct {
	api     string
	keyFile string
	id      string // client msg id of a send; generated when empty
	name    string // of a group created

	call adminCall
	argv []string
}

// adminCall is one call of the server API: it turns its arguments into a
// request.
type adminCall struct {
	name, usage string
	lo, hi      int // positional arguments (hi -1: any number)
	request     func(c *adminCmd, args []string) (method, path string, body any, err error)
}

func adminCalls() []adminCall {
	post := func(path string, body any) (string, string, any, error) { return http.MethodPost, path, body, nil }
	get := func(path string) (string, string, any, error) { return http.MethodGet, path, nil, nil }
	return []adminCall{
		{"system-message", "CONV TEXT...", 2, -1, func(c *adminCmd, a []string) (string, string, any, error) {
			return post("/v1/groups/"+a[0]+"/system-messages", map[string]any{"client_msg_id": c.msgID(), "body": strings.Join(a[1:], " ")})
		}},
		{"send", "USER CONV TEXT...", 3, -1, func(c *adminCmd, a []string) (string, string, any, error) {
			user, err := parseID(a[0], "user")
			return http.MethodPost, "/v1/groups/" + a[1] + "/messages", map[string]any{"sender": user, "client_msg_id": c.msgID(), "body": strings.Join(a[2:], " ")}, err
		}},
		{"recall", "CONV CONV_SEQ", 2, 2, func(c *adminCmd, a []string) (string, string, any, error) {
			return post("/v1/groups/"+a[0]+"/messages/"+a[1]+"/recall", map[string]any{"client_msg_id": c.msgID()})
		}},
		{"create-group", "[--name N] OWNER [MEMBER...]", 1, -1, func(c *adminCmd, a []string) (string, string, any, error) {
			ids, err := parseIDs(a, "user")
			if err != nil {
				return "", "", nil, err
			}
			body := map[string]any{"owner": ids[0], "members": ids[1:], "name": c.name}
			if c.id != "" {
				body["idempotency_key"] = c.id
			}
			return post("/v1/groups", body)
		}},
		{"group", "CONV", 1, 1, func(_ *adminCmd, a []string) (string, string, any, error) { return get("/v1/groups/" + a[0]) }},
		{"invite", "ACTOR CONV USER...", 3, -1, func(_ *adminCmd, a []string) (string, string, any, error) {
			ids, err := parseIDs(append([]string{a[0]}, a[2:]...), "user")
			if err != nil {
				return "", "", nil, err
			}
			return post("/v1/groups/"+a[1]+"/invite", map[string]any{"actor": ids[0], "users": ids[1:]})
		}},
		{"kick", "ACTOR CONV USER", 3, 3, func(_ *adminCmd, a []string) (string, string, any, error) {
			ids, err := parseIDs([]string{a[0], a[2]}, "user")
			if err != nil {
				return "", "", nil, err
			}
			return post("/v1/groups/"+a[1]+"/kick", map[string]any{"actor": ids[0], "user": ids[1]})
		}},
		{"dismiss", "ACTOR CONV", 2, 2, func(_ *adminCmd, a []string) (string, string, any, error) {
			actor, err := parseID(a[0], "user")
			return http.MethodPost, "/v1/groups/" + a[1] + "/dismiss", map[string]any{"actor": actor}, err
		}},
		{"profile", "ACTOR CONV name|announcement|avatar_url [TEXT...]", 3, -1, func(_ *adminCmd, a []string) (string, string, any, error) {
			actor, err := parseID(a[0], "user")
			if err != nil {
				return "", "", nil, err
			}
			switch a[2] {
			case "name", "announcement", "avatar_url":
			default:
				return "", "", nil, fmt.Errorf("%q: want name, announcement or avatar_url", a[2])
			}
			// No TEXT: the empty string, which clears an announcement or avatar.
			return post("/v1/groups/"+a[1]+"/profile", map[string]any{"actor": actor, a[2]: strings.Join(a[3:], " ")})
		}},
		{"ban", "USER", 1, 1, func(_ *adminCmd, a []string) (string, string, any, error) { return post("/v1/users/"+a[0]+"/ban", nil) }},
		{"unban", "USER", 1, 1, func(_ *adminCmd, a []string) (string, string, any, error) {
			return post("/v1/users/"+a[0]+"/unban", nil)
		}},
		{"revoke", "USER [DEVICE]", 1, 2, func(_ *adminCmd, a []string) (string, string, any, error) {
			var body any
			if len(a) == 2 {
				body = map[string]any{"device": a[1]}
			}
			return post("/v1/users/"+a[0]+"/revoke", body)
		}},
		{"devices", "USER", 1, 1, func(_ *adminCmd, a []string) (string, string, any, error) {
			return get("/v1/users/" + a[0] + "/devices")
		}},
		{"conversations", "USER", 1, 1, func(_ *adminCmd, a []string) (string, string, any, error) {
			return get("/v1/users/" + a[0] + "/conversations")
		}},
	}
}

// adminUsage is the usage line of the admin command.
func adminUsage() string {
	var b strings.Builder
	b.WriteString("[--api URL] [--api-key-file F] [--id KEY] CALL ARGS; CALL is one of:")
	for _, c := range adminCalls() {
		fmt.Fprintf(&b, "\n  %-14s   %s %s", "", c.name, c.usage)
	}
	return b.String()
}

func (c *adminCmd) flags(fs *flag.FlagSet) {
	fs.StringVar(&c.api, "api", "", "server API base URL (env INBOXD_API; default http://127.0.0.1:7602)")
	fs.StringVar(&c.keyFile, "api-key-file", "", "file whose first key line is the API key (env INBOXD_API_KEY_FILE)")
	fs.StringVar(&c.id, "id", "", "client msg id of a send, system message or recall (default: random; give one to retry a call), idempotency key of a create-group")
	fs.StringVar(&c.name, "name", "", "name of a group created (default: named after its first members)")
}

func (c *adminCmd) args(args []string) error {
	if len(args) == 0 {
		return errors.New("missing the call")
	}
	for _, call := range adminCalls() {
		if call.name == args[0] {
			c.call, c.argv = call, args[1:]
			return wantArgs(c.argv, call.lo, call.hi)
		}
	}
	return fmt.Errorf("unknown call %q", args[0])
}

// msgID is the client msg id of a send: --id, or a random one.
func (c *adminCmd) msgID() string {
	if c.id == "" {
		b := make([]byte, 12)
		rand.Read(b)
		c.id = "inboxctl-" + hex.EncodeToString(b)
	}
	return c.id
}

func (c *adminCmd) run(ctx context.Context, a *app) error {
	base := firstOf(c.api, a.getenv("INBOXD_API"), "http://127.0.0.1:7602")
	keyFile := firstOf(c.keyFile, a.getenv("INBOXD_API_KEY_FILE"))
	if keyFile == "" {
		return errors.New("admin: no key: pass --api-key-file or set INBOXD_API_KEY_FILE")
	}
	key, err := readAPIKey(keyFile)
	if err != nil {
		return fmt.Errorf("admin: %w", err)
	}
	method, path, body, err := c.call.request(c, c.argv)
	if err != nil {
		return fmt.Errorf("%w: admin %s: %w", errUsage, c.call.name, err)
	}
	u, err := url.JoinPath(base, path)
	if err != nil {
		return fmt.Errorf("admin: --api %q: %w", base, err)
	}
	var rd io.Reader
	if body != nil {
		js, err := json.Marshal(body)
		if err != nil {
			return fmt.Errorf("admin: %w", err)
		}
		rd = bytes.NewReader(js)
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return fmt.Errorf("admin: %w", err)
	}
	req.Header.Set("Authorization", "Bearer "+key)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("admin: %w", err)
	}
	defer resp.Body.Close()
	answer, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return fmt.Errorf("admin: %w", err)
	}
	answer = bytes.TrimSpace(answer)
	if resp.StatusCode >= 300 {
		return fmt.Errorf("admin %s: %s: %s", c.call.name, resp.Status, answer)
	}
	if len(answer) > 0 {
		fmt.Fprintf(a.stdout, "%s\n", answer)
	}
	return nil
}

// readAPIKey returns the first key of a key file: its first line that is
// neither blank nor a # comment, as inboxd reads it.
func readAPIKey(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	lines := bufio.NewScanner(f)
	for lines.Scan() {
		if line := strings.TrimSpace(lines.Text()); line != "" && !strings.HasPrefix(line, "#") {
			return line, nil
		}
	}
	if err := lines.Err(); err != nil {
		return "", err
	}
	return "", fmt.Errorf("%s holds no key", path)
}

// firstOf returns the first non-empty string.
func firstOf(ss ...string) string {
	for _, s := range ss {
		if s != "" {
			return s
		}
	}
	return ""
}

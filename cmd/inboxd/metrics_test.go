package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/inboxd/inboxd/client"
	"github.com/inboxd/inboxd/gateway"
	"github.com/inboxd/inboxd/internal/admin"
	"github.com/inboxd/inboxd/timeline"
	"github.com/inboxd/inboxd/timeline/pebble"
	"github.com/inboxd/inboxd/token"
	"github.com/inboxd/inboxd/wire/wirepb"
)

// instance is a running inboxd binary.
type instance struct {
	listen, admin string
	api           string // "off" unless started with -api
	ws            string // "off" unless started with -ws
	secret        []byte
}

// buildInboxd builds the binary of this package into a temporary directory.
func buildInboxd(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "inboxd")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	return bin
}

// startInboxd runs the binary on free loopback ports with a fresh data
// directory, waits for its ready line, and stops it with SIGTERM at the end
// of the test.
func startInboxd(t *testing.T, args ...string) *instance {
	t.Helper()
	bin := buildInboxd(t)
	data := filepath.Join(t.TempDir(), "data")
	cmd := exec.Command(bin, append([]string{"-listen", "127.0.0.1:0", "-admin", "127.0.0.1:0", "-data", data}, args...)...)
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	t.Cleanup(func() {
		cmd.Process.Signal(os.Interrupt)
		select {
		case err := <-exited:
			if err != nil {
				t.Errorf("inboxd exited with %v", err)
			}
		case <-time.After(20 * time.Second):
			cmd.Process.Kill()
			t.Error("inboxd did not stop on SIGINT")
		}
	})
	lines := bufio.NewScanner(stderr)
	ready := regexp.MustCompile(`inboxd: ready.* listen=(\S+) admin=(\S+) api=(\S+) ws=(\S+)`)
	in := &instance{}
	for in.listen == "" && lines.Scan() {
		if m := ready.FindStringSubmatch(lines.Text()); m != nil {
			in.listen, in.admin, in.api, in.ws = m[1], m[2], m[3], m[4]
		}
	}
	go func() {
		for lines.Scan() {
		}
		exited <- cmd.Wait()
	}()
	if in.listen == "" {
		t.Fatal("inboxd never said it was ready")
	}
	b, err := os.ReadFile(filepath.Join(data, "token-secret"))
	if err != nil {
		t.Fatal(err)
	}
	in.secret = []byte(strings.TrimSpace(string(b)))
	return in
}

func (in *instance) token(t *testing.T, user uint64, expiry time.Duration) string {
	tok, err := token.Sign(in.secret, token.Claims{User: user, Device: "test", Expiry: time.Now().Add(expiry)})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// get fetches path from the admin address.
func (in *instance) get(t *testing.T, path string) (int, string) {
	t.Helper()
	resp, err := http.Get("http://" + in.admin + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// scrape is one parsed GET /metrics.
type scrape map[string]*dto.MetricFamily

func (in *instance) scrape(t *testing.T) scrape {
	t.Helper()
	code, body := in.get(t, "/metrics")
	if code != http.StatusOK {
		t.Fatalf("GET /metrics: %d\n%s", code, body)
	}
	p := expfmt.NewTextParser(model.LegacyValidation)
	mfs, err := p.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	return mfs
}

// value sums the series of family name whose labels include the pairs
// given ("reason", "expired", …): a counter's or gauge's value, a
// histogram's sample count.
func (s scrape) value(name string, labels ...string) float64 {
	var sum float64
	for _, m := range s[name].GetMetric() {
		if !hasLabels(m, labels) {
			continue
		}
		switch {
		case m.Counter != nil:
			sum += m.Counter.GetValue()
		case m.Gauge != nil:
			sum += m.Gauge.GetValue()
		case m.Histogram != nil:
			sum += float64(m.Histogram.GetSampleCount())
		}
	}
	return sum
}

func hasLabels(m *dto.Metric, pairs []string) bool {
	for i := 0; i+1 < len(pairs); i += 2 {
		found := false
		for _, lp := range m.GetLabel() {
			if lp.GetName() == pairs[i] && lp.GetValue() == pairs[i+1] {
				found = true
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// delta is a metric expected to move by want between two scrapes.
type delta struct {
	name   string
	labels []string
	want   float64
}

func (d delta) String() string { return fmt.Sprintf("%s%v", d.name, d.labels) }

// waitDeltas scrapes until every delta from before holds (the pushes and
// the webhook run after the ACK), or fails the test after a few seconds.
func (in *instance) waitDeltas(t *testing.T, before scrape, deltas []delta) scrape {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		after := in.scrape(t)
		var wrong []string
		for _, d := range deltas {
			if got := after.value(d.name, d.labels...) - before.value(d.name, d.labels...); got != d.want {
				wrong = append(wrong, fmt.Sprintf("%v moved by %v, want %v", d, got, d.want))
			}
		}
		if len(wrong) == 0 {
			return after
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the traffic:\n%s", strings.Join(wrong, "\n"))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestMetricsAfterTraffic drives the real binary over TCP with the Go
// client and checks, by scraping /metrics, that every counter moved by what
// the traffic implies. It then checks that every metric the Grafana
// dashboard and the alert rules query is among those scraped.
func TestMetricsAfterTraffic(t *testing.T) {
	var hooked atomic.Int32
	hook := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { hooked.Add(1) }))
	defer hook.Close()
	keyFile := writeAPIKeys(t, apiKey)
	in := startInboxd(t, "-webhook-url", hook.URL, "-api", "127.0.0.1:0", "-api-key-file", keyFile)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	if code, body := in.get(t, "/readyz"); code != http.StatusOK {
		t.Fatalf("GET /readyz of a running inboxd: %d %s", code, body)
	}
	if code, _ := in.get(t, "/healthz"); code != http.StatusOK {
		t.Fatalf("GET /healthz: %d", code)
	}

	dial := func(tok string, onEntry func(*wirepb.Entry)) (*client.Client, error) {
		return client.Dial(ctx, client.Config{Addr: in.listen, Token: tok, OnEntry: onEntry})
	}

	// Refused tokens, each counted under its reason.
	s0 := in.scrape(t)
	forged, _ := token.Sign([]byte("not the server's secret, at all"), token.Claims{User: 9, Device: "x", Expiry: time.Now().Add(time.Hour)})
	for _, tok := range []string{forged, in.token(t, 9, -time.Minute), "garbage"} {
		if c, err := dial(tok, nil); err == nil {
			c.Close()
			t.Fatalf("token %q accepted", tok)
		}
	}
	in.waitDeltas(t, s0, []delta{
		{"inboxd_gateway_auth_failures_total", []string{"reason", "bad_signature"}, 1},
		{"inboxd_gateway_auth_failures_total", []string{"reason", "expired"}, 1},
		{"inboxd_gateway_auth_failures_total", []string{"reason", "malformed_token"}, 1},
		{"inboxd_gateway_auth_failures_total", nil, 3},
		{"inboxd_gateway_frames_received_total", []string{"command", "AUTH"}, 3},
		{"inboxd_gateway_connections_accepted_total", nil, 3},
		{"inboxd_gateway_disconnects_total", []string{"reason", "auth_failed"}, 3},
		{"inboxd_gateway_connections_open", nil, 0},
	})

	// A group of five: 1 (owner) and 2 online, 3 and 5 offline, 4 offline
	// with do-not-disturb.
	received := make([]atomic.Int32, 3)
	online := make([]*client.Client, 3)
	for u := uint64(1); u <= 2; u++ {
		c, err := dial(in.token(t, u, time.Hour), func(e *wirepb.Entry) { received[u].Add(1) })
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		online[u] = c
	}
	g, err := online[1].CreateGroup(ctx, &wirepb.CreateGroupRequest{Name: "five", Members: []uint64{2, 3, 4, 5}})
	if err != nil {
		t.Fatal(err)
	}
	c4, err := dial(in.token(t, 4, time.Hour), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := c4.SetDND(ctx, g.Id, true); err != nil {
		t.Fatal(err)
	}
	c4.Close()
	for received[1].Load() < 1 || received[2].Load() < 1 { // the creation notice
		time.Sleep(10 * time.Millisecond)
	}
	// Every push outcome of the creation notice (5 members) and of 4's
	// KindDND row is counted before the sends are.
	in.waitDeltas(t, s0, []delta{{"inboxd_inbox_pushes_total", nil, 5 + 1}})
	// Wait until the gateway has seen 4 go, so that 4 counts as offline.
	before := in.waitDeltas(t, in.scrape(t), []delta{{"inboxd_gateway_users_online", nil, 0}})
	if n := before.value("inboxd_gateway_users_online"); n != 2 {
		before = in.waitDeltas(t, before, []delta{{"inboxd_gateway_users_online", nil, 2 - n}})
	}
	hookedBefore := hooked.Load()

	const sends, members = 3, 5
	for i := range sends {
		if _, err := online[1].Send(ctx, g.Id, fmt.Sprintf("m%d", i), 1, []byte("hello")); err != nil {
			t.Fatal(err)
		}
	}
	in.waitDeltas(t, before, []delta{
		{"inboxd_gateway_frames_received_total", []string{"command", "SEND"}, sends},
		{"inboxd_gateway_frames_sent_total", []string{"command", "SEND"}, sends},
		{"inboxd_gateway_request_duration_seconds", []string{"command", "SEND"}, sends},
		{"inboxd_gateway_error_responses_total", nil, 0},
		{"inboxd_inbox_sends_total", []string{"result", "stored"}, sends},
		{"inboxd_inbox_send_ack_duration_seconds", nil, sends},
		{"inboxd_inbox_messages_total", nil, sends},
		{"inboxd_inbox_fanout_rows_total", nil, sends * members},
		{"inboxd_inbox_commit_duration_seconds", nil, sends},
		{"inboxd_inbox_commit_build_duration_seconds", nil, sends},
		{"inboxd_inbox_commit_batch_rows", nil, sends},
		{"inboxd_inbox_commit_failures_total", nil, 0},
		// Users 1 and 2 get each message pushed; 3 and 5 through the hook;
		// 4's is skipped for do-not-disturb.
		{"inboxd_inbox_pushes_total", []string{"outcome", "online"}, 2 * sends},
		{"inboxd_inbox_pushes_total", []string{"outcome", "offline_hook"}, 2 * sends},
		{"inboxd_inbox_pushes_total", []string{"outcome", "skipped_dnd"}, sends},
		{"inboxd_inbox_pushes_total", []string{"outcome", "skipped"}, 0},
		{"inboxd_inbox_push_delay_seconds", nil, sends * members},
		{"inboxd_gateway_frames_sent_total", []string{"command", "PUSH"}, 2 * sends},
		{"inboxd_webhook_notices_total", []string{"result", "delivered"}, 2 * sends},
		{"inboxd_webhook_post_duration_seconds", nil, 2 * sends},
		{"inboxd_store_operation_duration_seconds", []string{"backend", "pebble", "operation", "commit"}, sends},
		{"inboxd_store_operation_errors_total", nil, 0},
	})
	if got := hooked.Load() - hookedBefore; got != 2*sends {
		t.Errorf("the webhook received %d posts, want %d", got, 2*sends)
	}

	// A resend under the same client msg id stores nothing.
	before = in.scrape(t)
	if ack, err := online[1].Send(ctx, g.Id, "m0", 1, []byte("hello")); err != nil || !ack.Duplicate {
		t.Fatalf("resend: %v %v", ack, err)
	}
	online[2].Close()
	in.waitDeltas(t, before, []delta{
		{"inboxd_inbox_sends_total", []string{"result", "duplicate"}, 1},
		{"inboxd_inbox_fanout_rows_total", nil, 0},
		{"inboxd_gateway_disconnects_total", []string{"reason", "peer"}, 1},
		{"inboxd_gateway_connections_open", nil, -1},
	})

	// One call to the server API, counted by route and status.
	before = in.scrape(t)
	if code, b := in.callAPI(t, apiKey, "GET", "/v1/users/1/conversations", ""); code != http.StatusOK {
		t.Fatalf("server API: %d %s", code, b)
	}
	in.waitDeltas(t, before, []delta{
		{"inboxd_api_requests_total", []string{"route", "GET /v1/users/{user}/conversations", "code", "200"}, 1},
		{"inboxd_api_request_duration_seconds", []string{"route", "GET /v1/users/{user}/conversations"}, 1},
	})

	t.Run("dashboard and alerts query only exported metrics", func(t *testing.T) {
		checkQueries(t, in.scrape(t))
	})
	t.Run("docs list exactly the exported metrics", func(t *testing.T) {
		checkMetricsTable(t, in.scrape(t), false)
	})
}

// TestReadyzStates checks /readyz of a running inboxd (ready) and of one
// whose gateway cannot listen (not ready, with the reason).
func TestReadyzStates(t *testing.T) {
	t.Run("serving", func(t *testing.T) {
		in := startInboxd(t)
		if code, body := in.get(t, "/readyz"); code != http.StatusOK || !strings.Contains(body, "ready") {
			t.Fatalf("GET /readyz: %d %q", code, body)
		}
	})
	tests := []struct {
		name  string
		ready *readiness
		want  []string
	}{
		{"nothing started", &readiness{}, []string{"store: not open yet", "gateway: not accepting connections"}},
		{"store closed", &readiness{store: memStore(t, true)}, []string{"store: read: ", "closed"}},
		{"gateway not serving", &readiness{store: memStore(t, false), gw: idleGateway(t)}, []string{"gateway: not accepting connections"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(admin.Handler(admin.Config{Checks: tt.ready.checks()}))
			defer srv.Close()
			resp, err := http.Get(srv.URL + "/readyz")
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusServiceUnavailable {
				t.Errorf("status %d, want 503", resp.StatusCode)
			}
			for _, w := range tt.want {
				if !strings.Contains(string(b), w) {
					t.Errorf("body %q lacks %q", b, w)
				}
			}
			if tt.ready.store != nil && !strings.Contains(tt.name, "store") && strings.Contains(string(b), "store:") {
				t.Errorf("an open store reported not ready: %q", b)
			}
		})
	}
}

// memStore is a Pebble store in memory, closed already if closed is set.
func memStore(t *testing.T, closed bool) timeline.Store {
	st, err := pebble.Open(pebble.Options{Dir: "db", FS: vfs.NewMem()})
	if err != nil {
		t.Fatal(err)
	}
	if closed {
		st.Close()
	} else {
		t.Cleanup(func() { st.Close() })
	}
	return st
}

// idleGateway is a gateway that was created and never served.
func idleGateway(t *testing.T) *gateway.Server {
	gw, err := gateway.New(gateway.Config{Secret: []byte("sixteen bytes or more")})
	if err != nil {
		t.Fatal(err)
	}
	return gw
}

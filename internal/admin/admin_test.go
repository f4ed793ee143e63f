package admin

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/inboxd/inboxd/internal/httpserve"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestEndpoints(t *testing.T) {
	ok := Check{"store", func(context.Context) error { return nil }}
	down := Check{"gateway", func(context.Context) error { return errors.New("not serving") }}
	hung := Check{"store", func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() }}
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "inboxd_test_total", Help: "A test counter."})
	reg.MustRegister(c)
	c.Add(3)

	tests := []struct {
		name   string
		checks []Check
		path   string
		status int
		body   []string // substrings
	}{
		{"alive", []Check{down}, "/healthz", 200, []string{"ok"}},
		{"ready", []Check{ok, ok}, "/readyz", 200, []string{"ready"}},
		{"no checks is ready", nil, "/readyz", 200, []string{"ready"}},
		{"one check fails", []Check{ok, down}, "/readyz", 503, []string{"not ready", "gateway: not serving"}},
		{"a check hangs", []Check{hung, down}, "/readyz", 503, []string{"store: no answer within 50ms", "gateway: not serving"}},
		{"metrics", nil, "/metrics", 200, []string{"inboxd_test_total 3"}},
		{"unknown path", nil, "/nope", 404, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, err := httpserve.Listen("127.0.0.1:0", Handler(Config{Gatherer: reg, Checks: tt.checks, CheckTimeout: 50 * time.Millisecond}), nil)
			if err != nil {
				t.Fatal(err)
			}
			defer srv.Close()
			resp, err := http.Get("http://" + srv.Addr().String() + tt.path)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tt.status {
				t.Errorf("GET %s: %d, want %d\n%s", tt.path, resp.StatusCode, tt.status, b)
			}
			for _, want := range tt.body {
				if !strings.Contains(string(b), want) {
					t.Errorf("GET %s: body %q lacks %q", tt.path, b, want)
				}
			}
		})
	}
}

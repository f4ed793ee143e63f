// Package admin is inboxd's operations endpoint: an HTTP handler serving
//
//	GET /healthz  200 "ok" while the process runs (liveness)
//	GET /readyz   200 "ready" when every readiness check passes, else 503
//	              with one line per failing check (readiness)
//	GET /metrics  the Prometheus registry, in the text exposition format
//
// It is meant for a loopback or private address: nothing in it is
// authenticated.
//
// It is internal to the server (README, "Layout").
package admin

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Check is one readiness condition. Run returns nil when it holds, and
// must return once ctx is done.
type Check struct {
	Name string
	Run  func(ctx context.Context) error
}

// Config configures Handler.
type Config struct {
	// Gatherer is served at /metrics; nil serves no metrics.
	Gatherer prometheus.Gatherer
	// Checks decide /readyz; they run concurrently on each request.
	Checks []Check
	// CheckTimeout bounds each check (default 2 s): a store that does not
	// answer in time is not ready.
	CheckTimeout time.Duration
	Logger       *slog.Logger
}

// Handler returns the admin endpoints.
func Handler(cfg Config) http.Handler {
	if cfg.CheckTimeout <= 0 {
		cfg.CheckTimeout = 2 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if failed := runChecks(r.Context(), cfg.Checks, cfg.CheckTimeout); len(failed) > 0 {
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintf(w, "not ready\n%s\n", strings.Join(failed, "\n"))
			return
		}
		fmt.Fprintln(w, "ready")
	})
	if cfg.Gatherer != nil {
		mux.Handle("GET /metrics", promhttp.HandlerFor(cfg.Gatherer, promhttp.HandlerOpts{
			ErrorLog:      slogErrorLog{cfg.Logger},
			ErrorHandling: promhttp.ContinueOnError, // a broken collector must not hide the others
			Timeout:       10 * time.Second,
		}))
	}
	return mux
}

// runChecks runs checks concurrently and returns "name: reason" for each
// that failed or did not answer within timeout, in the order given. It does
// not wait for a check past the timeout: a store stuck in I/O may ignore
// its context, and the probe must still answer.
func runChecks(ctx context.Context, checks []Check, timeout time.Duration) []string {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	type result struct {
		i   int
		err error
	}
	results := make(chan result, len(checks)) // buffered: a late check never blocks
	for i, c := range checks {
		go func() { results <- result{i, c.Run(ctx)} }()
	}
	errs := make([]error, len(checks))
	for i := range errs {
		errs[i] = fmt.Errorf("no answer within %v", timeout)
	}
	for range checks {
		select {
		case r := <-results:
			errs[r.i] = r.err
			if errors.Is(r.err, context.DeadlineExceeded) {
				errs[r.i] = fmt.Errorf("no answer within %v: %w", timeout, r.err)
			}
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
	}
	var failed []string
	for i, err := range errs {
		if err != nil {
			failed = append(failed, checks[i].Name+": "+err.Error())
		}
	}
	return failed
}

// slogErrorLog gives promhttp's error log to slog.
type slogErrorLog struct{ log *slog.Logger }

func (l slogErrorLog) Println(v ...any) { l.log.Error("admin: metrics: " + fmt.Sprint(v...)) }

package cassandra_test

import (
	"errors"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/gocql/gocql"

	"github.com/inboxd/inboxd/internal/cassandratest"
	"github.com/inboxd/inboxd/timeline"
	"github.com/inboxd/inboxd/timeline/cassandra"
	"github.com/inboxd/inboxd/timeline/timelinetest"
)

// The tests run against a real node, named by INBOXD_CASSANDRA_HOSTS
// (scripts/test starts one). Each run of the package works in keyspaces of
// its own, named after run.Prefix and dropped when the run ends; then
// TestMain checks that no test left a goroutine behind: a closed Store
// stops its lease renewal, its writers and the driver's connections.
var run = cassandratest.NewRun("test")

func TestMain(m *testing.M) { os.Exit(run.Main(m)) }

// hosts returns the node's address, or skips the test (see cassandratest).
func hosts(t testing.TB) []string { return cassandratest.Hosts(t) }

// config returns the tests' configuration of a store in the run's keyspace
// named suffix: consistency ONE on the one node, a small writer pool on a
// machine of two cores, and the store's warnings in the test's output.
func config(t testing.TB, suffix string) cassandra.Config {
	return cassandra.Config{
		Logger:       slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn})),
		Hosts:        hosts(t),
		Keyspace:     run.Prefix + suffix,
		Consistency:  gocql.One,
		Timeout:      5 * time.Second,
		Writers:      8,
		CreateSchema: true,
		LeaseTTL:     20 * time.Second,
	}
}

// open opens a store that the test's end closes, if the test did not.
func open(t testing.TB, cfg cassandra.Config) *cassandra.Store {
	t.Helper()
	s, err := cassandra.Open(t.Context(), cfg)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { closeOnce(t, s) })
	return s
}

// closeOnce closes s unless it is closed (or crashed) already.
func closeOnce(t testing.TB, s *cassandra.Store) {
	if err := s.Close(); err != nil && !errors.Is(err, timeline.ErrClosed) {
		t.Errorf("Close: %v", err)
	}
}

// session opens a driver session of the test's own, for checking what the
// store wrote and for writing what it would not.
func session(t testing.TB) *gocql.Session { return cassandratest.Session(t) }

func TestConformance(t *testing.T) {
	cfg := config(t, "")
	timelinetest.Run(t, func(t *testing.T) timeline.Store {
		return open(t, cfg)
	})
}

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

// TestGroupWithoutProfileColumns reads a group row written before groups
// had a profile and a direct pair (those columns null), as after the ALTER
// of deploy/cassandra/schema.cql: a group with no profile.
func TestGroupWithoutProfileColumns(t *testing.T) {
	cfg := config(t, "_oldgroup")
	s := open(t, cfg)
	err := session(t).Query("INSERT INTO "+cfg.Keyspace+".groups (conv, name, owner, created, open, muted_until, dismissed) VALUES (?, ?, ?, ?, ?, ?, ?)",
		uint64(77), "old", uint64(5), int64(1000), true, int64(0), false).Exec()
	if err != nil {
		t.Fatal(err)
	}
	g, err := s.Group(t.Context(), 77)
	if err != nil {
		t.Fatal(err)
	}
	want := timeline.Group{ID: 77, Name: "old", Owner: 5, Created: time.UnixMilli(1000).UTC(), Open: true}
	if g.IsDirect() || g.Announcement != "" || g.AvatarURL != "" || g.Blocked != [2]bool{} || g.Name != want.Name || g.Owner != want.Owner || !g.Open {
		t.Fatalf("group %+v, want %+v", g, want)
	}
}

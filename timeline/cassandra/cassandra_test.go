package cassandra_test

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/gocql/gocql"
	"go.uber.org/goleak"

	"github.com/inboxd/inboxd/timeline"
	"github.com/inboxd/inboxd/timeline/cassandra"
	"github.com/inboxd/inboxd/timeline/timelinetest"
)

// The tests run against a real node, named by INBOXD_CASSANDRA_HOSTS
// (scripts/test starts one). Each run of the package works in keyspaces of
// its own, named after runID and dropped when the run ends.
const hostsEnv = "INBOXD_CASSANDRA_HOSTS"

var runID = "inboxd_test_" + strings.ToLower(rand.Text()[:10])

// TestMain drops the run's keyspaces and then checks that no test left a
// goroutine behind: a closed Store stops its lease renewal, its writers and
// the driver's connections.
func TestMain(m *testing.M) {
	code := m.Run()
	if err := dropKeyspaces(); err != nil {
		fmt.Fprintln(os.Stderr, "drop test keyspaces:", err)
		code = 1
	}
	if code == 0 {
		if err := findLeaks(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// findLeaks looks for goroutines left behind for up to ten seconds: a
// closed session's connection pool may still be sleeping out the driver's
// reconnection interval (1 s, up to three times) before its goroutines end.
func findLeaks() error {
	var err error
	for range 10 {
		if err = goleak.Find(); err == nil {
			return nil
		}
		time.Sleep(time.Second)
	}
	return err
}

// hosts returns the node's address, or skips the test when none is set,
// except on CI, where the node must be there.
func hosts(t testing.TB) []string {
	t.Helper()
	h := os.Getenv(hostsEnv)
	if h == "" {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is not set on CI: scripts/test starts a node and sets it", hostsEnv)
		}
		t.Skipf("%s is not set: start a node with `bash deploy/cassandra/cassandra.sh start` and set %s=127.0.0.1:9042",
			hostsEnv, hostsEnv)
	}
	return strings.Split(h, ",")
}

// config returns the tests' configuration of a store in the run's keyspace
// named suffix: consistency ONE on the one node, a small writer pool on a
// machine of two cores, and the store's warnings in the test's output.
func config(t testing.TB, suffix string) cassandra.Config {
	return cassandra.Config{
		Logger:       slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn})),
		Hosts:        hosts(t),
		Keyspace:     runID + suffix,
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
func session(t testing.TB) *gocql.Session {
	t.Helper()
	c := gocql.NewCluster(hosts(t)...)
	c.Consistency = gocql.One
	c.Timeout = 5 * time.Second
	s, err := c.CreateSession()
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(s.Close)
	return s
}

// dropKeyspaces drops the keyspaces this run created.
func dropKeyspaces() error {
	h := os.Getenv(hostsEnv)
	if h == "" {
		return nil
	}
	c := gocql.NewCluster(strings.Split(h, ",")...)
	c.Timeout = 30 * time.Second
	s, err := c.CreateSession()
	if err != nil {
		return err
	}
	defer s.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var names []string
	iter := s.Query("SELECT keyspace_name FROM system_schema.keyspaces").WithContext(ctx).Iter()
	var name string
	for iter.Scan(&name) {
		if strings.HasPrefix(name, runID) {
			names = append(names, name)
		}
	}
	if err := iter.Close(); err != nil {
		return err
	}
	for _, name := range names {
		if err := s.Query("DROP KEYSPACE IF EXISTS " + name).WithContext(ctx).Exec(); err != nil {
			return err
		}
	}
	return nil
}

func TestConformance(t *testing.T) {
	cfg := config(t, "")
	timelinetest.Run(t, func(t *testing.T) timeline.Store {
		return open(t, cfg)
	})
}

// Package cassandratest is what the tests that need a real Cassandra node
// share: where the node is, keyspaces named for one run of a test package
// and dropped at its end, and a leak check that waits out the driver.
//
// It is the server's own test helper (README, "Layout"), not an API.
package cassandratest

import (
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/gocql/gocql"
	"go.uber.org/goleak"
)

// HostsEnv names the node's addresses, comma separated; scripts/test starts a
// node and sets it.
const HostsEnv = "INBOXD_CASSANDRA_HOSTS"

// Hosts returns the node's addresses, or skips the test when none is set,
// except on CI, where the node must be there.
func Hosts(t testing.TB) []string {
	t.Helper()
	h := os.Getenv(HostsEnv)
	if h == "" {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is not set on CI: scripts/test starts a node and sets it", HostsEnv)
		}
		t.Skipf("%s is not set: start a node with `bash deploy/cassandra/cassandra.sh start` and set %s=127.0.0.1:9042",
			HostsEnv, HostsEnv)
	}
	return strings.Split(h, ",")
}

// Session opens a driver session of the test's own, closed when the test
// ends, at consistency ONE: the tests run on one node. It connects to hosts,
// or to the node's addresses when none are given (a test may name a proxy).
func Session(t testing.TB, hosts ...string) *gocql.Session {
	t.Helper()
	if len(hosts) == 0 {
		hosts = Hosts(t)
	}
	c := gocql.NewCluster(hosts...)
	c.Consistency = gocql.One
	c.Timeout = 30 * time.Second
	quiet(c)
	s, err := c.CreateSession()
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(s.Close)
	return s
}

// quiet turns off the schema events of a test's own session: a keyspace
// dropped or created makes the driver wait for schema agreement in a
// goroutine of its own, up to a minute, which outlives Close and the leak
// check.
func quiet(c *gocql.ClusterConfig) { c.Events.DisableSchemaEvents = true }

// Run is one run of a test package: the prefix of every keyspace its tests
// create, so that Main can drop them however they were named.
type Run struct {
	Prefix string
}

// NewRun returns a run whose keyspaces start with inboxd_<pkg>_ and a random
// part, so that runs sharing a node never meet.
func NewRun(pkg string) *Run {
	return &Run{Prefix: "inboxd_" + pkg + "_" + strings.ToLower(rand.Text()[:10])}
}

// Main runs the package's tests, drops the run's keyspaces, and then checks
// that no test left a goroutine behind; it returns the exit code for
// os.Exit.
func (r *Run) Main(m *testing.M) int {
	code := m.Run()
	if err := r.drop(); err != nil {
		fmt.Fprintln(os.Stderr, "drop test keyspaces:", err)
		code = 1
	}
	if code == 0 {
		if err := findLeaks(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	return code
}

// drop drops every keyspace whose name starts with the run's prefix.
func (r *Run) drop() error {
	h := os.Getenv(HostsEnv)
	if h == "" {
		return nil
	}
	c := gocql.NewCluster(strings.Split(h, ",")...)
	c.Timeout = 30 * time.Second
	quiet(c)
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
		if strings.HasPrefix(name, r.Prefix) {
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

// Keyspace returns a keyspace name of the test's own, starting with
// inboxd_<pkg>_, and drops the keyspace when the test ends: for a test that
// has the server create it.
func Keyspace(t testing.TB, pkg string) string {
	t.Helper()
	ks := NewRun(pkg).Prefix
	s := Session(t)
	t.Cleanup(func() {
		if err := s.Query("DROP KEYSPACE IF EXISTS " + ks).Exec(); err != nil {
			t.Errorf("drop keyspace %s: %v", ks, err)
		}
	})
	return ks
}

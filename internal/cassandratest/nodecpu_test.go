package cassandratest_test

import (
	"os"
	"testing"

	"github.com/inboxd/inboxd/internal/cassandratest"
)

var run = cassandratest.NewRun("cassandratest")

func TestMain(m *testing.M) { os.Exit(run.Main(m)) }

// TestNodeCPU checks that the dev node's CPU time is found and grows while
// the node serves queries.
func TestNodeCPU(t *testing.T) {
	s := cassandratest.Session(t)
	before, ok := cassandratest.NodeCPU()
	if !ok {
		t.Skipf("the node at %v was not started by deploy/cassandra/cassandra.sh here: no pid file", cassandratest.Hosts(t))
	}
	// Enough of the node's work to move a counter of 10 ms ticks.
	for range 1000 {
		if err := s.Query("SELECT release_version FROM system.local").Exec(); err != nil {
			t.Fatal(err)
		}
	}
	after, ok := cassandratest.NodeCPU()
	if !ok || after <= before {
		t.Errorf("node CPU %v, then %v (ok %v) after 1,000 queries; want it to grow", before, after, ok)
	}
}

package cassandra_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/gocql/gocql"

	"github.com/inboxd/inboxd/timeline"
	"github.com/inboxd/inboxd/timeline/cassandra"
)

// leaseEpoch returns the epoch of keyspace ks's writer lease.
func leaseEpoch(t *testing.T, ks string) int64 {
	t.Helper()
	var epoch int64
	if err := session(t).Query("SELECT epoch FROM " + ks + ".lease WHERE name = 'writer'").Scan(&epoch); err != nil {
		t.Fatal(err)
	}
	return epoch
}

// steal takes keyspace ks's writer lease for owner, with a new epoch, as
// another store would once the lease expired.
func steal(t *testing.T, ks, owner string) {
	t.Helper()
	epoch := leaseEpoch(t, ks)
	q := session(t).Query("UPDATE "+ks+".lease SET owner = ?, epoch = ? WHERE name = 'writer' IF epoch = ?", owner, epoch+1, epoch)
	if applied, err := q.MapScanCAS(make(map[string]any)); err != nil || !applied {
		t.Fatalf("steal the lease: applied %v, %v", applied, err)
	}
}

func TestLeaseHeld(t *testing.T) {
	cfg := config(t, "")
	first := cfg
	first.Owner = "first-store"
	s := open(t, first)
	_, err := cassandra.Open(t.Context(), cfg)
	if !errors.Is(err, cassandra.ErrLeaseHeld) {
		t.Fatalf("second Open: got %v, want ErrLeaseHeld", err)
	}
	for _, want := range []string{`"first-store"`, cfg.Keyspace, "until"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("the error %q does not name %s", err, want)
		}
	}
	// Close releases the lease at once.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	open(t, cfg)
}

// TestLeaseLost: once another store took the lease, commits fail with
// ErrLeaseLost; reads go on.
func TestLeaseLost(t *testing.T) {
	cfg := config(t, "")
	s := open(t, cfg)
	steal(t, cfg.Keyspace, "thief")
	t.Cleanup(func() { expireLease(t, cfg.Keyspace) })
	if err := cassandra.Renew(s); !errors.Is(err, cassandra.ErrLeaseLost) || !strings.Contains(err.Error(), `"thief"`) {
		t.Fatalf("Renew: got %v, want ErrLeaseLost naming the thief", err)
	}
	err := s.Commit(t.Context(), &timeline.Batch{Rows: []timeline.Row{{User: id(), Seq: 1}}})
	if !errors.Is(err, cassandra.ErrLeaseLost) {
		t.Fatalf("Commit: got %v, want ErrLeaseLost", err)
	}
	if _, err := s.LastInboxSeq(t.Context(), id()); err != nil {
		t.Fatalf("a read after the lease was lost: %v", err)
	}
}

// TestLeaseTakenBack: a lease that expired while its holder could not renew
// it is taken back if nobody held it since, and lost if somebody did.
func TestLeaseTakenBack(t *testing.T) {
	cfg := config(t, "")
	s := open(t, cfg)
	expireLease(t, cfg.Keyspace)
	if err := cassandra.Renew(s); err != nil {
		t.Fatalf("Renew after the lease expired: %v", err)
	}
	if err := s.Commit(t.Context(), &timeline.Batch{Rows: []timeline.Row{{User: id(), Seq: 1}}}); err != nil {
		t.Fatalf("Commit after the lease was taken back: %v", err)
	}

	// The lease expires, and another store takes it and gives it up again:
	// in one conditional write, so that s's own renewals cannot come in
	// between.
	epoch := leaseEpoch(t, cfg.Keyspace)
	sess := session(t)
	b := sess.NewBatch(gocql.LoggedBatch)
	b.Query("DELETE owner FROM "+cfg.Keyspace+".lease WHERE name = 'writer' IF epoch = ?", epoch)
	b.Query("UPDATE "+cfg.Keyspace+".lease SET epoch = ? WHERE name = 'writer'", epoch+1)
	applied, iter, err := sess.MapExecuteBatchCAS(b, make(map[string]any))
	if err == nil {
		err = iter.Close()
	}
	if err != nil || !applied {
		t.Fatalf("another holder: applied %v, %v", applied, err)
	}
	if err := cassandra.Renew(s); !errors.Is(err, cassandra.ErrLeaseLost) {
		t.Fatalf("Renew after another store held the lease: got %v, want ErrLeaseLost", err)
	}
}

package cluster_test

import (
	"errors"
	"slices"
	"testing"

	"github.com/inboxd/inboxd/cluster"
)

func TestLocal(t *testing.T) {
	const shards = 16
	l := cluster.NewLocal(shards)
	if got := l.Shards(); len(got) != shards || !slices.IsSorted(got) || got[0] != 0 || got[shards-1] != shards-1 {
		t.Fatalf("Shards: %v, want 0 to %d", got, shards-1)
	}
	var last int64
	for s := range shards {
		if _, ok := l.Serving(s); !ok {
			t.Errorf("Serving(%d) = false", s)
		}
		ts, err := l.Timestamp(s)
		if err != nil || ts <= last {
			t.Fatalf("Timestamp(%d) = %d, %v after %d: want a greater one", s, ts, err, last)
		}
		last = ts
		if owner, ok := l.Owner(s); !ok || owner.ID != 0 {
			t.Errorf("Owner(%d) = %+v, %v: want node 0", s, owner, ok)
		}
	}
	if _, ok := l.Serving(shards); ok {
		t.Errorf("Serving(%d) = true for a shard out of range", shards)
	}
	if _, err := l.Timestamp(-1); !errors.Is(err, cluster.ErrNotServing) {
		t.Errorf("Timestamp(-1): %v, want ErrNotServing", err)
	}
}

package cluster

import (
	"math/rand/v2"
	"slices"
	"testing"
)

func TestShardOf(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, tc := range []struct {
		name string
		key  func(i uint64) uint64
	}{
		{"sequential", func(i uint64) uint64 { return i }},
		// Snowflake ids: a millisecond clock above 22 bits of node and step.
		{"snowflake", func(i uint64) uint64 { return (1_700_000_000_000+i/7)<<22 | (i%7)<<12 }},
		{"random", func(uint64) uint64 { return rng.Uint64() }},
	} {
		for _, shards := range []int{7, 256, 1024} {
			const perShard = 2000
			counts := make([]int, shards)
			for i := range uint64(shards * perShard) {
				counts[ShardOf(tc.key(i), shards)]++
			}
			// A fair hash keeps each count within a few standard deviations
			// (about 45 here) of the mean.
			lo, hi := slices.Min(counts), slices.Max(counts)
			if lo < perShard*85/100 || hi > perShard*115/100 {
				t.Errorf("%s keys over %d shards: counts from %d to %d, want within 15%% of %d",
					tc.name, shards, lo, hi, perShard)
			}
		}
	}
}

// nodeIDs returns n node ids, spread as a cluster's ids would be after
// some joins and leaves.
func nodeIDs(n int) []int {
	var ids []int
	for i := range n {
		ids = append(ids, i*7+3)
	}
	return ids
}

func TestAssignBalanced(t *testing.T) {
	for _, shards := range []int{1, 5, 256, 1024} {
		for n := 1; n <= 12; n++ {
			live := nodeIDs(n)
			count := make(map[int]int)
			for s, node := range assign(live, shards) {
				if !slices.Contains(live, node) {
					t.Fatalf("%d shards, %d nodes: shard %d goes to %d, not a live node", shards, n, s, node)
				}
				count[node]++
			}
			lo, hi := shards, 0
			for _, node := range live {
				lo, hi = min(lo, count[node]), max(hi, count[node])
			}
			if hi-lo > 1 {
				t.Errorf("%d shards, %d nodes: from %d to %d shards a node, want within 1", shards, n, lo, hi)
			}
		}
	}
}

// TestAssignStability checks that a node joining or leaving moves about
// the share of shards that has to move, not a reshuffle: bounded loads cost
// some extra moves (up to about half again as many at 256 shards).
func TestAssignStability(t *testing.T) {
	moved := func(a, b []int) int {
		n := 0
		for s := range a {
			if a[s] != b[s] {
				n++
			}
		}
		return n
	}
	for _, shards := range []int{256, 1024} {
		for n := 1; n <= 11; n++ {
			live := nodeIDs(n)
			before := assign(live, shards)
			joined := assign(append(slices.Clone(live), 1000), shards)
			must := (shards + n) / (n + 1)
			if got := moved(before, joined); got < must || got > must*16/10 {
				t.Errorf("%d shards, %d nodes and one joins: %d shards move, want from %d to %d", shards, n, got, must, must*16/10)
			}
			if n == 1 {
				continue
			}
			left := assign(live[1:], shards)
			must = shards / n
			if got := moved(before, left); got < must || got > must*16/10 {
				t.Errorf("%d shards, %d nodes and one leaves: %d shards move, want from %d to %d", shards, n, got, must, must*16/10)
			}
		}
	}
}

func TestTargetsCache(t *testing.T) {
	var c targets
	a := c.of([]int{1, 2}, 16)
	if b := c.of([]int{1, 2}, 16); &a[0] != &b[0] {
		t.Error("the same live set recomputed the targets")
	}
	if b := c.of([]int{1, 2, 3}, 16); slices.Equal(a, b) {
		t.Error("a new live set kept the old targets")
	}
}

func TestClaimable(t *testing.T) {
	nodes := map[int]nodeRow{
		1: {id: 1, incarnation: 3, limit: 500, state: stateLive},
		2: {id: 2, incarnation: 4, limit: 600, state: stateDead},
		3: {id: 3, incarnation: 2, limit: 700, state: stateSettled},
		4: {id: 4, incarnation: 5, limit: 800, state: stateLeaving},
	}
	for _, tc := range []struct {
		name  string
		row   shardRow
		floor int64
		ok    bool
	}{
		{"never owned", shardRow{node: -1}, 0, true},
		{"released", shardRow{node: -1, epoch: 7, floor: 42}, 42, true},
		{"live owner", shardRow{node: 1, incarnation: 3, epoch: 7, floor: 42}, 0, false},
		{"leaving owner", shardRow{node: 4, incarnation: 5, epoch: 7}, 0, false},
		{"dead owner, not settled", shardRow{node: 2, incarnation: 4, epoch: 7}, 0, false},
		{"settled owner", shardRow{node: 3, incarnation: 2, epoch: 7, floor: 42}, 700, true},
		{"settled owner, higher floor", shardRow{node: 3, incarnation: 2, epoch: 7, floor: 900}, 900, true},
		{"superseded incarnation", shardRow{node: 1, incarnation: 2, epoch: 7}, 500, true},
		{"incarnation newer than the nodes read", shardRow{node: 1, incarnation: 4, epoch: 7}, 0, false},
		{"unknown node", shardRow{node: 9, incarnation: 1, epoch: 7}, 0, false},
	} {
		floor, ok := claimable(tc.row, nodes)
		if floor != tc.floor || ok != tc.ok {
			t.Errorf("%s: claimable = %d, %v; want %d, %v", tc.name, floor, ok, tc.floor, tc.ok)
		}
	}
}

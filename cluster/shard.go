package cluster

import (
	"slices"
	"sort"
)

// ShardOf returns the shard of a user or conversation id among shards: a
// 64-bit mix of the key, so that sequential ids spread evenly, modulo the
// shard count. Users and conversations share one shard space.
func ShardOf(key uint64, shards int) int {
	return int(mix64(key) % uint64(shards))
}

// mix64 is the splitmix64 finaliser: a bijection on 64-bit values whose
// every output bit depends on every input bit.
func mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

// weight is node's rendezvous weight for shard. Distinct (shard, node)
// pairs have distinct weights, as mix64 is a bijection, so ties never need
// breaking.
func weight(shard, node int) uint64 {
	return mix64(uint64(shard)<<32 | uint64(uint32(node)))
}

// assign returns the target owner of every shard among the live nodes
// (sorted, non-empty): rendezvous hashing with bounded loads. The
// (shard, node) pairs are taken by descending weight, and a pair is kept
// when its shard has no owner yet and its node is below its quota, so that
// every node ends with ⌊shards/n⌋ or ⌈shards/n⌉ shards. It depends on the
// live set only, so nodes that read the same set agree without talking;
// adding or removing one of n nodes moves a little more than the 1/n of
// the shards that must move (TestAssignStability measures it).
func assign(live []int, shards int) []int {
	type pair struct {
		w           uint64
		shard, node int
	}
	pairs := make([]pair, 0, shards*len(live))
	for s := range shards {
		for _, n := range live {
			pairs = append(pairs, pair{weight(s, n), s, n})
		}
	}
	sort.Slice(pairs, func(i, j int) bool { return pairs[i].w > pairs[j].w })

	target := make([]int, shards)
	for i := range target {
		target[i] = -1
	}
	count := make(map[int]int, len(live))
	quota, extra := shards/len(live), shards%len(live)
	for _, p := range pairs {
		if target[p.shard] >= 0 {
			continue
		}
		switch c := count[p.node]; {
		case c < quota:
		case c == quota && extra > 0:
			extra-- // one of the nodes that take a shard more
		default:
			continue
		}
		target[p.shard] = p.node
		count[p.node]++
	}
	return target
}

// targets caches assign's result for the last live set: recomputing it
// sorts shards × nodes pairs, and the live set rarely changes.
type targets struct {
	live   []int
	shards int
	owner  []int
}

func (t *targets) of(live []int, shards int) []int {
	if t.owner == nil || t.shards != shards || !slices.Equal(t.live, live) {
		t.live, t.shards, t.owner = slices.Clone(live), shards, assign(live, shards)
	}
	return t.owner
}

package inbox

import (
	"container/list"

	"github.com/prometheus/client_golang/prometheus"
)

// groupCache holds the committed state of the groups the committer used
// last, within a budget of estimated bytes, evicting the least recently
// used group first. Only the committer touches it.
type groupCache struct {
	max, used int
	lru       list.List // of *cached, the most recently used in front
	byID      map[uint64]*list.Element
	m         cacheMetrics
}

type cached struct {
	g    *group
	size int
}

type cacheMetrics struct {
	hits, misses, evictions prometheus.Counter
	bytes                   prometheus.Gauge
}

// Estimated memory of a cached group: the group itself, and per member a
// map entry (key, Member, overhead) and its place in the fan-out order.
const (
	groupBytes  = 256
	memberBytes = 160
)

func newGroupCache(maxBytes int, m cacheMetrics) *groupCache {
	return &groupCache{max: maxBytes, byID: make(map[uint64]*list.Element), m: m}
}

func sizeOf(g *group) int {
	return groupBytes + len(g.Name) + len(g.Announcement) + len(g.AvatarURL) + memberBytes*len(g.order)
}

// get returns the cached state of conv and marks it used.
func (c *groupCache) get(conv uint64) (*group, bool) {
	e, ok := c.byID[conv]
	if !ok {
		c.m.misses.Inc()
		return nil, false
	}
	c.m.hits.Inc()
	c.lru.MoveToFront(e)
	return e.Value.(*cached).g, true
}

// put caches g, replacing what was cached of its group, and evicts the
// least recently used groups until the cache fits its budget again. A group
// larger than the whole budget is not kept.
func (c *groupCache) put(g *group) {
	c.remove(g.ID)
	size := sizeOf(g)
	c.byID[g.ID] = c.lru.PushFront(&cached{g: g, size: size})
	c.used += size
	for c.used > c.max {
		c.remove(c.lru.Back().Value.(*cached).g.ID)
		c.m.evictions.Inc()
	}
	c.m.bytes.Set(float64(c.used))
}

// remove forgets conv's group, if cached.
func (c *groupCache) remove(conv uint64) {
	e, ok := c.byID[conv]
	if !ok {
		return
	}
	c.used -= e.Value.(*cached).size
	c.lru.Remove(e)
	delete(c.byID, conv)
	c.m.bytes.Set(float64(c.used))
}

// peek returns the group, if cached, without marking it used.
func (c *groupCache) peek(conv uint64) (*group, bool) {
	e, ok := c.byID[conv]
	if !ok {
		return nil, false
	}
	return e.Value.(*cached).g, true
}

package inbox

import "slices"

// queues holds the commands taken from the intake channel, one FIFO queue
// per user (the caller the command acts for), and hands them out
// round-robin: one command of each user with commands waiting, in turn,
// the turn carrying on from batch to batch. A user with a backlog thus
// delays another user's command by at most one of theirs per turn, never
// by the whole backlog. Only the committer touches it.
type queues struct {
	byUser map[uint64][]*command
	ring   []uint64 // users with commands waiting, in turn order
	next   int      // the ring index whose turn is next
	n      int      // commands held
}

func newQueues() *queues {
	return &queues{byUser: make(map[uint64][]*command)}
}

func (q *queues) len() int { return q.n }

// push appends c to its user's queue; a user new to the ring takes the
// last turn of the current round, after every user already waiting.
func (q *queues) push(c *command) {
	if _, ok := q.byUser[c.user]; !ok {
		q.next = min(q.next, len(q.ring))
		q.ring = append(q.ring, 0)
		copy(q.ring[q.next+1:], q.ring[q.next:])
		q.ring[q.next] = c.user
		q.next++
	}
	q.byUser[c.user] = append(q.byUser[c.user], c)
	q.n++
}

// pop returns the head command of the user whose turn it is, and passes the
// turn on. It returns nil when no command waits.
func (q *queues) pop() *command {
	if q.n == 0 {
		return nil
	}
	if q.next >= len(q.ring) {
		q.next = 0
	}
	u := q.ring[q.next]
	cs := q.byUser[u]
	c := cs[0]
	cs[0] = nil
	if len(cs) == 1 {
		delete(q.byUser, u)
		q.ring = append(q.ring[:q.next], q.ring[q.next+1:]...)
	} else {
		q.byUser[u] = cs[1:]
		q.next++
	}
	q.n--
	return c
}

// ahead returns up to n of the commands waiting, in the order pop would
// return them, and leaves q as it is.
func (q *queues) ahead(n int) []*command {
	n = min(n, q.n)
	out := make([]*command, 0, n)
	ring := slices.Clone(q.ring)
	taken := make(map[uint64]int, len(ring))
	next := q.next
	for len(out) < n {
		if next >= len(ring) {
			next = 0
		}
		u := ring[next]
		i := taken[u]
		out = append(out, q.byUser[u][i])
		taken[u] = i + 1
		if i+1 == len(q.byUser[u]) {
			ring = slices.Delete(ring, next, next+1)
		} else {
			next++
		}
	}
	return out
}

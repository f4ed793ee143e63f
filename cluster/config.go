package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"time"

	"github.com/gocql/gocql"
)

// Defaults of Config.
const (
	DefaultKeyspace = "inboxd"
	DefaultShards   = 256
	DefaultLeaseTTL = 3 * time.Second
	DefaultInterval = 250 * time.Millisecond
	DefaultMaxMoves = 32
)

// MaxNodeID is the highest node id: ids are snowflake node ids (10 bits).
const MaxNodeID = 1023

// PickNodeID as Config.NodeID takes the lowest free id.
const PickNodeID = -1

// Config configures Join. Zero values take the defaults named, except
// NodeID, whose zero is node 0.
type Config struct {
	// Session is the driver session to use; the node does not close it.
	// When nil, the node connects to Hosts with a session of its own.
	Session *gocql.Session
	// Hosts are the contact points, "host" or "host:port".
	Hosts []string
	// Consistency of the reads, and of the commit of the lightweight
	// transactions (default LOCAL_QUORUM, whose transactions run at
	// LOCAL_SERIAL; any other level runs them at SERIAL). A read must see
	// every transaction that completed before it, as QUORUM, LOCAL_QUORUM
	// or, with one replica, ONE do.
	Consistency gocql.Consistency
	// Keyspace holds the nodes, shards and settings tables of
	// deploy/cassandra/schema.cql (default "inboxd").
	Keyspace string
	// Shards is the number of shards, recorded in the keyspace by the first
	// node (default 256); zero means "as recorded", and a value that
	// differs fails Join with ErrShardCount.
	Shards int
	// NodeID is the node id to claim, 0 to MaxNodeID, or PickNodeID for the
	// lowest free one. Join waits for a fixed id that a crashed node still
	// holds until the cluster has declared that node dead.
	NodeID int
	// Addr is the address clients use to reach the node, PeerAddr the one
	// other nodes use: both are published in the nodes table for Owner.
	Addr, PeerAddr string
	// LeaseTTL is how long the cluster waits for a node's renewal before
	// declaring it dead (default 3 s). The node renews every quarter of it
	// and serves for three quarters of it after sending a renewal that
	// succeeded.
	LeaseTTL time.Duration
	// Interval is the period of the balancing round (default 250 ms), to
	// which each round adds a random delay of up to as much again, so that
	// nodes do not read in step.
	Interval time.Duration
	// Timeout bounds each request to Cassandra (default LeaseTTL/4).
	Timeout time.Duration
	// MaxMoves bounds the shards a node hands over in one round (default
	// 32): each is drained first.
	MaxMoves int
	// Logger receives the node's messages (nil: discard).
	Logger *slog.Logger

	// Drain is called before the node hands shard over, from the balancing
	// goroutine, one shard at a time. Serving(shard) is already false and
	// Timestamp(shard) fails; when Drain returns nil, nothing the node
	// wrote for the shard may still be in flight unless its timestamp came
	// from Timestamp(shard) (late writes lose to the next owner's). An
	// error keeps the shard, to be tried again in a later round. Nil: no
	// drain.
	Drain func(ctx context.Context, shard int) error
	// OnNodeDead is called when a node was declared dead, before its shards
	// are given to others: the place to finish what it left (its batch
	// log). It may run more than once for one dead node, on several nodes at
	// once, and must be idempotent. Until it returns nil the dead node's
	// shards stay unserved; it is retried every round. Nil: nothing to do.
	OnNodeDead func(ctx context.Context, dead DeadNode) error
}

// DeadNode is a node incarnation declared dead: none of its writes has a
// timestamp at or above TSLimit.
type DeadNode struct {
	ID          int
	Incarnation int64
	TSLimit     int64
}

var keyspaceName = regexp.MustCompile(`^[a-zA-Z][a-zA-Z0-9_]{0,47}$`)

func (c *Config) setDefaults() error {
	if c.Session == nil && len(c.Hosts) == 0 {
		return errors.New("neither a session nor hosts")
	}
	if c.Keyspace == "" {
		c.Keyspace = DefaultKeyspace
	}
	// The name is spliced into every statement: it must be an identifier.
	if !keyspaceName.MatchString(c.Keyspace) {
		return fmt.Errorf("keyspace %q is not a valid Cassandra identifier", c.Keyspace)
	}
	if c.Consistency == gocql.Any {
		c.Consistency = gocql.LocalQuorum
	}
	if c.Shards < 0 {
		return fmt.Errorf("shards %d is negative", c.Shards)
	}
	if c.NodeID < PickNodeID || c.NodeID > MaxNodeID {
		return fmt.Errorf("node id %d is not from 0 to %d (or %d to pick one)", c.NodeID, MaxNodeID, PickNodeID)
	}
	if c.LeaseTTL <= 0 {
		c.LeaseTTL = DefaultLeaseTTL
	}
	if c.Interval <= 0 {
		c.Interval = DefaultInterval
	}
	if c.Timeout <= 0 {
		c.Timeout = c.LeaseTTL / 4
	}
	if c.MaxMoves <= 0 {
		c.MaxMoves = DefaultMaxMoves
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

// serial is the consistency of the lightweight transactions: local to the
// data centre when the reads are.
func (c *Config) serial() gocql.SerialConsistency {
	if c.Consistency == gocql.LocalQuorum || c.Consistency == gocql.LocalOne {
		return gocql.LocalSerial
	}
	return gocql.Serial
}

func newSession(cfg Config) (*gocql.Session, error) {
	c := gocql.NewCluster(cfg.Hosts...)
	c.Consistency = cfg.Consistency
	c.SerialConsistency = cfg.serial()
	c.Timeout = cfg.Timeout
	c.ConnectTimeout = cfg.Timeout
	c.PoolConfig.HostSelectionPolicy = gocql.TokenAwareHostPolicy(gocql.RoundRobinHostPolicy())
	// A node whose connection broke must find Cassandra again within its
	// lease, not after the driver's default minute.
	c.ReconnectInterval = time.Second
	// The node reads two small tables it never alters: another client's
	// schema change would only make the driver wait for agreement, up to a
	// minute, in a goroutine that outlives Close.
	c.Events.DisableSchemaEvents = true
	return c.CreateSession()
}

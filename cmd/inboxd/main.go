// Command inboxd runs the inboxd group-chat server: the gnet gateway on the
// inbox service, on the embedded Pebble store.
//
// Every flag has an environment variable (INBOXD_ + the flag name in upper
// case, dashes as underscores); a flag given on the command line wins.
// With no flags at all inboxd listens on 127.0.0.1:7600 and keeps its data
// in ./inboxd-data. The admin address (127.0.0.1:7601) serves /healthz,
// /readyz and the Prometheus metrics at /metrics from the moment inboxd
// starts; /readyz answers 200 once the store answers and the gateway serves.
//
// With -store cassandra -cluster it runs as one node of a cluster sharing
// the keyspace (docs/cluster.md; the assembly follows package relay's doc).
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gocql/gocql"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/inboxd/inboxd/api"
	"github.com/inboxd/inboxd/cluster"
	"github.com/inboxd/inboxd/gateway"
	"github.com/inboxd/inboxd/inbox"
	"github.com/inboxd/inboxd/internal/admin"
	"github.com/inboxd/inboxd/internal/httpserve"
	"github.com/inboxd/inboxd/internal/metered"
	"github.com/inboxd/inboxd/peer"
	"github.com/inboxd/inboxd/relay"
	"github.com/inboxd/inboxd/timeline"
	"github.com/inboxd/inboxd/timeline/cassandra"
	"github.com/inboxd/inboxd/timeline/pebble"
	"github.com/inboxd/inboxd/token"
	"github.com/inboxd/inboxd/webhook"
	"github.com/inboxd/inboxd/wire"
)

// options is everything inboxd can be told.
type options struct {
	Listen       string
	WS           string
	WSOrigins    string
	Admin        string
	API          string
	APIKeyFile   string
	Store        string
	Data         string
	Hosts        string
	Keyspace     string
	Consistency  gocql.Consistency
	CreateSchema bool
	SecretFile   string
	Node         int64
	MaxGroupSize int
	// RecallWindow and EditWindow: how long a sender may recall or edit a
	// message; MentionAllAnyone lets every member mention @all.
	RecallWindow     time.Duration
	EditWindow       time.Duration
	MentionAllAnyone bool
	GroupCache       int
	MaxFrame         int
	Workers          int
	WebhookURL       string
	LogLevel         slog.Level
	Limits           limits
	Cluster          clusterOptions
}

// clusterOptions are the flags of a cluster node (-cluster).
type clusterOptions struct {
	On            bool
	PeerListen    string
	Advertise     string
	AdvertisePeer string
	Shards        int
	LeaseTTL      time.Duration
}

// limits are the gateway's bounds on what clients may cost it
// (docs/protocol.md, "Limits").
type limits struct {
	MaxUnauthenticated      int
	MaxUnauthenticatedBytes int
	MaxConnsPerAddr         int
	LimitLoopback           bool
	RateLimit               float64
	RateBurst               int
	UserRateLimit           float64
	UserRateBurst           int
}

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "inboxd:", err)
		os.Exit(1)
	}
}

// parse reads the environment, then args, into options and validates them.
func parse(args []string, getenv func(string) string) (options, error) {
	var o options
	fs := flagSet(&o)
	// Environment variables first, so that flags on the command line win.
	var envErr error
	fs.VisitAll(func(f *flag.Flag) {
		name := envName(f.Name)
		if v := getenv(name); v != "" && envErr == nil {
			if err := f.Value.Set(v); err != nil {
				envErr = fmt.Errorf("%s=%q: %w", name, v, err)
			}
		}
	})
	if envErr != nil {
		return o, envErr
	}
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	return o, o.validate()
}

// envName is the environment variable of a flag: INBOXD_ and the name in
// upper case, dashes as underscores.
func envName(flag string) string {
	return "INBOXD_" + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

// flagSet binds every flag to a field of o.
func flagSet(o *options) *flag.FlagSet {
	fs := flag.NewFlagSet("inboxd", flag.ContinueOnError)
	fs.StringVar(&o.Listen, "listen", "127.0.0.1:7600", "TCP address for client connections")
	fs.StringVar(&o.WS, "ws", "", "address of the WebSocket listener for browsers, e.g. 127.0.0.1:7603, path /ws (empty: off)")
	fs.StringVar(&o.WSOrigins, "ws-origins", "", "browser origins allowed on -ws, comma separated, e.g. https://chat.example.com; * for any (empty: none; clients without Origin are always allowed)")
	fs.StringVar(&o.Admin, "admin", "127.0.0.1:7601", "HTTP address for /healthz, /readyz and /metrics (empty: off)")
	fs.StringVar(&o.API, "api", "", "HTTP address of the server API for application backends, e.g. 127.0.0.1:7602 (empty: off)")
	fs.StringVar(&o.APIKeyFile, "api-key-file", "", "file of the server API's keys, one a line, reread when it changes (required with -api)")
	fs.StringVar(&o.Store, "store", "pebble", "storage backend: pebble (embedded) or cassandra")
	fs.StringVar(&o.Data, "data", "inboxd-data", "data directory of the embedded store (and of the generated token secret)")
	fs.StringVar(&o.Hosts, "cassandra-hosts", "127.0.0.1:9042", "Cassandra contact points, comma separated")
	fs.StringVar(&o.Keyspace, "keyspace", "inboxd", "Cassandra keyspace")
	fs.TextVar(&o.Consistency, "cassandra-consistency", gocql.LocalQuorum, "Cassandra consistency of reads and writes (ONE on a single dev node)")
	fs.BoolVar(&o.CreateSchema, "create-schema", false, "create a missing Cassandra keyspace and tables (development only)")
	fs.StringVar(&o.SecretFile, "secret-file", "", "file holding the token secret (default: <data>/token-secret, generated on first run)")
	fs.Int64Var(&o.Node, "node", 0, "snowflake node id, 0-1023, unique per server (with -cluster: the node id to claim, -1 for the lowest free one)")
	fs.IntVar(&o.MaxGroupSize, "max-group-size", wire.DefaultMaxGroupSize, "maximum members of a group")
	fs.DurationVar(&o.RecallWindow, "recall-window", wire.DefaultRecallWindow, "how long after sending a sender may recall a message (owner and admins: any time)")
	fs.DurationVar(&o.EditWindow, "edit-window", wire.DefaultEditWindow, "how long after sending a sender may edit a message (owner and admins: any time)")
	fs.BoolVar(&o.MentionAllAnyone, "mention-all-anyone", false, "let every member mention @all (default: owner and admins only)")
	fs.IntVar(&o.GroupCache, "group-cache-bytes", 64<<20, "memory, estimated, of the groups the committer keeps loaded")
	fs.IntVar(&o.MaxFrame, "max-frame", wire.DefaultMaxFrame, "maximum frame size in bytes, header included")
	fs.IntVar(&o.Workers, "workers", 512, "goroutines running requests")
	fs.StringVar(&o.WebhookURL, "webhook-url", "", "URL to POST offline-push notices to (empty: off)")
	fs.TextVar(&o.LogLevel, "log-level", slog.LevelInfo, "debug, info, warn or error")
	c := &o.Cluster
	fs.BoolVar(&c.On, "cluster", false, "run as a node of a cluster sharing the Cassandra keyspace (needs -store cassandra)")
	fs.StringVar(&c.PeerListen, "peer-listen", "127.0.0.1:7604", "TCP address for node-to-node connections (with -cluster)")
	fs.StringVar(&c.Advertise, "advertise", "", "client address other nodes redirect this node's users to (default: the -listen address)")
	fs.StringVar(&c.AdvertisePeer, "advertise-peer", "", "node-to-node address other nodes dial (default: the -peer-listen address)")
	fs.IntVar(&c.Shards, "shards", cluster.DefaultShards, "shards of the keyspace, recorded by the cluster's first node; must match it")
	fs.DurationVar(&c.LeaseTTL, "lease-ttl", cluster.DefaultLeaseTTL, "how long the cluster waits for a silent node before taking its shards")
	l := &o.Limits
	fs.IntVar(&l.MaxUnauthenticated, "max-unauthenticated", 10_000, "connections open and not yet authenticated, at most")
	fs.IntVar(&l.MaxUnauthenticatedBytes, "max-unauthenticated-bytes", 16<<20, "bytes of partial frames held for all unauthenticated connections, at most")
	fs.IntVar(&l.MaxConnsPerAddr, "max-conns-per-addr", 1000, "connections from one source IPv4 address or IPv6 /64, at most (loopback exempt unless -limit-loopback)")
	fs.BoolVar(&l.LimitLoopback, "limit-loopback", false, "apply -max-conns-per-addr to loopback addresses too")
	fs.Float64Var(&l.RateLimit, "rate-limit", wire.DefaultRateLimit, "frames per second per connection, whatever their command")
	fs.IntVar(&l.RateBurst, "rate-burst", wire.DefaultRateBurst, "burst of -rate-limit; a connection refused this many frames more is closed")
	fs.Float64Var(&l.UserRateLimit, "user-rate-limit", wire.DefaultUserRateLimit, "SEND, SEND_DIRECT, RECALL, EDIT, SYNC, HISTORY, CONVERSATIONS, PRESENCE, READ_RECEIPTS, GROUP_INFO and the group commands per second per user, across devices")
	fs.IntVar(&l.UserRateBurst, "user-rate-burst", wire.DefaultUserRateBurst, "burst of -user-rate-limit")
	return fs
}

// validate checks what can be checked without opening anything, so that a
// bad value fails at once (and a deployment file can be checked by parse).
func (o options) validate() error {
	switch o.Store {
	case "pebble", "cassandra":
	default:
		return fmt.Errorf("-store %q: want pebble or cassandra", o.Store)
	}
	if o.API != "" && o.APIKeyFile == "" {
		return errors.New("-api needs -api-key-file: every call to the server API carries a key")
	}
	// Port 0 picks a free port for each listener: the same spelling is then
	// not the same address.
	if o.API != "" && !strings.HasSuffix(o.API, ":0") && (o.API == o.Listen || o.API == o.Admin) {
		return fmt.Errorf("-api %s: the server API needs an address of its own, not the client port or the admin address", o.API)
	}
	if c := o.Cluster; c.On {
		if o.Store != "cassandra" {
			return errors.New("-cluster needs -store cassandra: the nodes share its keyspace")
		}
		if o.Node < cluster.PickNodeID || o.Node > cluster.MaxNodeID {
			return fmt.Errorf("-node %d: want 0-1023, or -1 to pick one", o.Node)
		}
		if c.Shards <= 0 || c.LeaseTTL <= 0 {
			return fmt.Errorf("-shards %d, -lease-ttl %v: want more than 0", c.Shards, c.LeaseTTL)
		}
	} else if o.Node < 0 || o.Node > 1023 {
		return fmt.Errorf("-node %d: want 0-1023", o.Node)
	}
	l := o.Limits
	for name, v := range map[string]float64{
		"max-unauthenticated": float64(l.MaxUnauthenticated), "max-unauthenticated-bytes": float64(l.MaxUnauthenticatedBytes),
		"max-conns-per-addr": float64(l.MaxConnsPerAddr), "group-cache-bytes": float64(o.GroupCache), "rate-limit": l.RateLimit, "rate-burst": float64(l.RateBurst),
		"user-rate-limit": l.UserRateLimit, "user-rate-burst": float64(l.UserRateBurst),
	} {
		if v <= 0 {
			return fmt.Errorf("-%s %v: want more than 0", name, v)
		}
	}
	return nil
}

func run(args []string) error {
	o, err := parse(args, os.Getenv)
	if err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: o.LogLevel}))

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	reg, err := newRegistry()
	if err != nil {
		return err
	}
	// The admin server comes first, so that a probe gets "alive, not ready"
	// while the store opens (Cassandra can take a while).
	var ready readiness
	adminAddr := "off"
	if o.Admin != "" {
		srv, err := httpserve.Listen(o.Admin, admin.Handler(admin.Config{Gatherer: reg, Checks: ready.checks(), Logger: log}), log.With("server", "admin"))
		if err != nil {
			return err
		}
		defer srv.Close()
		adminAddr = srv.Addr().String()
	}

	// A cluster node joins before its store opens: the store takes its
	// write timestamps from the node. The node is closed last, so that
	// nothing it fences outlives it.
	var cn *clusterNode
	if o.Cluster.On {
		if cn, err = joinCluster(ctx, o, log); err != nil {
			return err
		}
		defer cn.node.Close()
		o.Node = int64(cn.node.Self().ID)
	}
	raw, err := openStore(ctx, o, cn, log)
	if err != nil {
		return err
	}
	defer raw.Close()
	store, err := metered.Wrap(raw, metered.Config{Backend: o.Store, Registerer: reg})
	if err != nil {
		return err
	}
	ready.setStore(raw, o.Node) // probes do not count as traffic in the store metrics
	warnIfShared(o.Data, log)
	secret, err := loadSecret(o, log)
	if err != nil {
		return err
	}
	// Bans and revocations hold whether or not the API is on: the gateway
	// checks them at every AUTH.
	moderation, err := api.LoadModeration(ctx, store)
	if err != nil {
		return err
	}
	// One process is the whole cluster unless -cluster: it serves every
	// user and never redirects.
	var own cluster.Ownership = cluster.NewLocal(cluster.DefaultShards)
	var rel *relay.Relay
	if cn != nil {
		cn.settle.Store(raw.(*cassandra.Store))
		own = cn.node
		pool, err := peer.NewPool(peer.PoolConfig{Node: uint32(o.Node), Secret: secret, Registerer: reg})
		if err != nil {
			return err
		}
		defer pool.Close()
		if rel, err = relay.New(relay.Config{Ownership: cn.node, Pool: pool, Registerer: reg}); err != nil {
			return err
		}
	}
	l := o.Limits
	gcfg := gateway.Config{
		Addr: o.Listen, WSAddr: o.WS, WSOrigins: splitList(o.WSOrigins), Secret: secret, Workers: o.Workers, MaxFrame: o.MaxFrame, Logger: log, Registerer: reg,
		MaxUnauthenticated: l.MaxUnauthenticated, MaxUnauthenticatedBytes: l.MaxUnauthenticatedBytes,
		MaxConnsPerAddr: l.MaxConnsPerAddr, LimitLoopback: l.LimitLoopback,
		RateLimit: l.RateLimit, RateBurst: l.RateBurst, UserRateLimit: l.UserRateLimit, UserRateBurst: l.UserRateBurst,
		Ownership: own,
		Gate:      moderation,
	}
	if rel != nil {
		gcfg.Forwarder, gcfg.Peers = rel, rel
	}
	gw, err := gateway.New(gcfg)
	if err != nil {
		return err
	}
	// A page of messages stops a little short of the frame limit: room for
	// the header and the response's other fields.
	icfg := inbox.Config{Store: store, Node: o.Node, MaxGroupSize: o.MaxGroupSize, GroupCacheBytes: o.GroupCache,
		MaxReadBytes: max(o.MaxFrame-64, 1), RecallWindow: o.RecallWindow, EditWindow: o.EditWindow,
		MentionAllAnyone: o.MentionAllAnyone,
		Notifier:         gw, Logger: log, Registerer: reg}
	if rel != nil {
		icfg.Ownership, icfg.Deliverer = cn.node, rel
	}
	if o.WebhookURL != "" {
		hook, err := webhook.New(webhook.Config{URL: o.WebhookURL, Logger: log, Registerer: reg})
		if err != nil {
			return err
		}
		defer hook.Close(context.Background())
		icfg.OfflinePusher = hook
	}
	// The key file is read before the gateway starts: a bad one stops
	// inboxd before it takes a connection.
	var keys *api.Keys
	if o.API != "" {
		if keys, err = api.NewKeys(o.APIKeyFile); err != nil {
			return err
		}
	}
	svc, err := inbox.New(ctx, icfg)
	if err != nil {
		return err
	}
	defer svc.Close()
	var peerSrv *peer.Server
	if cn != nil {
		cn.svc.Store(svc)
		// The bans and revocations other nodes' APIs set: announced by
		// them, and re-read every api.SyncInterval for those missed.
		follower, err := api.NewFollower(api.FollowerConfig{Moderation: moderation, Sessions: gw, Logger: log})
		if err != nil {
			return err
		}
		followCtx, stopFollowing := context.WithCancel(ctx)
		following := make(chan struct{})
		go func() {
			defer close(following)
			follower.Run(followCtx)
		}()
		defer func() {
			stopFollowing()
			<-following
		}()
		peerSrv, err = peer.Listen(peer.ServerConfig{Addr: o.Cluster.PeerListen, Node: uint32(o.Node), Secret: secret, Logger: log, Registerer: reg},
			relay.WithRestrictions(follower, relay.Handler(svc, gw)))
		if err != nil {
			return err
		}
		defer peerSrv.Close()
	}

	served := make(chan error, 1)
	go func() { served <- gw.Serve(svc) }()
	if gw.Addr() == nil {
		return <-served
	}
	ready.setGateway(gw)
	apiAddr := "off"
	if keys != nil {
		acfg := api.Config{Keys: keys, Service: svc, Sessions: gw, Moderation: moderation, Node: o.Node, Logger: log, Registerer: reg}
		if rel != nil {
			acfg.Peers = rel
		}
		h, err := api.Handler(acfg)
		if err == nil {
			var srv *httpserve.Server
			if srv, err = httpserve.Listen(o.API, h, log.With("server", "api")); err == nil {
				apiAddr = srv.Addr().String()
				// Deferred after the gateway's start, so run before the
				// service closes: calls in flight finish first.
				defer srv.Shutdown(context.Background())
			}
		}
		if err != nil {
			gw.Shutdown(context.Background())
			<-served
			return err
		}
	}
	wsAddr := "off"
	if a := gw.WSAddr(); a != nil {
		wsAddr = a.String()
	}
	log.Info("inboxd: ready", "listen", gw.Addr(), "admin", adminAddr, "api", apiAddr, "ws", wsAddr, "store", o.Store, "data", o.Data, "node", o.Node)

	var lost <-chan struct{} // nil, never ready, unless -cluster
	if cn != nil {
		lost = cn.node.Lost()
	}
	var lostErr error
	select {
	case err := <-served:
		return err
	case <-ctx.Done():
	case <-lost:
		// A node whose lease ended serves nothing more; a supervisor
		// restarts it, and it joins anew.
		lostErr = errors.New("cluster: this node's lease was lost")
		log.Error("inboxd: " + lostErr.Error())
	}
	log.Info("inboxd: shutting down")
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := gw.Shutdown(shutdownCtx); err != nil {
		log.Error("inboxd: gateway shutdown", "err", err)
	}
	err = <-served
	if cn != nil {
		// The shards are handed over while the service and the peer server
		// still run: Drain finishes the batches in flight, and the records
		// owed to the shards are still delivered until they move. The
		// deferred closes then run in order: peer server, service, pool,
		// store, node.
		if lerr := cn.node.Leave(shutdownCtx); lerr != nil && lostErr == nil {
			log.Error("inboxd: leave the cluster", "err", lerr)
		}
		peerSrv.Close()
	}
	return errors.Join(err, lostErr)
}

// clusterNode is this process's membership of the cluster, and the two
// callbacks the cluster makes into parts opened after it joined.
type clusterNode struct {
	node *cluster.Node
	// settle is the store, set once open: until then a dead node is not
	// settled here (another node may do it, or a later round).
	settle atomic.Pointer[cassandra.Store]
	// svc is the inbox service, set once started: before it nothing was
	// written for a shard, so there is nothing to drain.
	svc atomic.Pointer[inbox.Service]
}

// joinCluster joins the cluster on o's keyspace. With -create-schema it
// creates the keyspace first: the nodes table must exist to join.
func joinCluster(ctx context.Context, o options, log *slog.Logger) (*clusterNode, error) {
	if o.CreateSchema {
		if err := cassandra.CreateSchema(ctx, cassandraConfig(o)); err != nil {
			return nil, err
		}
	}
	c := o.Cluster
	addr, peerAddr := c.Advertise, c.AdvertisePeer
	if addr == "" {
		addr = o.Listen
	}
	if peerAddr == "" {
		peerAddr = c.PeerListen
	}
	cn := &clusterNode{}
	node, err := cluster.Join(ctx, cluster.Config{
		Hosts: strings.Split(o.Hosts, ","), Keyspace: o.Keyspace, Consistency: o.Consistency,
		Shards: c.Shards, NodeID: int(o.Node), Addr: addr, PeerAddr: peerAddr, LeaseTTL: c.LeaseTTL,
		Logger: log,
		Drain: func(ctx context.Context, shard int) error {
			if svc := cn.svc.Load(); svc != nil {
				return svc.Drain(ctx, shard)
			}
			return nil
		},
		OnNodeDead: func(ctx context.Context, dead cluster.DeadNode) error {
			s := cn.settle.Load()
			if s == nil {
				return errors.New("inboxd: the store is not open yet")
			}
			return s.SettleNode(ctx, dead.ID, dead.TSLimit)
		},
	})
	if err != nil {
		return nil, err
	}
	cn.node = node
	log.Info("inboxd: joined the cluster", "node", node.Self().ID, "shards", node.ShardCount())
	return cn, nil
}

// openStore opens the configured backend.
func openStore(ctx context.Context, o options, cn *clusterNode, log *slog.Logger) (timeline.Store, error) {
	switch o.Store {
	case "pebble":
		return pebble.Open(pebble.Options{Dir: o.Data, Logger: log})
	case "cassandra":
		if err := os.MkdirAll(o.Data, 0o700); err != nil { // the token secret lives there
			return nil, err
		}
		cfg := cassandraConfig(o)
		cfg.Logger = log
		if cn != nil {
			cfg.Fence, cfg.NodeID = cn.node, cn.node.Self().ID
		}
		return cassandra.Open(ctx, cfg)
	}
	return nil, fmt.Errorf("-store %q: want pebble or cassandra", o.Store)
}

// cassandraConfig is the store's configuration from o.
func cassandraConfig(o options) cassandra.Config {
	return cassandra.Config{
		Hosts: strings.Split(o.Hosts, ","), Keyspace: o.Keyspace, Consistency: o.Consistency,
		CreateSchema: o.CreateSchema,
	}
}

// warnIfShared warns when other local users can enter or read the data
// directory: it holds every message and the token secret. inboxd creates it
// 0700; an older or hand-made one is the operator's to narrow.
func warnIfShared(dir string, log *slog.Logger) {
	fi, err := os.Stat(dir)
	if err != nil {
		log.Warn("inboxd: cannot check the data directory's mode", "data", dir, "err", err)
		return
	}
	if fi.Mode().Perm()&0o077 != 0 {
		log.Warn("inboxd: the data directory is open to other users: chmod 700 it", "data", dir, "mode", fi.Mode().Perm().String())
	}
}

// loadSecret reads the token secret, generating one into the data directory
// on first run: there is no built-in default secret.
func loadSecret(o options, log *slog.Logger) ([]byte, error) {
	path := o.SecretFile
	generate := path == ""
	if generate {
		path = filepath.Join(o.Data, "token-secret")
	}
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) && generate {
		raw := make([]byte, 32)
		rand.Read(raw)
		b = []byte(hex.EncodeToString(raw) + "\n")
		if err := os.WriteFile(path, b, 0o600); err != nil {
			return nil, fmt.Errorf("write token secret: %w", err)
		}
		log.Warn("inboxd: generated a token secret; issue tokens with it (inboxctl token --secret-file)", "path", path)
	} else if err != nil {
		return nil, fmt.Errorf("read token secret: %w", err)
	}
	secret, err := token.ParseSecret(b)
	if err != nil {
		return nil, fmt.Errorf("token secret in %s: %w", path, err)
	}
	return secret, nil
}

// newRegistry returns the registry every package registers its metrics
// with, holding the Go runtime, process and build-info collectors.
func newRegistry() (*prometheus.Registry, error) {
	reg := prometheus.NewRegistry()
	for _, c := range []prometheus.Collector{
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		collectors.NewBuildInfoCollector(),
	} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("metrics registry: %w", err)
		}
	}
	return reg, nil
}

// readiness is what /readyz looks at. The store and the gateway are set as
// run starts them; until then the check says what is missing.
type readiness struct {
	mu    sync.Mutex
	store timeline.Store
	node  int64 // whose clock record the store check reads
	gw    *gateway.Server
}

func (r *readiness) setStore(s timeline.Store, node int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.store, r.node = s, node
}

func (r *readiness) setGateway(gw *gateway.Server) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.gw = gw
}

// checks are /readyz's: the store answers a cheap read (this node's clock
// record, one key) and the gateway takes connections.
func (r *readiness) checks() []admin.Check {
	return []admin.Check{
		{Name: "store", Run: func(ctx context.Context) error {
			r.mu.Lock()
			store, node := r.store, r.node
			r.mu.Unlock()
			if store == nil {
				return errors.New("not open yet")
			}
			if _, err := store.Clock(ctx, node); err != nil {
				return fmt.Errorf("read: %w", err)
			}
			return nil
		}},
		{Name: "gateway", Run: func(context.Context) error {
			r.mu.Lock()
			gw := r.gw
			r.mu.Unlock()
			if gw == nil || !gw.Serving() {
				return errors.New("not accepting connections")
			}
			return nil
		}},
	}
}

// splitList is the items of a comma-separated flag, white space trimmed,
// empty ones dropped.
func splitList(s string) []string {
	var items []string
	for item := range strings.SplitSeq(s, ",") {
		if item = strings.TrimSpace(item); item != "" {
			items = append(items, item)
		}
	}
	return items
}

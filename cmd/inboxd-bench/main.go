// Command inboxd-bench drives simulated users against inboxd over the real
// protocol, measures throughput and latency, and verifies at the end that
// every device holds exactly the messages sent to its groups.
//
// With no -addr it builds and starts inboxd itself (embedded store, or
// -store cassandra), so that it can measure the server's CPU and memory and,
// with -chaos N, kill it with SIGKILL N times during the run.
//
//	go run ./cmd/inboxd-bench -preset smoke
//	go run ./cmd/inboxd-bench -preset groups100 -duration 30s -json
//	go run ./cmd/inboxd-bench -addr 127.0.0.1:7600 -secret-file inboxd-data/token-secret -users 200 -groups 20x10
//
// With -nodes N (and -store cassandra) it starts N inboxd processes as the
// nodes of a cluster on one keyspace and spreads the devices over them;
// -chaos K then kills -9 a random node K times, one after the other, each
// restarted once its users are served again, and -preset rolling stops each
// node with SIGTERM in turn. The report gives each stop's failover or
// handover time:
//
//	go run ./cmd/inboxd-bench -nodes 3 -store cassandra -keyspace chaos_bench -drop-keyspace -chaos 3
//	go run ./cmd/inboxd-bench -preset rolling -keyspace rolling_bench -drop-keyspace
//
// With -compare N it runs inboxd and the bare baseline alternately on the
// same load, N times each (no run starts after -compare-max), and prints
// each pair's figures and ratios with their median and spread:
//
//	go run ./cmd/inboxd-bench -preset groups100 -duration 15s -compare 3
//
// With -abuse SHAPE it runs an abuse shape of docs/benchmarks.md instead
// (slow-auth: connections that send most of an AUTH frame and wait; flood:
// authenticated connections pipelining unknown commands) beside one
// well-behaved client, and prints its heartbeat latency and the server's
// memory as JSON:
//
//	go run ./cmd/inboxd-bench -abuse slow-auth -abuse-conns 3000
//	go run ./cmd/inboxd-bench -abuse flood -abuse-conns 4
//
// The exit status is 0 when the run verified clean, 1 when the verifier
// found a violation or a send was never answered, 2 when the run could not
// be made.
package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/inboxd/inboxd/bench"
)

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	if len(args) == 4 && args[0] == "-bare-server" && args[2] == "-secret-file" {
		return serveBare(args[1], args[3])
	}
	if len(args) > 0 {
		if name := strings.TrimLeft(args[0], "-"); name == "abuse" || strings.HasPrefix(name, "abuse=") {
			return abuse(args)
		}
	}
	cfg, opts, err := parse(args)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "inboxd-bench:", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if opts.compare.Pairs > 0 {
		return compare(ctx, opts, presetOf(args))
	}
	asJSON := opts.json
	rep, err := bench.Run(ctx, cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "inboxd-bench:", err)
		return 2
	}
	rep.Preset = presetOf(args)
	if asJSON {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		enc.Encode(rep)
	} else {
		rep.WriteTable(os.Stdout)
	}
	if !rep.OK() {
		return 1
	}
	return 0
}

func presetOf(args []string) string {
	for i, a := range args {
		if (a == "-preset" || a == "--preset") && i+1 < len(args) {
			return args[i+1]
		}
		if v, ok := strings.CutPrefix(strings.TrimLeft(a, "-"), "preset="); ok {
			return v
		}
	}
	return "smoke"
}

// options are the flags that are not the run's Config.
type options struct {
	json    bool
	compare bench.CompareConfig // Pairs > 0: compare with the baseline
}

// parse reads the preset first, then lets every other flag override it.
func parse(args []string) (bench.Config, options, error) {
	var opts options
	preset := presetOf(args)
	cfg, err := bench.Preset(preset)
	if err != nil {
		return cfg, opts, err
	}
	fs := flag.NewFlagSet("inboxd-bench", flag.ContinueOnError)
	fs.String("preset", preset, "starting configuration: "+strings.Join(bench.PresetNames(), ", "))
	fs.StringVar(&cfg.Addr, "addr", "", "a running inboxd, or a comma-separated list of a cluster's nodes (empty: build and start one)")
	secretFile := fs.String("secret-file", "", "token secret of the server at -addr")
	fs.IntVar(&cfg.Users, "users", cfg.Users, "simulated users")
	fs.IntVar(&cfg.Devices, "devices", cfg.Devices, "devices (connections) per user")
	groups := fs.String("groups", bench.FormatGroups(cfg.Groups), "group mix: COUNTxSIZE,… (members drawn at random, owner included)")
	fs.IntVar(&cfg.DirectPairs, "direct", cfg.DirectPairs, "direct conversations (pairs of users drawn at random) in the send mix beside the groups, sent to by SEND_DIRECT")
	fs.Float64Var(&cfg.Rate, "rate", cfg.Rate, "sends per second")
	fs.DurationVar(&cfg.Duration, "duration", cfg.Duration, "length of the load phase")
	fs.IntVar(&cfg.Messages, "messages", 0, "at most this many sends (0: rate × duration)")
	fs.IntVar(&cfg.BodySize, "body", cfg.BodySize, "message body bytes")
	fs.Float64Var(&cfg.Churn, "churn", cfg.Churn, "device disconnects per second (each back within -churn-down)")
	fs.DurationVar(&cfg.ChurnDown, "churn-down", cfg.ChurnDown, "longest time a churned device stays away")
	fs.Float64Var(&cfg.OfflineUsers, "offline", cfg.OfflineUsers, "fraction of users offline from a fifth of the run to its end")
	fs.BoolVar(&cfg.Storm, "storm", cfg.Storm, "every device reconnects at once, halfway")
	fs.IntVar(&cfg.Chaos, "chaos", cfg.Chaos, "kill -9 and restart the started server this many times (with -nodes: a random node each time, one after the other)")
	fs.BoolVar(&cfg.Rolling, "rolling", cfg.Rolling, "with -nodes: SIGTERM and restart each node in turn under load")
	fs.IntVar(&cfg.Server.Nodes, "nodes", cfg.Server.Nodes, "inboxd processes to start; more than one run as a cluster on one Cassandra keyspace (-store cassandra)")
	fs.BoolVar(&cfg.Server.Cluster, "cluster", cfg.Server.Cluster, "run the started inboxd as cluster nodes even with -nodes 1")
	fs.DurationVar(&cfg.Server.LeaseTTL, "lease-ttl", cfg.Server.LeaseTTL, "-lease-ttl of the cluster nodes (0: inboxd's default)")
	fs.Float64Var(&cfg.MarkReadRate, "markread", cfg.MarkReadRate, "MARK_READ requests per second")
	features := fs.String("features", cfg.Features.String(), "shares of the sends that recall, edit or mention: recall=S,edit=S,mention=S")
	fs.StringVar(&cfg.Server.Store, "store", cmp.Or(cfg.Server.Store, "pebble"), "store of the started server: pebble or cassandra")
	fs.StringVar(&cfg.Server.CassandraHosts, "cassandra-hosts", "127.0.0.1:9042", "with -store cassandra")
	fs.StringVar(&cfg.Server.Keyspace, "keyspace", "inboxd_bench", "with -store cassandra: created if missing")
	fs.BoolVar(&cfg.Server.WS, "ws", false, "the devices connect over WebSocket, to the started server's -ws listener (or give -addr a ws:// URL)")
	fs.BoolVar(&cfg.Server.DropKeyspace, "drop-keyspace", false, "with -store cassandra: drop the keyspace at the end")
	fs.StringVar(&cfg.Server.Binary, "server-bin", "", "inboxd binary to start (empty: go build ./cmd/inboxd)")
	fs.StringVar(&cfg.Server.Dir, "dir", "", "directory of the started server's data and log (empty: a temporary one, removed)")
	fs.DurationVar(&cfg.DrainTimeout, "drain", time.Minute, "how long to wait for unanswered sends after the load")
	fs.Uint64Var(&cfg.Seed, "seed", 0, "random seed (0: from the clock)")
	baseline := fs.Bool("baseline", false, "drive the bare baseline server (bench.ServeBare) instead of inboxd: no storage, nothing verified")
	fs.IntVar(&opts.compare.Pairs, "compare", 0, "run inboxd and the bare baseline alternately on this load, this many times each, and report the ratios")
	fs.DurationVar(&opts.compare.MaxTime, "compare-max", 30*time.Minute, "with -compare: start no run after this long")
	fs.BoolVar(&opts.json, "json", false, "print the report as JSON")
	verbose := fs.Bool("v", false, "log what the generator does (to stderr)")
	if err := fs.Parse(args); err != nil {
		return cfg, opts, err
	}
	if fs.NArg() > 0 {
		return cfg, opts, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if opts.compare.Pairs < 0 || opts.compare.Pairs > 0 && (*baseline || cfg.Addr != "") {
		return cfg, opts, errors.New("-compare takes a positive count, and starts both servers itself: no -baseline, no -addr")
	}
	// A preset's kills need the server the bench starts: against -addr they
	// are dropped unless asked for (which then fails, saying why).
	chaosSet := false
	fs.Visit(func(f *flag.Flag) { chaosSet = chaosSet || f.Name == "chaos" })
	if cfg.Addr != "" && !chaosSet {
		cfg.Chaos = 0
	}
	gs, err := bench.ParseGroups(*groups)
	if err != nil {
		return cfg, opts, err
	}
	if cfg.Features, err = bench.ParseFeatures(*features); err != nil {
		return cfg, opts, err
	}
	cfg.Groups = gs
	if *baseline || opts.compare.Pairs > 0 {
		self, err := os.Executable()
		if err != nil {
			return cfg, opts, err
		}
		opts.compare.BareBinary = self
		if *baseline {
			cfg.Server.Bare, cfg.Server.Binary = true, self
		}
		cfg.Churn, cfg.OfflineUsers, cfg.Storm, cfg.Chaos, cfg.DirectPairs = 0, 0, false, 0, 0
		cfg.Features = bench.Features{} // the baseline knows plain messages to groups only
	}
	if (cfg.Chaos > 0 || cfg.Rolling) && cfg.Server.Store == "cassandra" && cfg.Server.Keyspace == "inboxd" {
		return cfg, opts, errors.New("refusing to kill a server on the default keyspace: pick -keyspace")
	}
	if *secretFile != "" {
		b, err := os.ReadFile(*secretFile)
		if err != nil {
			return cfg, opts, err
		}
		cfg.Secret = []byte(strings.TrimSpace(string(b)))
	}
	level := slog.LevelWarn
	if *verbose {
		level = slog.LevelInfo
	}
	cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	if st, err := os.Stdout.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 && !opts.json {
		cfg.Progress = os.Stderr
	}
	opts.compare.Load = cfg
	return cfg, opts, nil
}

// compare runs -compare: inboxd and the baseline alternately, and prints the
// ratios.
func compare(ctx context.Context, opts options, preset string) int {
	rep, err := bench.Compare(ctx, opts.compare)
	if err != nil {
		fmt.Fprintln(os.Stderr, "inboxd-bench:", err)
		if len(rep.Pairs) == 0 {
			return 2
		}
	}
	rep.Preset = preset
	if opts.json {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		enc.Encode(rep)
	} else {
		rep.WriteTable(os.Stdout)
	}
	if err != nil || !rep.OK() {
		return 1
	}
	return 0
}

// abuse runs an abuse shape (-abuse first among the arguments).
func abuse(args []string) int {
	var cfg bench.AbuseConfig
	fs := flag.NewFlagSet("inboxd-bench -abuse", flag.ContinueOnError)
	fs.StringVar(&cfg.Shape, "abuse", "", "abuse shape: "+bench.ShapeSlowAuth+" or "+bench.ShapeFlood)
	fs.IntVar(&cfg.Conns, "abuse-conns", 0, "abusive connections (0: 3000 slow-auth, 4 flood)")
	fs.IntVar(&cfg.FrameSize, "abuse-frame", 0, "slow-auth: frame size the AUTH header declares (0: 262144)")
	fs.BoolVar(&cfg.NoReconnect, "no-reconnect", false, "flood: a connection the server closes stays closed")
	fs.IntVar(&cfg.Heartbeats, "heartbeats", 0, "heartbeats of the good client (0: 300, one every 20 ms)")
	fs.StringVar(&cfg.Server.Binary, "server-bin", "", "inboxd binary to start (empty: go build ./cmd/inboxd)")
	fs.StringVar(&cfg.Server.Dir, "dir", "", "directory of the started server's data and log (empty: a temporary one, removed)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	rep, err := bench.Abuse(ctx, cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "inboxd-bench:", err)
		return 2
	}
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	enc.Encode(rep)
	return 0
}

// serveBare runs the baseline server as Run's child (-baseline).
func serveBare(addr, secretFile string) int {
	b, err := os.ReadFile(secretFile)
	if err != nil {
		fmt.Fprintln(os.Stderr, "inboxd-bench:", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if err := bench.ServeBare(ctx, addr, []byte(strings.TrimSpace(string(b))), log); err != nil {
		fmt.Fprintln(os.Stderr, "inboxd-bench:", err)
		return 2
	}
	return 0
}

package bench

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/inboxd/inboxd/internal/cassandratest"
)

// TestClusterChaos is the cluster's chaos smoke (scripts/test runs it with
// its Cassandra node): the smoke preset against three inboxd cluster
// processes on one keyspace, one of them killed with SIGKILL and restarted,
// then each stopped with SIGTERM in turn and restarted, all under load.
// It asserts on the verifier's verdict and that every stop's users were
// served again — never on speed; the times are logged.
func TestClusterChaos(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs three inboxd processes")
	}
	hosts := cassandratest.Hosts(t)
	cfg, err := Preset("smoke")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Duration = 8 * time.Second
	cfg.Chaos, cfg.Rolling = 1, true
	// The run's own log (stops, restarts, waits) is shown if the test fails.
	var log syncBuffer
	cfg.Logger = slog.New(slog.NewTextHandler(&log, &slog.HandlerOptions{Level: slog.LevelInfo}))
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("bench log:\n%s", log.String())
		}
	})
	cfg.Server = ServerConfig{Dir: t.TempDir(), Store: "cassandra", Nodes: 3,
		CassandraHosts: strings.Join(hosts, ","), Keyspace: cassandratest.NewRun("bench").Prefix, DropKeyspace: true}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	start := time.Now()
	rep, err := Run(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("seed %d, %v: %d acked, %d pushed, %d synced, %d reconnects, %d retries, %d duplicate acks; errors %v",
		rep.Seed, time.Since(start).Round(time.Second), rep.Acked, rep.Pushed, rep.Synced, rep.Reconnects, rep.Retries, rep.DuplicateAcks, rep.Errors)
	for _, o := range rep.Outages {
		t.Logf("SIG%s of %s (%d users): a user of it served again after %.2fs", o.Signal, o.Node, o.Users, o.Seconds)
	}
	for _, v := range rep.Violations {
		t.Error(v)
	}
	stops := map[string]int{}
	for _, o := range rep.Outages {
		if o.Users > 0 && o.Seconds < 0 {
			t.Errorf("SIG%s of %s: none of its %d users served again", o.Signal, o.Node, o.Users)
		}
		stops[o.Signal]++
	}
	switch {
	case !rep.Verified || rep.VerifyError != "":
		t.Fatalf("not verified: %s", rep.VerifyError)
	case rep.ServerKills != 1 || stops["KILL"] != 1 || stops["TERM"] != 3:
		t.Fatalf("%d kills, stops %v: want one kill and three SIGTERMs", rep.ServerKills, stops)
	case rep.Acked == 0:
		t.Fatal("nothing was acknowledged")
	case rep.CheckedDevices != cfg.Users*cfg.Devices:
		t.Fatalf("%d device streams checked, want %d", rep.CheckedDevices, cfg.Users*cfg.Devices)
	case !rep.OK():
		t.Fatalf("verdict not clean: %d violations (+%d), %d unresolved", len(rep.Violations), rep.MoreViolations, rep.Unresolved)
	}
}

func TestValidateCluster(t *testing.T) {
	for name, c := range map[string]Config{
		"nodes on pebble":         {Server: ServerConfig{Nodes: 3}},
		"rolling of one node":     {Rolling: true, Server: ServerConfig{Store: "cassandra"}},
		"rolling of a given addr": {Rolling: true, Addr: "127.0.0.1:1", Secret: []byte("s"), Server: ServerConfig{Store: "cassandra", Nodes: 3}},
	} {
		c.Users, c.Devices, c.Groups, c.Rate, c.Duration = 2, 1, []GroupSpec{{1, 2}}, 1, time.Second
		if err := c.validate(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	c := Config{Users: 2, Devices: 1, Groups: []GroupSpec{{1, 2}}, Rate: 10, Duration: time.Second, Chaos: 2, Rolling: true, Server: ServerConfig{Store: "cassandra", Nodes: 3}}
	if err := c.validate(); err != nil {
		t.Fatal(err)
	}
	// The load goes on while the five stopped nodes come back.
	if want := int(10*(time.Second+5*outageBound).Seconds()) + 1; c.Messages != want {
		t.Errorf("%d messages, want %d", c.Messages, want)
	}
}

// syncBuffer is a bytes.Buffer safe for the run's goroutines to log into.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

package main

import (
	"bufio"
	"bytes"
	"context"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gocql/gocql"

	"github.com/inboxd/inboxd/internal/cassandratest"
	"github.com/inboxd/inboxd/token"
	"github.com/inboxd/inboxd/wire"
	"github.com/inboxd/inboxd/wire/wirepb"
)

func TestParse(t *testing.T) {
	env := map[string]string{"INBOXD_LISTEN": "127.0.0.1:9000", "INBOXD_NODE": "7"}
	getenv := func(k string) string { return env[k] }
	tests := []struct {
		args    []string
		listen  string
		node    int64
		wantErr bool
	}{
		{nil, "127.0.0.1:9000", 7, false},
		{[]string{"-listen", ":1"}, ":1", 7, false}, // the flag wins
		{[]string{"-node", "x"}, "", 0, true},
		{[]string{"-group-cache-bytes", "0"}, "", 0, true},
		{[]string{"stray"}, "", 0, true},
		{[]string{"-rate-limit", "0"}, "", 0, true},
		{[]string{"-max-conns-per-addr", "-1"}, "", 0, true},
		{[]string{"-api", "127.0.0.1:7602"}, "", 0, true},                       // no key file
		{[]string{"-api", "127.0.0.1:9000", "-api-key-file", "k"}, "", 0, true}, // the client port
		{[]string{"-api", "127.0.0.1:7601", "-api-key-file", "k"}, "", 0, true}, // the admin port
		{[]string{"-api", "127.0.0.1:7602", "-api-key-file", "k"}, "127.0.0.1:9000", 7, false},
		{[]string{"-node", "-1"}, "", 0, true}, // picking is a cluster's
		{[]string{"-cluster"}, "", 0, true},    // on the embedded store
		{[]string{"-cluster", "-store", "cassandra", "-node", "-2"}, "", 0, true},
		{[]string{"-cluster", "-store", "cassandra", "-shards", "0"}, "", 0, true},
		{[]string{"-cluster", "-store", "cassandra", "-lease-ttl", "0s"}, "", 0, true},
		{[]string{"-cluster", "-store", "cassandra", "-node", "-1"}, "127.0.0.1:9000", -1, false},
	}
	for _, tt := range tests {
		o, err := parse(tt.args, getenv)
		if (err != nil) != tt.wantErr {
			t.Fatalf("parse(%q): %v", tt.args, err)
		}
		if err == nil && (o.Listen != tt.listen || o.Node != tt.node || o.Data != "inboxd-data") {
			t.Fatalf("parse(%q) = %+v", tt.args, o)
		}
	}
	if _, err := parse(nil, func(k string) string { return map[string]string{"INBOXD_NODE": "z"}[k] }); err == nil {
		t.Fatal("bad environment value accepted")
	}
}

// TestParseTextFlags checks the flags parsed once into their types, from
// the command line and from the environment.
func TestParseTextFlags(t *testing.T) {
	tests := []struct {
		args        []string
		env         map[string]string
		level       slog.Level
		consistency gocql.Consistency
		wantErr     bool
	}{
		{nil, nil, slog.LevelInfo, gocql.LocalQuorum, false},
		{[]string{"-log-level", "debug", "-cassandra-consistency", "ONE"}, nil, slog.LevelDebug, gocql.One, false},
		{[]string{"-log-level", "WARN"}, nil, slog.LevelWarn, gocql.LocalQuorum, false},
		{nil, map[string]string{"INBOXD_LOG_LEVEL": "error", "INBOXD_CASSANDRA_CONSISTENCY": "QUORUM"}, slog.LevelError, gocql.Quorum, false},
		{[]string{"-log-level", "loud"}, nil, 0, 0, true},
		{[]string{"-cassandra-consistency", "SOME"}, nil, 0, 0, true},
		{nil, map[string]string{"INBOXD_LOG_LEVEL": "loud"}, 0, 0, true},
	}
	for _, tt := range tests {
		o, err := parse(tt.args, func(k string) string { return tt.env[k] })
		if (err != nil) != tt.wantErr {
			t.Fatalf("parse(%q, %v): %v", tt.args, tt.env, err)
		}
		if err == nil && (o.LogLevel != tt.level || o.Consistency != tt.consistency) {
			t.Errorf("parse(%q, %v): level %v, consistency %v", tt.args, tt.env, o.LogLevel, o.Consistency)
		}
	}
}

func TestWarnIfShared(t *testing.T) {
	for _, tt := range []struct {
		mode os.FileMode
		warn bool
	}{{0o700, false}, {0o750, true}, {0o755, true}, {0o701, true}} {
		dir := t.TempDir()
		if err := os.Chmod(dir, tt.mode); err != nil {
			t.Fatal(err)
		}
		var out bytes.Buffer
		warnIfShared(dir, slog.New(slog.NewTextHandler(&out, nil)))
		if got := strings.Contains(out.String(), "level=WARN"); got != tt.warn {
			t.Errorf("mode %v: warned %v, want %v: %q", tt.mode, got, tt.warn, out.String())
		}
	}
}

// TestRunAndStop runs the real binary with no flags but a data directory,
// as a person would, talks to it, and stops it with SIGTERM.
func TestRunAndStop(t *testing.T) {
	runAndStop(t)
}

// TestRunOnCassandra does the same on the Cassandra node of scripts/test.
func TestRunOnCassandra(t *testing.T) {
	hosts := strings.Join(cassandratest.Hosts(t), ",")
	keyspace := cassandratest.Keyspace(t, "cmd")
	runAndStop(t, "-store", "cassandra", "-cassandra-hosts", hosts, "-keyspace", keyspace,
		"-cassandra-consistency", "ONE", "-create-schema")
}

func runAndStop(t *testing.T, args ...string) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "inboxd")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	data := filepath.Join(dir, "data")
	// The usual umask: the child inherits it, and must still keep its data
	// to itself.
	defer syscall.Umask(syscall.Umask(0o022))
	cmd := exec.Command(bin, append([]string{"-listen", "127.0.0.1:0", "-admin", "", "-data", data}, args...)...)
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	addr := ""
	lines := bufio.NewScanner(stderr)
	ready := regexp.MustCompile(`inboxd: ready.* listen=(\S+)`)
	for addr == "" && lines.Scan() {
		if m := ready.FindStringSubmatch(lines.Text()); m != nil {
			addr = m[1]
		}
	}
	if addr == "" {
		t.Fatal("inboxd never said it was ready")
	}
	go func() {
		for lines.Scan() {
		}
	}()
	secret, err := os.ReadFile(filepath.Join(data, "token-secret"))
	if err != nil {
		t.Fatalf("no generated secret: %v", err)
	}
	for path, want := range map[string]os.FileMode{data: 0o700, filepath.Join(data, "token-secret"): 0o600} {
		if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != want {
			t.Fatalf("%s: %v, %v; want mode %v", path, fi.Mode().Perm(), err, want)
		}
	}
	tok, _ := token.Sign([]byte(strings.TrimSpace(string(secret))), token.Claims{User: 1, Device: "t", Expiry: time.Now().Add(time.Minute)})
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	frame, _ := wire.AppendFrame(nil, wire.CmdAuth, 0, 1, &wirepb.AuthRequest{Token: tok})
	c.Write(frame)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 4096)
	n, err := c.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	f, _, err := wire.Split(buf[:n], wire.DefaultMaxFrame)
	var ar wirepb.AuthResponse
	if err != nil || f.Flags != wire.FlagResponse || wire.Decode(f.Body, &ar) != nil || ar.UserId != 1 {
		t.Fatalf("auth response %+v %v", f.Header, err)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("inboxd exited with %v after SIGTERM", err)
		}
	case <-ctx.Done():
		t.Fatal("inboxd did not stop on SIGTERM")
	}
}

package bench

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/gocql/gocql"

	"github.com/inboxd/inboxd/wire"
)

// ServerConfig says how to run the inboxd that Run starts itself: the real
// binary as a child process, so that it can be killed with SIGKILL,
// restarted on the same data, and measured from /proc.
type ServerConfig struct {
	// Binary is the inboxd executable; empty: Run builds ./cmd/inboxd of
	// this module with the go command into Dir.
	Binary string
	// Dir holds the data directory, the token secret and the server's log.
	// Empty: a temporary directory, removed at the end.
	Dir string
	// Store is "pebble" (default) or "cassandra".
	Store string
	// CassandraHosts and Keyspace are passed on with -store cassandra; the
	// schema is created if missing, at consistency ONE (a single dev node).
	CassandraHosts string
	Keyspace       string
	// LeaseWait bounds how long a restart waits for a Cassandra writer lease
	// left by a killed server to expire (default 45s: the lease TTL is 30s).
	LeaseWait time.Duration
	// DropKeyspace drops Keyspace when the run ends (Cassandra only): for
	// runs on a keyspace of their own.
	DropKeyspace bool
	// Args are more inboxd flags.
	Args []string
	// Nodes is the number of inboxd processes (default 1). More than one
	// run as the nodes of a cluster on one keyspace (-cluster, which needs
	// Store "cassandra"), each with its own ports, data directory and log.
	Nodes int
	// Cluster runs the processes with -cluster even when Nodes is 1.
	Cluster bool
	// LeaseTTL is the cluster nodes' -lease-ttl (0: inboxd's default).
	LeaseTTL time.Duration
	// Bare starts the baseline server instead (ServeBare): Binary must then
	// be a program that runs it when given -bare-server ADDR -secret-file
	// FILE, as cmd/inboxd-bench does.
	Bare bool
	// WS starts inboxd with a WebSocket listener (-ws) too, and the devices
	// connect to it rather than to the TCP port.
	WS bool
}

// cluster reports whether the processes run as cluster nodes.
func (c ServerConfig) cluster() bool { return c.Nodes > 1 || c.Cluster }

// server is one inboxd child process, restartable on the same data.
type server struct {
	cfg    ServerConfig
	log    *slog.Logger
	bin    string
	data   string
	secret string // path of the token secret file
	addr   string // fixed across restarts, so clients reconnect to it
	peer   string // the node-to-node address of a cluster node, fixed too
	wsAddr string // the -ws listener's, with ServerConfig.WS
	logf   *os.File
	// schema: this start creates the Cassandra schema (the fleet's first
	// start only: creating it again is one more statement that a loaded
	// Cassandra may time out, failing a restart).
	schema bool

	mu       sync.Mutex
	cmd      *exec.Cmd
	exited   chan struct{}
	deadCPU  time.Duration // CPU of the incarnations that exited
	peakRSS  int64         // bytes: the highest VmHWM seen of any incarnation
	restarts int
}

// leaseHeld is how the Cassandra store says a killed predecessor's writer
// lease has not expired yet (timeline/cassandra.ErrLeaseHeld).
const leaseHeld = "writer lease held"

// fleet is the inboxd processes Run started: one, or the nodes of a
// cluster.
type fleet struct {
	cfg   ServerConfig
	log   *slog.Logger
	nodes []*server
}

// startFleet builds inboxd (unless cfg names a binary), writes one token
// secret, and starts cfg.Nodes processes one after the other (the first
// creates the schema).
func startFleet(ctx context.Context, cfg ServerConfig, log *slog.Logger) (*fleet, []byte, error) {
	if cfg.Store == "" {
		cfg.Store = "pebble"
	}
	if cfg.LeaseWait <= 0 {
		cfg.LeaseWait = 45 * time.Second
	}
	cfg.Nodes = max(cfg.Nodes, 1)
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, nil, fmt.Errorf("bench: server dir: %w", err)
	}
	if cfg.Bare && cfg.Binary == "" {
		return nil, nil, errors.New("bench: the bare server needs ServerConfig.Binary")
	}
	if cfg.Bare && cfg.WS {
		return nil, nil, errors.New("bench: the bare server speaks TCP only")
	}
	if cfg.Binary == "" {
		cfg.Binary = filepath.Join(cfg.Dir, "inboxd")
		out, err := exec.CommandContext(ctx, "go", "build", "-o", cfg.Binary, "github.com/inboxd/inboxd/cmd/inboxd").CombinedOutput()
		if err != nil {
			return nil, nil, fmt.Errorf("bench: build inboxd (run from inside the inboxd module, or set the server binary): %w\n%s", err, out)
		}
	}
	raw := make([]byte, 32)
	rand.Read(raw)
	secret := []byte(hex.EncodeToString(raw))
	secretPath := filepath.Join(cfg.Dir, "token-secret")
	if err := os.WriteFile(secretPath, secret, 0o600); err != nil {
		return nil, nil, fmt.Errorf("bench: write token secret: %w", err)
	}
	f := &fleet{cfg: cfg, log: log}
	for i := range cfg.Nodes {
		s, err := newServer(ctx, cfg, log, secretPath, i)
		if err != nil {
			f.close()
			return nil, nil, err
		}
		f.nodes = append(f.nodes, s)
	}
	return f, secret, nil
}

// newServer starts process i of cfg's fleet.
func newServer(ctx context.Context, cfg ServerConfig, log *slog.Logger, secretPath string, i int) (*server, error) {
	data, logName := filepath.Join(cfg.Dir, "data"), "inboxd.log"
	if cfg.Nodes > 1 {
		data, logName = filepath.Join(cfg.Dir, fmt.Sprintf("data-%d", i)), fmt.Sprintf("inboxd-%d.log", i)
	}
	s := &server{cfg: cfg, log: log, data: data, secret: secretPath, bin: cfg.Binary, schema: i == 0}
	// Ports chosen once: every restart listens on them again (a cluster
	// node advertises them, so they cannot be port 0).
	var err error
	if s.addr, err = freePort(); err != nil {
		return nil, err
	}
	if cfg.cluster() {
		if s.peer, err = freePort(); err != nil {
			return nil, err
		}
	}
	if cfg.WS {
		if s.wsAddr, err = freePort(); err != nil {
			return nil, err
		}
	}
	s.logf, err = os.Create(filepath.Join(cfg.Dir, logName))
	if err != nil {
		return nil, fmt.Errorf("bench: server log: %w", err)
	}
	if err := s.start(ctx); err != nil {
		s.logf.Close()
		return nil, err
	}
	return s, nil
}

// addrs returns the client addresses of the processes, comma separated.
func (f *fleet) addrs() string {
	var out []string
	for _, s := range f.nodes {
		out = append(out, s.clientAddr())
	}
	return strings.Join(out, ",")
}

// sample is server.sample over every process: their CPU and memory added.
func (f *fleet) sample() (totalCPU time.Duration, cur procStats) {
	for _, s := range f.nodes {
		c, p := s.sample()
		totalCPU += c
		cur.cpu, cur.rss, cur.hwm = cur.cpu+p.cpu, cur.rss+p.rss, cur.hwm+p.hwm
	}
	return totalCPU, cur
}

// peakRSS is the sum of each process's highest VmHWM.
func (f *fleet) peakRSS() int64 {
	var sum int64
	for _, s := range f.nodes {
		s.sample()
		s.mu.Lock()
		sum += s.peakRSS
		s.mu.Unlock()
	}
	return sum
}

// close stops every process, then drops the keyspace if asked to.
func (f *fleet) close() {
	for _, s := range f.nodes {
		s.stop()
		s.logf.Close()
	}
	if f.cfg.Store == "cassandra" && f.cfg.DropKeyspace {
		if err := dropKeyspace(f.cfg.CassandraHosts, f.cfg.Keyspace); err != nil {
			f.log.Warn("bench: drop keyspace", "keyspace", f.cfg.Keyspace, "err", err)
		}
	}
}

// clientAddr is where the devices connect: the TCP address, or the URL of
// the WebSocket listener.
func (s *server) clientAddr() string {
	if s.cfg.WS {
		return "ws://" + s.wsAddr + wire.WSPath
	}
	return s.addr
}

func (s *server) args() []string {
	if s.cfg.Bare {
		return []string{"-bare-server", s.addr, "-secret-file", s.secret}
	}
	a := []string{"-listen", s.addr, "-admin", "", "-data", s.data, "-secret-file", s.secret, "-store", s.cfg.Store}
	if s.cfg.WS {
		a = append(a, "-ws", s.wsAddr)
	}
	if s.cfg.Store == "cassandra" {
		a = append(a, "-cassandra-hosts", s.cfg.CassandraHosts, "-keyspace", s.cfg.Keyspace,
			"-cassandra-consistency", "ONE")
		if s.schema {
			a = append(a, "-create-schema")
		}
	}
	if s.cfg.cluster() {
		a = append(a, "-cluster", "-node", "-1", "-peer-listen", s.peer)
		if s.cfg.LeaseTTL > 0 {
			a = append(a, "-lease-ttl", s.cfg.LeaseTTL.String())
		}
	}
	return append(a, s.cfg.Args...)
}

// start runs a new incarnation and waits until it says it is ready. On the
// Cassandra store a predecessor killed with SIGKILL still holds the
// keyspace's writer lease until its TTL runs out: inboxd then exits with
// "writer lease held", and start tries again until cfg.LeaseWait.
func (s *server) start(ctx context.Context) error {
	deadline := time.Now().Add(s.cfg.LeaseWait)
	for {
		err := s.startOnce(ctx)
		if err == nil {
			s.schema = false
			return nil
		}
		if !strings.Contains(err.Error(), leaseHeld) || time.Now().After(deadline) {
			return err
		}
		s.log.Info("bench: inboxd refused: the killed server's writer lease has not expired; waiting", "err", err)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(2 * time.Second):
		}
	}
}

func (s *server) startOnce(ctx context.Context) error {
	cmd := exec.Command(s.bin, s.args()...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("bench: start inboxd: %w", err)
	}
	ready := make(chan struct{})
	scanned := make(chan struct{}) // stderr read to its end: the child closed it
	var tail bytes.Buffer          // the last lines, for the error if it exits
	var tailMu sync.Mutex
	go func() {
		defer close(scanned)
		sc := bufio.NewScanner(stderr)
		said := false
		for sc.Scan() {
			line := sc.Text()
			fmt.Fprintln(s.logf, line)
			tailMu.Lock()
			tail.WriteString(line + "\n")
			if tail.Len() > 4096 {
				tail.Next(tail.Len() - 4096)
			}
			tailMu.Unlock()
			if !said && strings.Contains(line, "inboxd: ready") {
				said = true
				close(ready)
			}
		}
		io.Copy(io.Discard, stderr)
	}()
	exited := make(chan struct{})
	go func() {
		// Wait closes the pipe: only once every line is read, so that the
		// error of an incarnation that exited at once (a writer lease still
		// held) carries its last lines.
		<-scanned
		cmd.Wait()
		close(exited)
	}()
	select {
	case <-ready:
	case <-exited:
		tailMu.Lock()
		defer tailMu.Unlock()
		return fmt.Errorf("bench: inboxd exited before it was ready (%v):\n%s", cmd.ProcessState, tail.String())
	case <-ctx.Done():
		cmd.Process.Kill()
		<-exited
		return ctx.Err()
	case <-time.After(2 * time.Minute):
		cmd.Process.Kill()
		<-exited
		return errors.New("bench: inboxd not ready within 2 minutes")
	}
	s.mu.Lock()
	s.cmd, s.exited = cmd, exited
	s.mu.Unlock()
	s.log.Debug("bench: inboxd ready", "pid", cmd.Process.Pid, "addr", s.addr)
	return nil
}

// kill sends SIGKILL to the running incarnation and waits for it to die.
func (s *server) kill() {
	s.mu.Lock()
	cmd, exited := s.cmd, s.exited
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	s.sample() // its peak memory; its CPU comes from the exit status
	cmd.Process.Signal(syscall.SIGKILL)
	<-exited
	s.reap(cmd)
}

// stop asks the running incarnation to shut down (SIGTERM), and kills it
// if it has not within 20 seconds.
func (s *server) stop() {
	s.mu.Lock()
	cmd, exited := s.cmd, s.exited
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	s.sample()
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(20 * time.Second):
		cmd.Process.Signal(syscall.SIGKILL)
		<-exited
	}
	s.reap(cmd)
}

func (s *server) reap(cmd *exec.Cmd) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if st := cmd.ProcessState; st != nil {
		s.deadCPU += st.UserTime() + st.SystemTime()
	}
	s.cmd = nil
}

// restart kills the server with SIGKILL and starts it again on its data.
func (s *server) restart(ctx context.Context) error {
	s.kill()
	s.mu.Lock()
	s.restarts++
	s.mu.Unlock()
	return s.start(ctx)
}

func dropKeyspace(hosts, keyspace string) error {
	cluster := gocql.NewCluster(strings.Split(hosts, ",")...)
	cluster.Timeout = 30 * time.Second
	// The drop is this session's only statement: schema events would make
	// the driver wait for agreement in a goroutine that outlives Close.
	cluster.Events.DisableSchemaEvents = true
	session, err := cluster.CreateSession()
	if err != nil {
		return err
	}
	defer session.Close()
	return session.Query("DROP KEYSPACE IF EXISTS " + keyspace).Exec()
}

// procStats is what /proc says of the running incarnation.
type procStats struct {
	cpu      time.Duration // utime + stime
	rss, hwm int64         // bytes
}

// sample reads the running incarnation's CPU and memory, and keeps the
// peak. It returns the CPU of every incarnation so far.
func (s *server) sample() (totalCPU time.Duration, cur procStats) {
	s.mu.Lock()
	defer s.mu.Unlock()
	totalCPU = s.deadCPU
	if s.cmd == nil {
		return totalCPU, cur
	}
	cur, err := readProc(s.cmd.Process.Pid)
	if err != nil {
		return totalCPU, cur
	}
	s.peakRSS = max(s.peakRSS, cur.hwm)
	return totalCPU + cur.cpu, cur
}

// clockTick is USER_HZ, the unit of /proc/PID/stat's times: 100 on every
// Linux architecture Go runs on.
const clockTick = 10 * time.Millisecond

func readProc(pid int) (procStats, error) {
	var p procStats
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return p, err
	}
	// Fields after the command name, which is in parentheses and may hold
	// spaces: state is field 3, utime 14, stime 15.
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return p, errors.New("bench: malformed /proc stat")
	}
	f := strings.Fields(string(stat[i+1:]))
	if len(f) < 13 {
		return p, errors.New("bench: short /proc stat")
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	p.cpu = time.Duration(ut+st) * clockTick
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return p, err
	}
	for line := range strings.Lines(string(status)) {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		switch k {
		case "VmRSS":
			p.rss = kb << 10
		case "VmHWM":
			p.hwm = kb << 10
		}
	}
	return p, nil
}

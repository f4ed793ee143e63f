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
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/gocql/gocql"
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
	// Bare starts the baseline server instead (ServeBare): Binary must then
	// be a program that runs it when given -bare-server ADDR -secret-file
	// FILE, as cmd/inboxd-bench does.
	Bare bool
}

// server is one inboxd child process, restartable on the same data.
type server struct {
	cfg    ServerConfig
	log    *slog.Logger
	bin    string
	data   string
	secret string // path of the token secret file
	addr   string // fixed across restarts, so clients reconnect to it
	logf   *os.File

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

func startServer(ctx context.Context, cfg ServerConfig, log *slog.Logger) (*server, []byte, error) {
	if cfg.Store == "" {
		cfg.Store = "pebble"
	}
	if cfg.LeaseWait <= 0 {
		cfg.LeaseWait = 45 * time.Second
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, nil, fmt.Errorf("bench: server dir: %w", err)
	}
	s := &server{cfg: cfg, log: log, data: filepath.Join(cfg.Dir, "data"), secret: filepath.Join(cfg.Dir, "token-secret"), bin: cfg.Binary}
	if cfg.Bare && s.bin == "" {
		return nil, nil, errors.New("bench: the bare server needs ServerConfig.Binary")
	}
	if s.bin == "" {
		s.bin = filepath.Join(cfg.Dir, "inboxd")
		out, err := exec.CommandContext(ctx, "go", "build", "-o", s.bin, "github.com/inboxd/inboxd/cmd/inboxd").CombinedOutput()
		if err != nil {
			return nil, nil, fmt.Errorf("bench: build inboxd (run from inside the inboxd module, or set the server binary): %w\n%s", err, out)
		}
	}
	raw := make([]byte, 32)
	rand.Read(raw)
	secret := []byte(hex.EncodeToString(raw))
	if err := os.WriteFile(s.secret, secret, 0o600); err != nil {
		return nil, nil, fmt.Errorf("bench: write token secret: %w", err)
	}
	// A port chosen once: every restart listens on it again.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, nil, fmt.Errorf("bench: pick a port: %w", err)
	}
	s.addr = ln.Addr().String()
	ln.Close()
	s.logf, err = os.Create(filepath.Join(cfg.Dir, "inboxd.log"))
	if err != nil {
		return nil, nil, fmt.Errorf("bench: server log: %w", err)
	}
	if err := s.start(ctx); err != nil {
		s.logf.Close()
		return nil, nil, err
	}
	return s, secret, nil
}

func (s *server) args() []string {
	if s.cfg.Bare {
		return []string{"-bare-server", s.addr, "-secret-file", s.secret}
	}
	a := []string{"-listen", s.addr, "-admin", "", "-data", s.data, "-secret-file", s.secret, "-store", s.cfg.Store}
	if s.cfg.Store == "cassandra" {
		a = append(a, "-cassandra-hosts", s.cfg.CassandraHosts, "-keyspace", s.cfg.Keyspace,
			"-cassandra-consistency", "ONE", "-create-schema")
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
		if err == nil || !strings.Contains(err.Error(), leaseHeld) || time.Now().After(deadline) {
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

func (s *server) close() {
	s.stop()
	s.logf.Close()
	if s.cfg.Store == "cassandra" && s.cfg.DropKeyspace {
		if err := dropKeyspace(s.cfg.CassandraHosts, s.cfg.Keyspace); err != nil {
			s.log.Warn("bench: drop keyspace", "keyspace", s.cfg.Keyspace, "err", err)
		}
	}
}

func dropKeyspace(hosts, keyspace string) error {
	cluster := gocql.NewCluster(strings.Split(hosts, ",")...)
	cluster.Timeout = 30 * time.Second
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

package bench

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/inboxd/inboxd/token"
	"github.com/inboxd/inboxd/wire"
	"github.com/inboxd/inboxd/wire/wirepb"
)

// The abuse shapes of issue 10, each run beside one well-behaved client
// whose heartbeat latency is what an attack costs everyone else.
const (
	// ShapeSlowAuth: connections that send an AUTH header and most of its
	// frame, then wait, as long as the server keeps them.
	ShapeSlowAuth = "slow-auth"
	// ShapeFlood: authenticated connections that pipeline unknown commands
	// as fast as they can write, reconnecting whenever the server closes
	// them (unless AbuseConfig.NoReconnect).
	ShapeFlood = "flood"
)

// AbuseConfig is one abuse run against an inboxd that Abuse starts.
type AbuseConfig struct {
	Server ServerConfig
	Shape  string // ShapeSlowAuth or ShapeFlood
	// Conns is the number of abusive connections (default 3000 slow-auth, 4
	// flood).
	Conns int
	// FrameSize is the frame length, header included, the slow-auth header
	// declares (default 262144, the default max_frame); all of it but the
	// last KiB (the last quarter of a smaller one) is sent.
	FrameSize int
	// Heartbeats is how many the good client sends, one every Interval
	// (default 300 every 20 ms: half its connection's rate limit).
	Heartbeats int
	Interval   time.Duration
	// NoReconnect: a flooding connection the server closes stays closed.
	NoReconnect bool
	Logger      *slog.Logger
}

// AbuseReport is what an abuse run measured.
type AbuseReport struct {
	Shape     string `json:"shape"`
	Conns     int    `json:"abusive_connections"`
	FrameSize int    `json:"frame_size,omitempty"`

	Connected   int64 `json:"abusive_connects"` // connections the abusers opened, reconnects included
	ClosedEarly int64 `json:"closed_by_server"` // of those, closed by the server while the good client ran
	// FloodSent (flood) counts the frames of the abusers' writes the
	// kernel accepted, an upper bound on what the server handled and a
	// loose one: the frames still in the sockets' buffers and in the
	// server's input buffer when it closes a connection are counted and
	// never handled, and no client can tell how many those were.
	// FloodAnswer counts the frames the server answered: it answers every
	// frame it handles, the one it closes the connection on included.
	FloodSent   int64 `json:"flood_frames_sent"`
	FloodAnswer int64 `json:"flood_frames_answered"`

	Heartbeat   Latency `json:"good_client_heartbeat"`
	GoodErrors  int64   `json:"good_client_errors"`
	PeakRSS     int64   `json:"server_peak_rss_bytes"`          // VmHWM
	RSSBefore   int64   `json:"server_rss_before_bytes"`        // before the first abusive connection
	RSSDuring   int64   `json:"server_rss_during_bytes"`        // the most sampled while the abusers ran
	RSSAfter    int64   `json:"server_rss_after_bytes"`         // 3 s after the abusers closed
	HeapDuring  int64   `json:"server_heap_inuse_during_bytes"` // the most sampled (go_memstats_heap_inuse_bytes)
	HeapAfter   int64   `json:"server_heap_inuse_after_bytes"`
	ServerCPU   float64 `json:"server_cpu_seconds"` // while the abusers ran
	Seconds     float64 `json:"seconds"`            // that the abusers ran
	LoadAverage string  `json:"load_average"`
}

func (c *AbuseConfig) validate() error {
	switch c.Shape {
	case ShapeSlowAuth:
		setDefault(&c.Conns, 3000)
		setDefault(&c.FrameSize, wire.DefaultMaxFrame)
		if c.FrameSize < 2*wire.HeaderSize {
			return fmt.Errorf("bench: a slow-auth frame of %d bytes holds nothing to wait on", c.FrameSize)
		}
	case ShapeFlood:
		setDefault(&c.Conns, 4)
		c.FrameSize = 0
	default:
		return fmt.Errorf("bench: no abuse shape %q (have %s, %s)", c.Shape, ShapeSlowAuth, ShapeFlood)
	}
	setDefault(&c.Heartbeats, 300)
	setDefault(&c.Interval, 20*time.Millisecond)
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

// Abuse starts inboxd, opens the abusive connections of cfg.Shape, runs the
// good client beside them and reports its latency and the server's memory.
func Abuse(ctx context.Context, cfg AbuseConfig) (AbuseReport, error) {
	if err := cfg.validate(); err != nil {
		return AbuseReport{}, err
	}
	rep := AbuseReport{Shape: cfg.Shape, Conns: cfg.Conns, FrameSize: cfg.FrameSize}
	if err := raiseNoFile(uint64(cfg.Conns) + 1024); err != nil {
		cfg.Logger.Warn("bench: cannot raise the open file limit", "err", err)
	}
	sc := cfg.Server
	if sc.Dir == "" {
		dir, err := os.MkdirTemp("", "inboxd-abuse-")
		if err != nil {
			return rep, err
		}
		defer os.RemoveAll(dir)
		sc.Dir = dir
	}
	admin, err := freePort()
	if err != nil {
		return rep, err
	}
	sc.Args = append(sc.Args, "-admin", admin) // after the harness's "-admin ''": the last wins
	sc.Nodes = 1
	f, secret, err := startFleet(ctx, sc, cfg.Logger)
	if err != nil {
		return rep, err
	}
	defer f.close()
	srv := f.nodes[0]
	heap := func() int64 { return scrapeGauge("http://"+admin+"/metrics", "go_memstats_heap_inuse_bytes") }
	cpuBefore, before := srv.sample()
	rep.RSSBefore = before.rss
	t0 := time.Now()

	// Sample the server's memory while the abuse runs.
	sampling, stopSampling := context.WithCancel(ctx)
	var sampled sync.WaitGroup
	sampled.Go(func() {
		for tick := time.NewTicker(100 * time.Millisecond); sampling.Err() == nil; <-tick.C {
			_, cur := srv.sample()
			rep.RSSDuring = max(rep.RSSDuring, cur.rss)
			rep.HeapDuring = max(rep.HeapDuring, heap())
		}
	})

	abuseCtx, stopAbuse := context.WithCancel(ctx)
	a := &abuser{cfg: cfg, addr: srv.addr, secret: secret}
	var abusers sync.WaitGroup
	ready := make(chan struct{})
	switch cfg.Shape {
	case ShapeSlowAuth:
		abusers.Go(func() { a.slowAuth(abuseCtx, ready) })
	case ShapeFlood:
		for i := range cfg.Conns {
			abusers.Go(func() { a.flood(abuseCtx, uint64(1_000_000+i)) })
		}
		close(ready)
	}
	<-ready
	rep.Heartbeat, rep.GoodErrors, err = goodClient(ctx, srv.addr, secret, cfg.Heartbeats, cfg.Interval)
	stopAbuse()
	abusers.Wait()
	rep.ClosedEarly = a.closed.Load()
	cpuAfter, _ := srv.sample()
	rep.ServerCPU, rep.Seconds = (cpuAfter - cpuBefore).Seconds(), time.Since(t0).Seconds()
	stopSampling()
	sampled.Wait()
	if err != nil {
		return rep, err
	}
	// What stays once the abusers have gone.
	select {
	case <-ctx.Done():
		return rep, ctx.Err()
	case <-time.After(3 * time.Second):
	}
	_, after := srv.sample()
	rep.RSSAfter, rep.HeapAfter = after.rss, heap()
	rep.PeakRSS = srv.peakRSS // the sampler has stopped
	rep.Connected, rep.FloodSent, rep.FloodAnswer = a.connects.Load(), a.sent.Load(), a.answered.Load()
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		rep.LoadAverage = strings.Join(strings.Fields(string(b))[:3], " ")
	}
	return rep, nil
}

// abuser opens the abusive connections and counts what they did.
type abuser struct {
	cfg    AbuseConfig
	addr   string
	secret []byte

	connects, closed, sent, answered atomic.Int64
}

// slowAuth opens the connections, each with an AUTH header and most of its
// frame, closes ready once all are open, and keeps them
// until ctx ends, counting those the server closes first.
func (a *abuser) slowAuth(ctx context.Context, ready chan<- struct{}) {
	size := a.cfg.FrameSize
	frame := wire.AppendHeader(nil, wire.CmdAuth, 0, 1, size-wire.HeaderSize)
	frame = append(frame, make([]byte, size-min(1024, size/4)-wire.HeaderSize)...)
	conns := make(chan net.Conn, a.cfg.Conns)
	var dialers sync.WaitGroup
	next := atomic.Int64{}
	for range 32 {
		dialers.Go(func() {
			for next.Add(1) <= int64(a.cfg.Conns) && ctx.Err() == nil {
				c, err := net.DialTimeout("tcp", a.addr, 5*time.Second)
				if err != nil {
					continue
				}
				a.connects.Add(1)
				c.SetWriteDeadline(time.Now().Add(2 * time.Second))
				c.Write(frame) // a server that refuses it may close first
				conns <- c
			}
		})
	}
	dialers.Wait()
	close(conns)
	close(ready)
	var held []net.Conn
	for c := range conns {
		held = append(held, c)
	}
	<-ctx.Done()
	// A connection the server closed reads to EOF or a reset at once; an
	// open one times out.
	buf := make([]byte, 256)
	for _, c := range held {
		c.SetReadDeadline(time.Now().Add(time.Millisecond))
		for {
			if _, err := c.Read(buf); err != nil {
				var ne net.Error
				if !errors.As(err, &ne) || !ne.Timeout() {
					a.closed.Add(1)
				}
				break
			}
		}
		c.Close()
	}
}

// flood authenticates as user and pipelines unknown commands until ctx
// ends, reconnecting whenever the server closes the connection.
func (a *abuser) flood(ctx context.Context, user uint64) {
	var batch []byte
	for i := range 1000 {
		batch = wire.AppendHeader(batch, wire.Command(999), 0, uint32(i+1), 0)
	}
	for first := true; ctx.Err() == nil && (first || !a.cfg.NoReconnect); first = false {
		c, err := dialAuth(ctx, a.addr, a.secret, user, "flood")
		if err != nil {
			time.Sleep(10 * time.Millisecond)
			continue
		}
		a.connects.Add(1)
		done := make(chan struct{})
		go func() {
			defer close(done)
			r := bufio.NewReaderSize(c, 64<<10)
			var h [wire.HeaderSize]byte
			for {
				if _, err := io.ReadFull(r, h[:]); err != nil {
					return
				}
				if _, err := r.Discard(int(binary.BigEndian.Uint32(h[:]))); err != nil {
					return
				}
				a.answered.Add(1)
			}
		}()
		for ctx.Err() == nil {
			c.SetWriteDeadline(time.Now().Add(time.Second))
			if _, err := c.Write(batch); err != nil {
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					continue // the server stopped reading for a moment
				}
				a.closed.Add(1)
				break
			}
			a.sent.Add(1000)
		}
		c.Close()
		<-done
	}
}

// dialAuth connects and authenticates.
func dialAuth(ctx context.Context, addr string, secret []byte, user uint64, device string) (net.Conn, error) {
	d := net.Dialer{Timeout: 5 * time.Second}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	tok, err := token.Sign(secret, token.Claims{User: user, Device: device, Expiry: time.Now().Add(time.Hour)})
	if err != nil {
		c.Close()
		return nil, err
	}
	frame, _ := wire.AppendFrame(nil, wire.CmdAuth, 0, 1, &wirepb.AuthRequest{Token: tok})
	c.SetDeadline(time.Now().Add(5 * time.Second))
	defer c.SetDeadline(time.Time{})
	if _, err := c.Write(frame); err != nil {
		c.Close()
		return nil, err
	}
	for {
		f, err := readAbuseFrame(c)
		if err != nil {
			c.Close()
			return nil, err
		}
		if f.Command == wire.CmdAuth && f.Flags&wire.FlagResponse != 0 {
			if f.Flags&wire.FlagError != 0 {
				c.Close()
				return nil, fmt.Errorf("bench: auth refused")
			}
			return c, nil
		}
	}
}

// readAbuseFrame reads one frame from an unbuffered connection.
func readAbuseFrame(c net.Conn) (wire.Frame, error) {
	h := make([]byte, wire.HeaderSize)
	if _, err := io.ReadFull(c, h); err != nil {
		return wire.Frame{}, err
	}
	buf := append(h, make([]byte, binary.BigEndian.Uint32(h))...)
	if _, err := io.ReadFull(c, buf[wire.HeaderSize:]); err != nil {
		return wire.Frame{}, err
	}
	f, _, err := wire.Split(buf, len(buf))
	return f, err
}

// goodClient sends n heartbeats one interval apart and measures each round
// trip. Pushes and other frames are skipped; an error response counts.
func goodClient(ctx context.Context, addr string, secret []byte, n int, interval time.Duration) (Latency, int64, error) {
	c, err := dialAuth(ctx, addr, secret, 1, "good")
	if err != nil {
		return Latency{}, 0, fmt.Errorf("bench: the good client cannot connect: %w", err)
	}
	defer c.Close()
	h := newHist()
	var errs int64
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for i := range n {
		select {
		case <-ctx.Done():
			return h.summary(), errs, ctx.Err()
		case <-tick.C:
		}
		id := uint32(i + 2)
		frame := wire.AppendHeader(nil, wire.CmdHeartbeat, 0, id, 0)
		start := time.Now()
		c.SetDeadline(start.Add(10 * time.Second))
		if _, err := c.Write(frame); err != nil {
			return h.summary(), errs, fmt.Errorf("bench: good client: %w", err)
		}
		for {
			f, err := readAbuseFrame(c)
			if err != nil {
				return h.summary(), errs, fmt.Errorf("bench: good client: %w", err)
			}
			if f.RequestID == id && f.Flags&wire.FlagResponse != 0 {
				if f.Flags&wire.FlagError != 0 {
					errs++
				}
				break
			}
		}
		h.record(0, time.Since(start).Nanoseconds())
	}
	return h.summary(), errs, nil
}

// freePort picks a loopback address nobody listens on.
func freePort() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("bench: pick a port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// scrapeGauge reads one unlabelled metric from a Prometheus text page; 0 if
// it cannot.
func scrapeGauge(url, name string) int64 {
	resp, err := http.Get(url)
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			f, _ := strconv.ParseFloat(v, 64)
			return int64(f)
		}
	}
	return 0
}

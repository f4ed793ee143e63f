package gateway

import (
	"bufio"
	"context"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/panjf2000/gnet/v2"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/inboxd/inboxd/inbox"
	"github.com/inboxd/inboxd/internal/gatewaytest"
	"github.com/inboxd/inboxd/internal/wsconn"
	"github.com/inboxd/inboxd/timeline"
	"github.com/inboxd/inboxd/wire"
	"github.com/inboxd/inboxd/wire/wirepb"
)

// The benchmarks compare the gateway with a bare gnet server that does the
// same framing and nothing else, measured in the same run: the ratio of the
// two is what docs/benchmarks.md reports.

const (
	benchConns  = 32 // client connections
	benchWindow = 16 // requests in flight per connection
)

// bare is a gnet server that answers every frame with an empty response
// frame from the event loop.
type bare struct {
	gnet.BuiltinEventEngine
	eng   gnet.Engine
	addr  chan string
	conns sync.Map
}

func (b *bare) OnBoot(eng gnet.Engine) gnet.Action {
	b.eng = eng
	return gnet.None
}

func (b *bare) OnOpen(c gnet.Conn) ([]byte, gnet.Action) {
	b.conns.Store(c, struct{}{})
	return nil, gnet.None
}

func (b *bare) OnClose(c gnet.Conn, _ error) gnet.Action {
	b.conns.Delete(c)
	return gnet.None
}

func (b *bare) OnTraffic(c gnet.Conn) gnet.Action {
	for {
		buf, _ := c.Peek(c.InboundBuffered())
		f, n, err := wire.Split(buf, wire.DefaultMaxFrame)
		if err != nil {
			return gnet.Close
		}
		if n == 0 {
			return gnet.None
		}
		out := wire.AppendHeader(nil, f.Command, wire.FlagResponse, f.RequestID, 0)
		c.Discard(n)
		c.Write(out)
	}
}

func startBare(b *testing.B) (*bare, string) {
	srv := &bare{}
	addr := freeAddr(b)
	done := make(chan error, 1)
	go func() {
		done <- gnet.Run(srv, "tcp://"+addr, gnet.WithMulticore(true), gnet.WithTCPNoDelay(gnet.TCPNoDelay),
			gnet.WithLogger(gnetLogger{slog.New(slog.DiscardHandler)}))
	}()
	waitListening(b, addr)
	b.Cleanup(func() {
		srv.eng.Stop(context.Background())
		<-done
	})
	return srv, addr
}

func freeAddr(b *testing.B) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func waitListening(b *testing.B, addr string) {
	for range 200 {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	b.Fatalf("nothing listens on %s", addr)
}

// roundTrips drives b.N HEARTBEAT round trips over benchConns connections
// with benchWindow requests in flight on each.
func roundTrips(b *testing.B, conns []net.Conn) {
	var left atomic.Int64
	left.Store(int64(b.N))
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	for _, c := range conns {
		wg.Go(func() {
			r := bufio.NewReaderSize(c, 64<<10)
			hdr := make([]byte, wire.HeaderSize)
			out := make([]byte, 0, benchWindow*wire.HeaderSize)
			for {
				n := min(left.Add(-benchWindow)+benchWindow, benchWindow)
				if n <= 0 {
					return
				}
				out = out[:0]
				for i := range n {
					out = wire.AppendHeader(out, wire.CmdHeartbeat, 0, uint32(i+1), 0)
				}
				if _, err := c.Write(out); err != nil {
					b.Error(err)
					return
				}
				for range n {
					if _, err := io.ReadFull(r, hdr); err != nil {
						b.Error(err)
						return
					}
					f, _, _ := wire.Split(hdr, wire.DefaultMaxFrame)
					if _, err := r.Discard(int(f.Length)); err != nil {
						b.Error(err)
						return
					}
				}
			}
		})
	}
	wg.Wait()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "rtt/s")
}

func dialAll(b *testing.B, addr string, auth func(i int) []byte) []net.Conn {
	conns := make([]net.Conn, benchConns)
	for i := range conns {
		var c net.Conn
		var err error
		if wsconn.IsURL(addr) {
			c, err = wsconn.Dial(context.Background(), addr, wsconn.Options{})
		} else {
			c, err = net.Dial("tcp", addr)
		}
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { c.Close() })
		if auth != nil {
			c.Write(auth(i))
			readFrame(b, c)
		}
		conns[i] = c
	}
	return conns
}

func readFrame(b *testing.B, c net.Conn) wire.Frame {
	hdr := make([]byte, wire.HeaderSize)
	if _, err := io.ReadFull(c, hdr); err != nil {
		b.Fatal(err)
	}
	f, _, _ := wire.Split(hdr, wire.DefaultMaxFrame)
	body := make([]byte, f.Length)
	if _, err := io.ReadFull(c, body); err != nil {
		b.Fatal(err)
	}
	f.Body = body
	return f
}

func benchGateway(b *testing.B) (*server, func(i int) []byte) {
	// Pushes outrun readers in bursts: let them queue.
	s := start(b, Config{MaxOutbound: 256 << 20, RateLimit: 1e9, RateBurst: 1e9, WSAddr: gatewaytest.WSAddr})
	auth := func(i int) []byte {
		tok := gatewaytest.Token(b, uint64(i+1), "bench", time.Hour)
		f, _ := wire.AppendFrame(nil, wire.CmdAuth, 0, 1, &wirepb.AuthRequest{Token: tok})
		return f
	}
	return s, auth
}

func BenchmarkRoundTrip(b *testing.B) {
	b.Run("bare-gnet", func(b *testing.B) {
		_, addr := startBare(b)
		roundTrips(b, dialAll(b, addr, nil))
	})
	b.Run("gateway", func(b *testing.B) {
		s, auth := benchGateway(b)
		roundTrips(b, dialAll(b, s.addr, auth))
	})
	b.Run("gateway-ws", func(b *testing.B) {
		s, auth := benchGateway(b)
		roundTrips(b, dialAll(b, s.wsURL(), auth))
	})
}

// BenchmarkPush sends b.N push frames of one 100-byte message to each of
// benchConns connected users, and measures frames received per second.
func BenchmarkPush(b *testing.B) {
	msg := &timeline.Message{Conv: 1, ConvSeq: 1, ID: 99, Sender: 1, ClientMsgID: "x", Kind: wire.KindText, Body: make([]byte, 100), Time: time.Now()}
	b.Run("bare-gnet", func(b *testing.B) {
		srv, addr := startBare(b)
		conns := dialAll(b, addr, nil)
		pushes(b, conns, func(seq uint64) {
			// The same encoding work as the gateway: one frame per user.
			srv.conns.Range(func(c, _ any) bool {
				frame, _ := appendPushes(nil, []inbox.Entry{{Row: timeline.Row{Seq: seq, Conv: 1, ConvSeq: 1, MsgID: 99, Kind: 1}, Msg: msg}}, wire.DefaultMaxFrame, encodeMessage)
				c.(gnet.Conn).AsyncWrite(frame, nil)
				return true
			})
		})
	})
	for _, transport := range []string{"tcp", "ws"} {
		name := "gateway"
		if transport == "ws" {
			name = "gateway-ws"
		}
		b.Run(name, func(b *testing.B) {
			s, auth := benchGateway(b)
			addr := s.addr
			if transport == "ws" {
				addr = s.wsURL()
			}
			conns := dialAll(b, addr, auth)
			pushes(b, conns, func(seq uint64) {
				for u := range uint64(benchConns) {
					s.gw.Notify(u+1, []inbox.Entry{{Row: timeline.Row{User: u + 1, Seq: seq, Conv: 1, ConvSeq: 1, MsgID: 99, Kind: 1}, Msg: msg}})
				}
			})
		})
	}
}

func pushes(b *testing.B, conns []net.Conn, push func(seq uint64)) {
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	for _, c := range conns {
		wg.Go(func() {
			r := bufio.NewReaderSize(c, 64<<10)
			hdr := make([]byte, wire.HeaderSize)
			for range b.N {
				if _, err := io.ReadFull(r, hdr); err != nil {
					b.Error(err)
					return
				}
				f, _, _ := wire.Split(hdr, wire.DefaultMaxFrame)
				r.Discard(int(f.Length))
			}
		})
	}
	for i := range b.N {
		push(uint64(i + 1))
	}
	wg.Wait()
	b.ReportMetric(float64(b.N*len(conns))/time.Since(start).Seconds(), "frames/s")
}

// BenchmarkMetricsPerRequest is what the metrics add to one request: a frame
// counted in, its latency observed, its response counted out. Compare with
// the microseconds of a round trip in BenchmarkRoundTrip.
func BenchmarkMetricsPerRequest(b *testing.B) {
	s, err := New(Config{Secret: secret, Registerer: prometheus.NewRegistry()})
	if err != nil {
		b.Fatal(err)
	}
	m := s.metrics
	arrived := time.Now()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			m.frameIn(transportTCP, wire.CmdSend)
			m.latency[cmdSlot(wire.CmdSend)].Observe(time.Since(arrived).Seconds())
			m.frameOut(transportTCP, wire.CmdSend)
		}
	})
}

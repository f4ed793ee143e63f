package peer

import (
	"bufio"
	"context"
	"net"
	"runtime"
	"sync"
	"testing"

	"github.com/inboxd/inboxd/wire"
)

// The benchmarks compare a Pool calling a Server (handshake done, an echo
// handler) with a bare TCP echo of the same frames: a goroutine per
// connection that reads a frame and writes it back as a response, flushing
// when no more input is buffered. Both carry 64-byte bodies on loopback.

const benchBody = 64

// benchWindow is the calls in flight in the pipelined benchmarks.
const benchWindow = 64

func BenchmarkRoundTrip(b *testing.B) {
	body := make([]byte, benchBody)
	b.Run("peer", func(b *testing.B) {
		p, addr := benchPeer(b)
		b.ReportAllocs()
		for b.Loop() {
			if _, err := p.Call(context.Background(), addr, cmdEcho, body); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("tcp", func(b *testing.B) {
		nc := benchEcho(b)
		r, w := bufio.NewReader(nc), bufio.NewWriter(nc)
		frame := appendFrame(nil, cmdEcho, 0, 1, body)
		b.ReportAllocs()
		for b.Loop() {
			w.Write(frame)
			if err := w.Flush(); err != nil {
				b.Fatal(err)
			}
			if _, err := readFrame(r, wire.DefaultMaxFrame); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkPipelined(b *testing.B) {
	body := make([]byte, benchBody)
	b.Run("peer", func(b *testing.B) {
		p, addr := benchPeer(b)
		b.SetParallelism(max(1, benchWindow/runtime.GOMAXPROCS(0)))
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := p.Call(context.Background(), addr, cmdEcho, body); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
	b.Run("tcp", func(b *testing.B) {
		nc := benchEcho(b)
		frame := appendFrame(nil, cmdEcho, 0, 1, body)
		window := make(chan struct{}, benchWindow)
		n := b.N
		b.ReportAllocs()
		b.ResetTimer()
		var wg sync.WaitGroup
		wg.Go(func() {
			w := bufio.NewWriter(nc)
			for range n {
				select {
				case window <- struct{}{}:
				default:
					w.Flush() // the window is full: send what is batched, then wait
					window <- struct{}{}
				}
				w.Write(frame)
			}
			w.Flush()
		})
		r := bufio.NewReader(nc)
		for range n {
			if _, err := readFrame(r, wire.DefaultMaxFrame); err != nil {
				b.Fatal(err)
			}
			<-window
		}
		wg.Wait()
	})
}

// benchPeer starts an echo Server and a Pool connected to it.
func benchPeer(b *testing.B) (*Pool, string) {
	s := startServer(b, HandlerFunc(func(_ context.Context, _ uint32, _ wire.Command, body []byte) ([]byte, error) {
		return body, nil
	}), nil)
	p := newPool(b, nil)
	if _, err := p.Call(context.Background(), s.Addr().String(), cmdEcho, nil); err != nil {
		b.Fatal(err)
	}
	return p, s.Addr().String()
}

// benchEcho starts a bare TCP echo of frames and returns a connection to it.
func benchEcho(b *testing.B) net.Conn {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		nc, err := ln.Accept()
		if err != nil {
			return
		}
		defer nc.Close()
		r, w := bufio.NewReaderSize(nc, wire.DefaultMaxFrame), bufio.NewWriter(nc)
		var out []byte
		for {
			f, err := readFrame(r, wire.DefaultMaxFrame)
			if err != nil {
				return
			}
			out = appendFrame(out[:0], f.Command, wire.FlagResponse, f.RequestID, f.Body)
			w.Write(out)
			if r.Buffered() == 0 {
				if w.Flush() != nil {
					return
				}
			}
		}
	})
	nc, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		nc.Close()
		ln.Close()
		wg.Wait()
	})
	return nc
}

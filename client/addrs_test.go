package client

import (
	"context"
	"errors"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestSplitAddrs(t *testing.T) {
	tests := []struct {
		in   string
		want []string
	}{
		{"", nil},
		{"a:1", []string{"a:1"}},
		{"a:1,b:2", []string{"a:1", "b:2"}},
		{" a:1 , ,b:2, ", []string{"a:1", "b:2"}},
	}
	for _, tt := range tests {
		if got := SplitAddrs(tt.in); !slices.Equal(got, tt.want) {
			t.Errorf("SplitAddrs(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// dialLog is a Dial func that answers only the addresses in up, and
// records every address it was asked for.
type dialLog struct {
	mu    sync.Mutex
	up    map[string]bool
	tried []string
}

func (d *dialLog) dial(_ context.Context, addr string) (net.Conn, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.tried = append(d.tried, addr)
	if !d.up[addr] {
		return nil, errors.New("refused")
	}
	c, _ := net.Pipe()
	return c, nil
}

func (d *dialLog) take() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	t := d.tried
	d.tried = nil
	return t
}

func TestAddrRotation(t *testing.T) {
	all := []string{"a:1", "b:2", "c:3"}
	d := &dialLog{up: map[string]bool{}}
	a := newAddrList(all, true)
	ctx := ctxT(t)

	// Nobody answers: every address is tried once, and named in the error.
	_, _, err := a.dial(ctx, time.Second, d.dial)
	tried := d.take()
	if err == nil || !slices.Equal(slices.Sorted(slices.Values(tried)), all) {
		t.Fatalf("all down: tried %q, err %v; want each address once", tried, err)
	}
	for _, addr := range all {
		if !strings.Contains(err.Error(), addr) {
			t.Errorf("error %q does not name %s", err, addr)
		}
	}

	// Only b answers: it is found whatever the order, and tried first from
	// then on.
	d.up["b:2"] = true
	nc, addr, err := a.dial(ctx, time.Second, d.dial)
	if err != nil || addr != "b:2" {
		t.Fatalf("dial = %q, %v; want b:2", addr, err)
	}
	nc.Close()
	if tried := d.take(); len(tried) > 3 || tried[len(tried)-1] != "b:2" || slices.Index(tried, "b:2") != len(tried)-1 {
		t.Fatalf("tried %q: b:2 once, last", tried)
	}
	for range 3 {
		nc, _, _ := a.dial(ctx, time.Second, d.dial)
		nc.Close()
		if tried := d.take(); !slices.Equal(tried, []string{"b:2"}) {
			t.Fatalf("tried %q after b:2 answered; want b:2 first", tried)
		}
	}
}

// TestAddrShuffle checks that clients given one list do not all start with
// its first address.
func TestAddrShuffle(t *testing.T) {
	all := []string{"a:1", "b:2", "c:3"}
	first := map[string]bool{}
	for range 200 {
		a := newAddrList(all, true)
		if !slices.Equal(slices.Sorted(slices.Values(a.addrs)), all) {
			t.Fatalf("rotation %q is not a permutation of %q", a.addrs, all)
		}
		first[a.addrs[0]] = true
	}
	if len(first) != len(all) {
		t.Errorf("first addresses over 200 lists: %v; want every one", first)
	}
}

// TestDialSkipsDeadAddrs dials a list where only the fake server is up,
// and reconnects to it first after it drops the connection.
func TestDialSkipsDeadAddrs(t *testing.T) {
	s := newFakeServer(t)
	dead := newFakeServer(t)
	deadAddr := dead.addr()
	dead.stop()
	var (
		mu    sync.Mutex
		tried []string
		d     net.Dialer
	)
	c, err := Dial(ctxT(t), Config{
		Addrs: []string{deadAddr, s.addr(), deadAddr}, Token: "good",
		MinBackoff: time.Millisecond, MaxBackoff: 20 * time.Millisecond,
		Dial: func(ctx context.Context, addr string) (net.Conn, error) {
			mu.Lock()
			tried = append(tried, addr)
			mu.Unlock()
			return d.DialContext(ctx, "tcp", addr)
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if got := c.Session().Addr; got != s.addr() {
		t.Fatalf("connected to %s, want %s", got, s.addr())
	}
	mu.Lock()
	tried = nil
	mu.Unlock()
	s.add(2, false)
	s.dropAll(0)
	eventually(t, func() bool { auths, _ := s.counts(); return auths == 2 })
	if err := c.WaitSynced(ctxT(t)); err != nil || c.LastSeq() != 2 {
		t.Fatalf("after reconnecting: last seq %d, %v", c.LastSeq(), err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(tried) == 0 || tried[0] != s.addr() {
		t.Errorf("reconnect tried %q; want %s, the last that answered, first", tried, s.addr())
	}
}

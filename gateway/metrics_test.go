package gateway

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"

	"github.com/inboxd/inboxd/wire"
	"github.com/inboxd/inboxd/wire/wirepb"
)

// waitValue waits until value returns want (the server counts on its own
// goroutines) and fails the test if it does not within a few seconds.
func waitValue(t *testing.T, what string, value func() float64, want float64) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		got := value()
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s = %v, want %v", what, got, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestMetricsCountReasons provokes each way a connection or a request can
// be refused and checks the counter of that reason.
func TestMetricsCountReasons(t *testing.T) {
	tests := []struct {
		name    string
		cfg     Config
		provoke func(t *testing.T, s *server)
		counter func(m *metrics) prometheus.Collector
		want    float64
	}{
		{"replaced", Config{}, func(t *testing.T, s *server) {
			old := s.login(1, "phone")
			s.login(1, "phone")
			old.closedWith()
		}, func(m *metrics) prometheus.Collector { return m.disconnects[transportTCP][closedReplaced] }, 1},
		{"wrong version", Config{}, func(t *testing.T, s *server) {
			c := s.dial()
			c.c.Write(rawHeader(0, 7, wire.CmdAuth, 1))
			c.closedWith()
		}, func(m *metrics) prometheus.Collector { return m.disconnects[transportTCP][closedProtocol] }, 1},
		{"command before AUTH", Config{}, func(t *testing.T, s *server) {
			c := s.dial()
			c.call(wire.CmdHeartbeat, nil, nil)
		}, func(m *metrics) prometheus.Collector { return m.authFailures[authNotFirst] }, 1},
		{"auth timeout", Config{AuthTimeout: 200 * time.Millisecond}, func(t *testing.T, s *server) {
			s.dial().closedWith()
		}, func(m *metrics) prometheus.Collector { return m.authFailures[authTimeout] }, 1},
		{"idle", Config{Heartbeat: 200 * time.Millisecond}, func(t *testing.T, s *server) {
			s.login(1, "d").closedWith()
		}, func(m *metrics) prometheus.Collector { return m.disconnects[transportTCP][closedIdle] }, 1},
		{"peer", Config{}, func(t *testing.T, s *server) {
			s.login(1, "d").c.Close()
		}, func(m *metrics) prometheus.Collector { return m.disconnects[transportTCP][closedByPeer] }, 1},
		{"rate limited", Config{RateLimit: 1, RateBurst: 3}, func(t *testing.T, s *server) {
			c := s.login(1, "d")
			for range 5 {
				c.call(wire.CmdHeartbeat, nil, nil)
			}
		}, func(m *metrics) prometheus.Collector { return m.rejected[rejectRateLimited] }, 3},
		{"unknown command in", Config{}, func(t *testing.T, s *server) {
			s.login(1, "d").call(wire.Command(999), nil, nil)
		}, func(m *metrics) prometheus.Collector { return m.framesIn[transportTCP][unknownCmd] }, 1},
		{"error by code", Config{}, func(t *testing.T, s *server) {
			s.login(1, "d").call(wire.CmdSend, &wirepb.SendRequest{Conv: 12345, ClientMsgId: "x", Kind: 1}, nil)
		}, func(m *metrics) prometheus.Collector { return m.errors[wire.CodeNoGroup] }, 1},
		{"latency observed per command", Config{}, func(t *testing.T, s *server) {
			c := s.login(1, "d")
			c.call(wire.CmdHeartbeat, nil, nil)
			c.call(wire.CmdHeartbeat, nil, nil)
		}, func(m *metrics) prometheus.Collector {
			return m.latency[wire.CmdHeartbeat].(prometheus.Histogram)
		}, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := start(t, tt.cfg)
			tt.provoke(t, s)
			c := tt.counter(s.gw.metrics)
			value := func() float64 { return testutil.ToFloat64(c) }
			if h, ok := c.(prometheus.Histogram); ok {
				value = func() float64 {
					var m dto.Metric
					h.Write(&m)
					return float64(m.GetHistogram().GetSampleCount())
				}
			}
			waitValue(t, tt.name, value, tt.want)
		})
	}
}

// TestRegisterer checks that a second gateway cannot register over the
// first one's metrics, and that no registerer is fine.
func TestRegisterer(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	if _, err := New(Config{Secret: secret, Registerer: reg}); err != nil {
		t.Fatal(err)
	}
	if _, err := New(Config{Secret: secret, Registerer: reg}); err == nil {
		t.Fatal("a second gateway registered the same metrics")
	}
	if _, err := New(Config{Secret: secret}); err != nil {
		t.Fatal(err)
	}
	if n, err := testutil.GatherAndCount(reg); err != nil || n == 0 {
		t.Fatalf("gathered %d metrics: %v", n, err)
	}
}

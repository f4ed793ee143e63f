package bench

import (
	"context"
	"testing"
	"time"
)

// TestAbuse runs both abuse shapes, small, against the real inboxd: the
// server closes the slow AUTH frames (too large before AUTH) and the
// flooding connection, the good client gets every heartbeat answered, and
// the report holds the server's memory. Nothing is asserted on speed.
func TestAbuse(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs inboxd")
	}
	for _, cfg := range []AbuseConfig{
		{Shape: ShapeSlowAuth, Conns: 20, Heartbeats: 10},
		{Shape: ShapeFlood, Conns: 1, Heartbeats: 10, NoReconnect: true},
	} {
		t.Run(cfg.Shape, func(t *testing.T) {
			cfg.Server.Dir = t.TempDir()
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			rep, err := Abuse(ctx, cfg)
			if err != nil {
				t.Fatal(err)
			}
			switch {
			case rep.Connected != int64(cfg.Conns) || rep.ClosedEarly != int64(cfg.Conns):
				t.Fatalf("%d abusive connections, %d closed by the server; want %d and %d", rep.Connected, rep.ClosedEarly, cfg.Conns, cfg.Conns)
			case rep.Heartbeat.Count != int64(cfg.Heartbeats) || rep.GoodErrors != 0:
				t.Fatalf("good client: %d heartbeats, %d errors", rep.Heartbeat.Count, rep.GoodErrors)
			// No answer may reach the flooder at all: the server closes it
			// with frames unread, and the reset that sends drops what the
			// flooder had not read yet.
			case cfg.Shape == ShapeFlood && (rep.FloodSent == 0 || rep.FloodSent < rep.FloodAnswer):
				t.Fatalf("flood: %d frames sent, %d answered; the server answers only frames sent", rep.FloodSent, rep.FloodAnswer)
			case rep.PeakRSS == 0 || rep.RSSBefore == 0 || rep.HeapDuring == 0:
				t.Fatalf("memory not measured: %+v", rep)
			}
		})
	}
}

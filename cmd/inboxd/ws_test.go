package main

import (
	"context"
	"testing"
	"time"

	"github.com/inboxd/inboxd/client"
	"github.com/inboxd/inboxd/internal/wsconn"
	"github.com/inboxd/inboxd/wire"
	"github.com/inboxd/inboxd/wire/wirepb"
)

// TestWebSocketListener runs the binary with -ws and -ws-origins: a client
// on ws:// and one on TCP chat, the metrics count each under its
// transport, and a browser page is admitted only from the origin listed.
func TestWebSocketListener(t *testing.T) {
	in := startInboxd(t, "-ws", "localhost:0", "-ws-origins", "https://chat.example.com")
	if in.ws == "off" {
		t.Fatal("no WebSocket listener")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	got := make(chan *wirepb.Entry, 10)
	browser, err := client.Dial(ctx, client.Config{Addr: "ws://" + in.ws + wire.WSPath, Token: in.token(t, 1, time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	defer browser.Close()
	tcp, err := client.Dial(ctx, client.Config{Addr: in.listen, Token: in.token(t, 2, time.Hour),
		OnEntry: func(e *wirepb.Entry) { got <- e }})
	if err != nil {
		t.Fatal(err)
	}
	defer tcp.Close()
	g, err := browser.CreateGroup(ctx, &wirepb.CreateGroupRequest{Members: []uint64{2}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := browser.Send(ctx, g.Id, "w1", uint32(wire.KindText), []byte("from the browser")); err != nil {
		t.Fatal(err)
	}
	for e := range got {
		if e.Kind == uint32(wire.KindText) {
			if string(e.Message.Body) != "from the browser" {
				t.Fatalf("entry %v", e)
			}
			break
		}
	}
	s := in.scrape(t)
	for _, c := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"inboxd_gateway_connections_accepted_total", []string{"transport", "ws"}, 1},
		{"inboxd_gateway_connections_accepted_total", []string{"transport", "tcp"}, 1},
		{"inboxd_gateway_frames_received_total", []string{"transport", "ws", "command", "SEND"}, 1},
		{"inboxd_gateway_connections_open", []string{"transport", "ws"}, 1},
	} {
		if v := s.value(c.name, c.labels...); v != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, v, c.want)
		}
	}
	for origin, ok := range map[string]bool{"https://chat.example.com": true, "https://elsewhere.example": false} {
		wc, err := wsconn.Dial(ctx, "ws://"+in.ws, wsconn.Options{Origin: origin})
		if (err == nil) != ok {
			t.Errorf("origin %s: %v, want admitted %v", origin, err, ok)
		}
		if err == nil {
			wc.Close()
		}
	}
}

package main

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/inboxd/inboxd/internal/gatewaytest"
)

// TestAddrList runs a command with --addr listing a closed port and a
// running gateway, and INBOXD_ADDR likewise: the command reaches the
// gateway whichever address the client tries first.
func TestAddrList(t *testing.T) {
	withGateway(t, func(t *testing.T, live string) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		dead := ln.Addr().String()
		ln.Close()
		list := dead + ", " + live
		tok := gatewaytest.Token(t, 42, "cli", time.Hour)
		for _, tt := range []struct {
			args []string
			env  map[string]string
		}{
			{[]string{"--addr", list, "--token", tok, "conversations"}, nil},
			{[]string{"--token", tok, "conversations"}, map[string]string{"INBOXD_ADDR": list}},
		} {
			for range 4 { // the order is random: try a few
				a, _, errOut := testApp(tt.env)
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				status := run(ctx, tt.args, a)
				cancel()
				if status != 0 {
					t.Fatalf("%q (env %v): status %d: %s", tt.args, tt.env, status, errOut)
				}
			}
		}
		a, _, errOut := testApp(nil)
		if status := run(context.Background(), []string{"--addr", " , ", "--token", tok, "conversations"}, a); status != 1 || !strings.Contains(errOut.String(), "no address") {
			t.Errorf("an empty list: status %d, stderr %q", status, errOut)
		}
	})
}

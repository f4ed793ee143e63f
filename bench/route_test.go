package bench

import (
	"context"
	"testing"
	"time"

	"github.com/inboxd/inboxd/cluster"
	"github.com/inboxd/inboxd/cluster/clustertest"
	"github.com/inboxd/inboxd/gateway"
	"github.com/inboxd/inboxd/inbox"
	"github.com/inboxd/inboxd/internal/gatewaytest"
)

// TestRedirects drives two gateways in front of one inbox service, as two
// nodes of a cluster of four shards, each serving two: the devices are
// spread over both addresses, so that about half are redirected at AUTH,
// and while the load runs a shard moves from node 1 to node 2, whose
// devices are closed with REDIRECT and follow it. The verifier must find
// every inbox whole.
func TestRedirects(t *testing.T) {
	if testing.Short() {
		t.Skip("a load run of seconds")
	}
	const shards = 4
	ring := clustertest.NewRing(shards)
	for s := range shards {
		ring.Move(s, 1+s/2)
	}
	gws := make([]*gateway.Server, 2)
	for i := range gws {
		gw, err := gateway.New(gateway.Config{Addr: gatewaytest.Addr, Secret: []byte(gatewaytest.Secret), SingleLoop: true, Ownership: ring.View(i + 1)})
		if err != nil {
			t.Fatal(err)
		}
		gws[i] = gw
	}
	_, addrs := gatewaytest.StartAll(t, []gatewaytest.Gateway{gws[0], gws[1]}, func(i int, svc *inbox.Service) error { return gws[i].Serve(svc) })
	for i, a := range addrs {
		ring.SetNode(cluster.NodeInfo{ID: i + 1, Addr: a})
	}

	cfg, err := Preset("smoke")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Addr, cfg.Secret = addrs[0]+","+addrs[1], []byte(gatewaytest.Secret)
	cfg.Chaos = 0
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	moved := make(chan struct{})
	go func() {
		defer close(moved)
		select {
		case <-time.After(cfg.Duration / 2):
			ring.Move(0, 2)
		case <-ctx.Done():
		}
	}()
	rep, err := Run(ctx, cfg)
	<-moved
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range rep.Violations {
		t.Error(v)
	}
	redirects := rep.Errors["REDIRECT"]
	t.Logf("%d acked, %d reconnects, %d redirects", rep.Acked, rep.Reconnects, redirects)
	switch {
	case !rep.Verified || rep.VerifyError != "":
		t.Fatalf("not verified: %s", rep.VerifyError)
	case rep.CheckedDevices != cfg.Users*cfg.Devices:
		t.Fatalf("%d device streams checked, want %d", rep.CheckedDevices, cfg.Users*cfg.Devices)
	case redirects == 0:
		t.Fatal("no device was redirected")
	case !rep.OK():
		t.Fatalf("verdict not clean: %d violations (+%d), %d unresolved", len(rep.Violations), rep.MoreViolations, rep.Unresolved)
	}
}

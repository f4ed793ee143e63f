package main

import (
	"testing"
	"time"

	"github.com/inboxd/inboxd/bench"
)

func TestParse(t *testing.T) {
	cfg, opts, err := parse([]string{"-preset", "fanout", "-rate", "7", "-groups", "2x10,1x3", "-json"})
	if err != nil {
		t.Fatal(err)
	}
	want := []bench.GroupSpec{{Count: 2, Size: 10}, {Count: 1, Size: 3}}
	if !opts.json || opts.compare.Pairs != 0 || cfg.Rate != 7 || cfg.Users != 1000 || cfg.Duration != 20*time.Second ||
		len(cfg.Groups) != 2 || cfg.Groups[0] != want[0] || cfg.Groups[1] != want[1] {
		t.Fatalf("parse: %+v %+v", cfg, opts)
	}
	cfg, _, err = parse([]string{"-preset=smoke", "-baseline"})
	if err != nil || !cfg.Server.Bare || cfg.Chaos != 0 || cfg.Churn != 0 || cfg.Users != 40 {
		t.Fatalf("baseline: %+v %v", cfg, err)
	}
	cfg, _, err = parse([]string{"-addr", "127.0.0.1:1"})
	if err != nil || cfg.Chaos != 0 {
		t.Fatalf("-addr kept the preset's chaos: %+v %v", cfg, err)
	}
	cfg, opts, err = parse([]string{"-preset", "groups100", "-compare", "4", "-compare-max", "9m", "-rate", "500", "-churn", "2", "-server-bin", "/x/inboxd"})
	if err != nil || opts.compare.Pairs != 4 || opts.compare.MaxTime != 9*time.Minute || opts.compare.BareBinary == "" ||
		opts.compare.Load.Rate != 500 || opts.compare.Load.Server.Binary != "/x/inboxd" || opts.compare.Load.Server.Bare ||
		cfg.Churn != 0 || opts.compare.Load.Churn != 0 {
		t.Fatalf("compare: %+v %+v %v", cfg, opts, err)
	}
	cfg, _, err = parse([]string{"-preset", "rolling", "-keyspace", "chaos_x", "-lease-ttl", "2s"})
	if err != nil || !cfg.Rolling || cfg.Server.Nodes != 3 || cfg.Server.Store != "cassandra" || cfg.Server.LeaseTTL != 2*time.Second {
		t.Fatalf("rolling: %+v %v", cfg, err)
	}
	cfg, _, err = parse([]string{"-nodes", "3", "-store", "cassandra", "-keyspace", "chaos_x", "-chaos", "3"})
	if err != nil || cfg.Server.Nodes != 3 || cfg.Chaos != 3 {
		t.Fatalf("-nodes 3 -chaos 3: %+v %v", cfg, err)
	}
	for _, args := range [][]string{
		{"-preset", "rolling", "-keyspace", "inboxd"},
		{"-preset", "nope"},
		{"-groups", "10"},
		{"-store", "cassandra", "-keyspace", "inboxd", "-chaos", "1"},
		{"stray"},
		{"-compare", "3", "-baseline"},
		{"-compare", "3", "-addr", "127.0.0.1:1", "-secret-file", "/dev/null"},
		{"-compare", "-1"},
	} {
		if _, _, err := parse(args); err == nil {
			t.Errorf("parse(%q) accepted", args)
		}
	}
}

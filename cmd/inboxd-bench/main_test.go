package main

import (
	"testing"
	"time"

	"github.com/inboxd/inboxd/bench"
)

func TestParse(t *testing.T) {
	cfg, asJSON, err := parse([]string{"-preset", "fanout", "-rate", "7", "-groups", "2x10,1x3", "-json"})
	if err != nil {
		t.Fatal(err)
	}
	want := []bench.GroupSpec{{Count: 2, Size: 10}, {Count: 1, Size: 3}}
	if !asJSON || cfg.Rate != 7 || cfg.Users != 1000 || cfg.Duration != 20*time.Second ||
		len(cfg.Groups) != 2 || cfg.Groups[0] != want[0] || cfg.Groups[1] != want[1] {
		t.Fatalf("parse: %+v json=%v", cfg, asJSON)
	}
	cfg, _, err = parse([]string{"-preset=smoke", "-baseline"})
	if err != nil || !cfg.Server.Bare || cfg.Chaos != 0 || cfg.Churn != 0 || cfg.Users != 40 {
		t.Fatalf("baseline: %+v %v", cfg, err)
	}
	cfg, _, err = parse([]string{"-addr", "127.0.0.1:1"})
	if err != nil || cfg.Chaos != 0 {
		t.Fatalf("-addr kept the preset's chaos: %+v %v", cfg, err)
	}
	for _, args := range [][]string{
		{"-preset", "nope"},
		{"-groups", "10"},
		{"-store", "cassandra", "-keyspace", "inboxd", "-chaos", "1"},
		{"stray"},
	} {
		if _, _, err := parse(args); err == nil {
			t.Errorf("parse(%q) accepted", args)
		}
	}
}

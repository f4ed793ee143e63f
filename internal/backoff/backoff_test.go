package backoff

import (
	"context"
	"testing"
	"time"
)

func TestDelay(t *testing.T) {
	p := Policy{Min: 100 * time.Millisecond, Max: 2 * time.Second}
	lo, hi := p.Min, p.Max
	for _, r := range []func(int64) int64{
		func(int64) int64 { return 0 },       // the shortest jitter
		func(n int64) int64 { return n - 1 }, // the longest
	} {
		for n, wantCap := range []time.Duration{lo, 2 * lo, 4 * lo, 8 * lo, 16 * lo, hi, hi} {
			d := p.delay(n, r)
			if d < wantCap/2 || d > wantCap {
				t.Errorf("retry %d: %v outside [%v, %v]", n, d, wantCap/2, wantCap)
			}
		}
		for _, n := range []int{62, 63, 64, 1000, -1} {
			if d := p.delay(n, r); d < hi/2 || d > hi {
				t.Errorf("retry %d: %v outside [%v, %v]", n, d, hi/2, hi)
			}
		}
	}
	if d := (Policy{}).Delay(3); d != 0 {
		t.Errorf("zero policy waits %v", d)
	}
	if d := (Policy{Min: time.Second}).delay(5, func(n int64) int64 { return n - 1 }); d != time.Second {
		t.Errorf("Max below Min: %v, want Min", d)
	}
}

func TestSleep(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	if !Sleep(ctx, 0) {
		t.Error("Sleep on a live context reported it done")
	}
	cancel()
	if Sleep(ctx, time.Hour) {
		t.Error("Sleep on a done context reported it live")
	}
}

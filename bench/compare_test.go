package bench

import (
	"context"
	"errors"
	"math"
	"strings"
	"testing"
)

// TestCompare runs three pairs on a fake Run: the order alternates, both
// servers get the same load, and each ratio's median and spread are those
// of the pairs.
func TestCompare(t *testing.T) {
	inboxd := []Report{
		{DeliveriesPerSec: 90, DeliveryLatency: Latency{P50: 4, P99: 40}, ServerCPUPerDeliveryUs: 12, Verified: true},
		{DeliveriesPerSec: 80, DeliveryLatency: Latency{P50: 6, P99: 90}, ServerCPUPerDeliveryUs: 15, Verified: true},
		{DeliveriesPerSec: 100, DeliveryLatency: Latency{P50: 2, P99: 30}, ServerCPUPerDeliveryUs: 10, Verified: true},
	}
	base := Report{Store: "bare", DeliveriesPerSec: 100, DeliveryLatency: Latency{P50: 2, P99: 20}, ServerCPUPerDeliveryUs: 10}
	var order []string
	var seeds []uint64
	cfg := CompareConfig{
		Load:       Config{Users: 10, Groups: []GroupSpec{{2, 5}}, Rate: 50, Churn: 3, Chaos: 1, Server: ServerConfig{Binary: "/x/inboxd"}},
		BareBinary: "/x/inboxd-bench",
		run: func(_ context.Context, c Config) (Report, error) {
			seeds = append(seeds, c.Seed)
			if c.Churn != 0 || c.Chaos != 0 {
				t.Errorf("run with churn %v, chaos %d: the baseline cannot take them", c.Churn, c.Chaos)
			}
			if c.Server.Bare {
				if c.Server.Binary != "/x/inboxd-bench" {
					t.Errorf("baseline started from %q", c.Server.Binary)
				}
				order = append(order, "bare")
				return base, nil
			}
			order = append(order, "inboxd")
			r := inboxd[0]
			inboxd = inboxd[1:]
			return r, nil
		},
	}
	rep, err := Compare(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(order, ","); got != "inboxd,bare,bare,inboxd,inboxd,bare" {
		t.Fatalf("order %s", got)
	}
	for _, s := range seeds {
		if s != seeds[0] || s == 0 {
			t.Fatalf("seeds %v: every run needs the same load", seeds)
		}
	}
	if len(rep.Pairs) != 3 || !rep.OK() {
		t.Fatalf("%d pairs, ok %v", len(rep.Pairs), rep.OK())
	}
	want := []struct {
		name            string
		got             Ratios
		deliv, p99, cpu float64
	}{
		{"median", rep.Median, 0.9, 2, 1.2},
		{"min", rep.Min, 0.8, 1.5, 1.0},
		{"max", rep.Max, 1.0, 4.5, 1.5},
	}
	for _, w := range want {
		if !near(w.got.Deliveries, w.deliv) || !near(w.got.P99, w.p99) || !near(w.got.CPU, w.cpu) {
			t.Errorf("%s: %+v, want deliveries %v, p99 %v, cpu %v", w.name, w.got, w.deliv, w.p99, w.cpu)
		}
	}
	var out strings.Builder
	rep.WriteTable(&out)
	for _, s := range []string{"deliveries/s       median 0.90  (min 0.80, max 1.00)", "CPU per delivery   median 1.20  (min 1.00, max 1.50)", "ratio"} {
		if !strings.Contains(out.String(), s) {
			t.Errorf("table lacks %q:\n%s", s, out.String())
		}
	}
}

func near(a, b float64) bool { return math.Abs(a-b) < 1e-9 }

// TestCompareStops checks that a run that cannot be made ends the
// comparison with its error, and that a server's failed verification makes
// the comparison not OK.
func TestCompareStops(t *testing.T) {
	boom := errors.New("boom")
	calls := 0
	_, err := Compare(context.Background(), CompareConfig{Load: Config{Rate: 1}, Pairs: 5,
		run: func(context.Context, Config) (Report, error) {
			if calls++; calls == 3 {
				return Report{}, boom
			}
			return Report{Verified: true}, nil
		}})
	if !errors.Is(err, boom) || calls != 3 {
		t.Fatalf("after %d runs: %v", calls, err)
	}
	rep, err := Compare(context.Background(), CompareConfig{Load: Config{Rate: 1}, Pairs: 1,
		run: func(_ context.Context, c Config) (Report, error) {
			if c.Server.Bare {
				return Report{Store: "bare"}, nil
			}
			return Report{Verified: true, Violations: []Violation{{}}}, nil
		}})
	if err != nil || rep.OK() {
		t.Fatalf("a violation left the comparison ok: %v", err)
	}
	var table strings.Builder
	rep.WriteTable(&table)
	if want := "pair 1, inboxd not ok: 1 violations, the first: "; !strings.Contains(table.String(), want) {
		t.Errorf("the table does not say why the run is not ok (%q):\n%s", want, table.String())
	}
	if _, err := Compare(context.Background(), CompareConfig{Load: Config{Addr: "127.0.0.1:1"}}); err == nil {
		t.Fatal("compare against -addr accepted")
	}
}

func TestReportProblem(t *testing.T) {
	for _, tc := range []struct {
		name string
		rep  Report
		want string
	}{
		{"clean", Report{Verified: true}, ""},
		{"baseline", Report{Store: "bare"}, ""},
		{"baseline unanswered", Report{Store: "bare", Unresolved: 2}, "2 sends unresolved"},
		{"not verified", Report{}, "not verified"},
		{"verify error", Report{Verified: true, VerifyError: "catch-up: deadline"}, "not verified: catch-up: deadline"},
		{"violations", Report{Verified: true, Violations: []Violation{{Kind: ViolationMissing, User: 7}}, MoreViolations: 2},
			"3 violations, the first: " + Violation{Kind: ViolationMissing, User: 7}.String()},
		{"violations not kept", Report{Verified: true, MoreViolations: 4}, "4 violations"},
		{"unanswered", Report{Verified: true, Unresolved: 1}, "1 sends unresolved"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.rep.Problem(); got != tc.want {
				t.Errorf("Problem() = %q, want %q", got, tc.want)
			}
			if ok := tc.rep.OK(); ok != (tc.want == "") {
				t.Errorf("OK() = %v with problem %q", ok, tc.want)
			}
		})
	}
}

package bench

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// CompareConfig is a side-by-side measure of inboxd against the bare
// baseline (ServeBare): the same load, run alternately on each, pair after
// pair, so that a machine whose load drifts still yields a usable ratio.
type CompareConfig struct {
	// Load is the run, for inboxd (Server.Binary; Addr must be empty: the
	// servers are started per run). Churn, offline users, storms and kills
	// are not measured here: the baseline has none of them.
	Load Config
	// BareBinary is the executable that serves the baseline when started
	// with -bare-server (cmd/inboxd-bench itself).
	BareBinary string
	// Pairs is how many runs of each (default 3). Within a pair the order
	// alternates: inboxd first in odd pairs, the baseline first in even ones.
	Pairs int
	// MaxTime bounds the whole comparison: no run starts after it (default
	// 30 minutes). The pairs done by then are reported.
	MaxTime time.Duration

	run func(context.Context, Config) (Report, error) // Run; tests replace it
}

// RunFigures are the figures of one run that a comparison reads.
type RunFigures struct {
	DeliveriesPerSec float64 `json:"deliveries_per_sec"`
	P50              float64 `json:"p50_ms"`
	P99              float64 `json:"p99_ms"`
	CPUPerDeliveryUs float64 `json:"server_cpu_us_per_delivery"`
	ServerCores      float64 `json:"server_cpu_cores"`
	ClientCores      float64 `json:"client_cpu_cores"`
	Load1            float64 `json:"load_average_1m"`   // when the run started
	OK               bool    `json:"ok"`                // inboxd: verified clean; baseline: every send answered
	Problem          string  `json:"problem,omitempty"` // why not OK
}

func figures(r *Report, load1 float64) RunFigures {
	return RunFigures{DeliveriesPerSec: r.DeliveriesPerSec, P50: r.DeliveryLatency.P50, P99: r.DeliveryLatency.P99,
		CPUPerDeliveryUs: r.ServerCPUPerDeliveryUs, ServerCores: r.ServerCPUCores, ClientCores: r.ClientCPUCores,
		Load1: load1, OK: r.OK(), Problem: r.Problem()}
}

// Ratios are inboxd's figures over the baseline's: deliveries/s wants ≥ 1,
// the others ≤ 1.
type Ratios struct {
	Deliveries float64 `json:"deliveries"`
	P50        float64 `json:"p50"`
	P99        float64 `json:"p99"`
	CPU        float64 `json:"cpu_per_delivery"`
}

// ComparePair is one run of each.
type ComparePair struct {
	InboxdFirst bool       `json:"inboxd_first"`
	Inboxd      RunFigures `json:"inboxd"`
	Baseline    RunFigures `json:"baseline"`
	Ratios      Ratios     `json:"ratios"`
}

// namedRun is one run of a pair, named by its server.
type namedRun struct {
	name string
	f    RunFigures
}

func (p ComparePair) runs() [2]namedRun {
	return [2]namedRun{{"inboxd", p.Inboxd}, {"baseline", p.Baseline}}
}

// CompareReport is every pair and, per ratio, the median and the spread.
type CompareReport struct {
	Preset string        `json:"preset,omitempty"`
	Groups string        `json:"groups"`
	Users  int           `json:"users"`
	Rate   float64       `json:"target_sends_per_sec"`
	Pairs  []ComparePair `json:"pairs"`
	Median Ratios        `json:"median"`
	Min    Ratios        `json:"min"`
	Max    Ratios        `json:"max"`
}

// OK reports whether every run of every pair was sound (inboxd verified).
func (c *CompareReport) OK() bool {
	for _, p := range c.Pairs {
		if !p.Inboxd.OK || !p.Baseline.OK {
			return false
		}
	}
	return len(c.Pairs) > 0
}

// errNoPair is returned when not even one pair could be run in time.
var errNoPair = errors.New("bench: compare: no pair completed")

// Compare runs cfg.Pairs pairs and reports them. A run that cannot be made
// ends the comparison with its error, and the pairs done before it.
func Compare(ctx context.Context, cfg CompareConfig) (CompareReport, error) {
	if cfg.run == nil {
		cfg.run = Run
	}
	if cfg.Pairs <= 0 {
		cfg.Pairs = 3
	}
	if cfg.MaxTime <= 0 {
		cfg.MaxTime = 30 * time.Minute
	}
	load := cfg.Load
	if load.Addr != "" {
		return CompareReport{}, errors.New("bench: compare starts its own servers: no -addr")
	}
	// The baseline speaks no SEND_DIRECT, RECALL or EDIT: both servers get
	// plain messages to groups only.
	load.Churn, load.OfflineUsers, load.Storm, load.Chaos, load.DirectPairs = 0, 0, false, 0, 0
	load.Features = Features{}
	if load.Seed == 0 {
		load.Seed = uint64(time.Now().UnixNano()) // the same choices for both servers
	}
	bare := load
	bare.Server.Bare, bare.Server.Binary = true, cfg.BareBinary
	rep := CompareReport{Groups: FormatGroups(load.Groups), Users: load.Users, Rate: load.Rate}
	deadline := time.Now().Add(cfg.MaxTime)
	var err error
pairs:
	for i := range cfg.Pairs {
		if time.Now().After(deadline) || ctx.Err() != nil {
			break
		}
		p := ComparePair{InboxdFirst: i%2 == 0}
		order := []*RunFigures{&p.Inboxd, &p.Baseline}
		cfgs := []Config{load, bare}
		if !p.InboxdFirst {
			slices.Reverse(order)
			slices.Reverse(cfgs)
		}
		for j, c := range cfgs {
			load1 := loadAverage()
			r, rerr := cfg.run(ctx, c)
			if rerr != nil {
				err = fmt.Errorf("bench: compare: pair %d: %w", i+1, rerr)
				break pairs
			}
			*order[j] = figures(&r, load1)
		}
		p.Ratios = ratios(p.Inboxd, p.Baseline)
		rep.Pairs = append(rep.Pairs, p)
	}
	if len(rep.Pairs) == 0 {
		return rep, cmp.Or(err, errNoPair)
	}
	rep.summarize()
	return rep, err
}

func ratios(in, base RunFigures) Ratios {
	return Ratios{Deliveries: ratio(in.DeliveriesPerSec, base.DeliveriesPerSec), P50: ratio(in.P50, base.P50),
		P99: ratio(in.P99, base.P99), CPU: ratio(in.CPUPerDeliveryUs, base.CPUPerDeliveryUs)}
}

func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}

// summarize sets the median, least and greatest of each ratio over the pairs.
func (c *CompareReport) summarize() {
	fields := []func(*Ratios) *float64{
		func(r *Ratios) *float64 { return &r.Deliveries },
		func(r *Ratios) *float64 { return &r.P50 },
		func(r *Ratios) *float64 { return &r.P99 },
		func(r *Ratios) *float64 { return &r.CPU },
	}
	for _, f := range fields {
		vs := make([]float64, len(c.Pairs))
		for i := range c.Pairs {
			vs[i] = *f(&c.Pairs[i].Ratios)
		}
		*f(&c.Median), *f(&c.Min), *f(&c.Max) = median(vs), slices.Min(vs), slices.Max(vs)
	}
}

// median of vs (not empty); it sorts vs.
func median(vs []float64) float64 {
	slices.Sort(vs)
	n := len(vs)
	if n%2 == 1 {
		return vs[n/2]
	}
	return (vs[n/2-1] + vs[n/2]) / 2
}

// loadAverage is the machine's one-minute load average, 0 if unknown.
func loadAverage() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0
	}
	f, _, _ := strings.Cut(string(b), " ")
	v, _ := strconv.ParseFloat(f, 64)
	return v
}

// WriteTable writes the comparison for people: each pair's figures, then
// each ratio's median and spread.
func (c *CompareReport) WriteTable(w io.Writer) {
	name := c.Preset
	if name == "" {
		name = "custom"
	}
	fmt.Fprintf(w, "compare %s: groups %s, %d users, %.0f sends/s; inboxd / baseline, %d pairs\n",
		name, c.Groups, c.Users, c.Rate, len(c.Pairs))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "pair\tfirst\tserver\tload\tdeliveries/s\tp50 ms\tp99 ms\tCPU µs/delivery\tserver cores\tgenerator cores\tok\t")
	for i, p := range c.Pairs {
		first := "baseline"
		if p.InboxdFirst {
			first = "inboxd"
		}
		for _, r := range p.runs() {
			fmt.Fprintf(tw, "%d\t%s\t%s\t%.1f\t%.0f\t%.1f\t%.1f\t%.2f\t%.2f\t%.2f\t%v\t\n", i+1, first, r.name, r.f.Load1,
				r.f.DeliveriesPerSec, r.f.P50, r.f.P99, r.f.CPUPerDeliveryUs, r.f.ServerCores, r.f.ClientCores, r.f.OK)
		}
		fmt.Fprintf(tw, "%d\t\tratio\t\t%.2f\t%.2f\t%.2f\t%.2f\t\t\t\t\n", i+1, p.Ratios.Deliveries, p.Ratios.P50, p.Ratios.P99, p.Ratios.CPU)
	}
	tw.Flush()
	for i, p := range c.Pairs {
		for _, r := range p.runs() {
			if r.f.Problem != "" {
				fmt.Fprintf(w, "pair %d, %s not ok: %s\n", i+1, r.name, r.f.Problem)
			}
		}
	}
	row := func(name string, med, lo, hi float64) {
		fmt.Fprintf(w, "%-18s median %.2f  (min %.2f, max %.2f)\n", name, med, lo, hi)
	}
	row("deliveries/s", c.Median.Deliveries, c.Min.Deliveries, c.Max.Deliveries)
	row("p50 delivery", c.Median.P50, c.Min.P50, c.Max.P50)
	row("p99 delivery", c.Median.P99, c.Min.P99, c.Max.P99)
	row("CPU per delivery", c.Median.CPU, c.Min.CPU, c.Max.CPU)
}

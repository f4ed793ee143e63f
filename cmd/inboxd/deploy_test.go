package main

import (
	"debug/elf"
	"encoding/json"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/gocql/gocql"
	"github.com/prometheus/common/model"
	"go.yaml.in/yaml/v2"
)

// The deployment files live at the top of the repository.
const repo = "../.."

// Where the queries are that must only name metrics inboxd exports.
const (
	dashboardFile = repo + "/deploy/grafana/dashboards/inboxd.json"
	alertsFile    = repo + "/deploy/prometheus/alerts.yml"
)

// targetLabels are attached by Prometheus to every scraped series; inboxd
// does not export them.
var targetLabels = map[string]bool{"job": true, "instance": true}

// synthetic are series Prometheus makes itself for each target.
var synthetic = map[string]bool{"up": true, "scrape_duration_seconds": true, "scrape_samples_scraped": true}

// dashboardQueries returns every PromQL expression of the Grafana
// dashboard: panel targets and template-variable queries.
func dashboardQueries(t *testing.T) []string {
	b, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	var doc any
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	var exprs []string
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, x := range v {
				if s, ok := x.(string); ok && (k == "expr" || k == "definition") {
					exprs = append(exprs, s)
				}
				walk(x)
			}
		case []any:
			for _, x := range v {
				walk(x)
			}
		}
	}
	walk(doc)
	return exprs
}

// alertQueries returns the expr of every rule in the alert rules file.
func alertQueries(t *testing.T) []string {
	b, err := os.ReadFile(alertsFile)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Groups []struct {
			Name  string `yaml:"name"`
			Rules []struct {
				Alert       string            `yaml:"alert"`
				Expr        string            `yaml:"expr"`
				For         string            `yaml:"for"`
				Labels      map[string]string `yaml:"labels"`
				Annotations map[string]string `yaml:"annotations"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	if err := yaml.UnmarshalStrict(b, &doc); err != nil {
		t.Fatalf("%s: %v", alertsFile, err)
	}
	var exprs []string
	for _, g := range doc.Groups {
		for _, r := range g.Rules {
			if r.Alert == "" || r.Expr == "" {
				t.Errorf("%s: a rule without alert or expr: %+v", alertsFile, r)
			}
			exprs = append(exprs, r.Expr)
		}
	}
	return exprs
}

// selector is a metric named in a query, with its equality and regexp
// matchers.
type selector struct {
	metric   string
	matchers [][3]string // label, op, value
}

var (
	reSelector = regexp.MustCompile(`([a-zA-Z_:][a-zA-Z0-9_:]*)?\{([^}]*)\}`)
	reMatcher  = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"([^"]*)"`)
	reGrouping = regexp.MustCompile(`\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)`)
	reRange    = regexp.MustCompile(`\[[^\]]*\]`)
	reIdent    = regexp.MustCompile(`[a-zA-Z_:][a-zA-Z0-9_:]*(\s*\()?`)
	keywords   = map[string]bool{"by": true, "without": true, "on": true, "ignoring": true, "bool": true,
		"and": true, "or": true, "unless": true, "offset": true, "group_left": true, "group_right": true, "inf": true, "nan": true}
)

// selectors extracts the metrics a PromQL expression reads. It is not a
// PromQL parser, but it knows the shapes the dashboard and the alerts use:
// functions and aggregations (an identifier before "("), groupings,
// ranges, label matchers, and label_values(metric, label).
func selectors(expr string) []selector {
	var out []selector
	// Matchers first, then drop them, so that label names and values are
	// not taken for metrics.
	expr = reSelector.ReplaceAllStringFunc(expr, func(m string) string {
		sm := reSelector.FindStringSubmatch(m)
		sel := selector{metric: sm[1]}
		for _, mm := range reMatcher.FindAllStringSubmatch(sm[2], -1) {
			if mm[1] == "__name__" && mm[2] == "=" {
				sel.metric = mm[3]
				continue
			}
			sel.matchers = append(sel.matchers, [3]string{mm[1], mm[2], mm[3]})
		}
		out = append(out, sel)
		return " "
	})
	expr = reGrouping.ReplaceAllString(expr, " ")
	expr = reRange.ReplaceAllString(expr, " ")
	if strings.HasPrefix(strings.TrimSpace(expr), "label_values(") {
		inner := strings.TrimSuffix(strings.TrimPrefix(strings.TrimSpace(expr), "label_values("), ")")
		expr = strings.Split(inner, ",")[0] // the metric; the label is not one
	}
	for _, m := range reIdent.FindAllString(expr, -1) {
		if strings.HasSuffix(m, "(") || keywords[strings.ToLower(m)] {
			continue
		}
		out = append(out, selector{metric: m})
	}
	return slices.DeleteFunc(out, func(s selector) bool { return s.metric == "" })
}

func TestSelectors(t *testing.T) {
	tests := []struct {
		expr string
		want []string // metric, then label=value per matcher
	}{
		{`sum by (command) (rate(inboxd_gateway_frames_received_total{instance=~"$instance"}[$__rate_interval]))`,
			[]string{"inboxd_gateway_frames_received_total instance=~$instance"}},
		{`histogram_quantile(0.99, sum by (le, command) (rate(x_bucket[5m])))`, []string{"x_bucket"}},
		{`a_total / on (instance) b > 0.5 and c`, []string{"a_total", "b", "c"}},
		{`label_values(inboxd_gateway_connections_open, instance)`, []string{"inboxd_gateway_connections_open"}},
		{`up{job="inboxd"} == 0`, []string{"up job=inboxd"}},
		{`{__name__="m", code="INTERNAL"}`, []string{"m code=INTERNAL"}},
	}
	for _, tt := range tests {
		var got []string
		for _, s := range selectors(tt.expr) {
			g := s.metric
			for _, m := range s.matchers {
				g += " " + m[0] + m[1] + m[2]
			}
			got = append(got, g)
		}
		if !slices.Equal(got, tt.want) {
			t.Errorf("selectors(%q) = %q, want %q", tt.expr, got, tt.want)
		}
	}
}

// exported returns the series names a scrape holds (histograms as their
// _bucket, _sum and _count series) with each one's label values.
func exported(s scrape) map[string]map[string]map[string]bool {
	out := make(map[string]map[string]map[string]bool)
	add := func(name string, labels map[string]string) {
		if out[name] == nil {
			out[name] = make(map[string]map[string]bool)
		}
		for k, v := range labels {
			if out[name][k] == nil {
				out[name][k] = make(map[string]bool)
			}
			out[name][k][v] = true
		}
	}
	for name, mf := range s {
		for _, m := range mf.GetMetric() {
			labels := make(map[string]string)
			for _, lp := range m.GetLabel() {
				labels[lp.GetName()] = lp.GetValue()
			}
			switch {
			case m.Histogram != nil:
				add(name+"_bucket", labels)
				add(name+"_sum", labels)
				add(name+"_count", labels)
			case m.Summary != nil:
				for _, q := range m.Summary.GetQuantile() {
					labels["quantile"] = model.FloatString(q.GetQuantile()).String()
					add(name, labels)
				}
				add(name+"_sum", labels)
				add(name+"_count", labels)
			default:
				add(name, labels)
			}
		}
	}
	return out
}

var reAlternatives = regexp.MustCompile(`^[a-zA-Z0-9_]+(\|[a-zA-Z0-9_]+)*$`)

// checkQueries fails for every metric, label or label value that the
// dashboard or the alert rules query and the scrape s does not have.
func checkQueries(t *testing.T, s scrape) {
	have := exported(s)
	n := 0
	for file, exprs := range map[string][]string{dashboardFile: dashboardQueries(t), alertsFile: alertQueries(t)} {
		if len(exprs) < 10 {
			t.Errorf("%s: only %d queries found", file, len(exprs))
		}
		for _, expr := range exprs {
			for _, sel := range selectors(expr) {
				n++
				if synthetic[sel.metric] {
					continue
				}
				labels, ok := have[sel.metric]
				if !ok {
					t.Errorf("%s queries %s, which inboxd does not export (in %q)", filepath.Base(file), sel.metric, expr)
					continue
				}
				for _, m := range sel.matchers {
					name, op, value := m[0], m[1], m[2]
					if targetLabels[name] || strings.Contains(value, "$") {
						continue
					}
					if labels[name] == nil {
						t.Errorf("%s: %s has no label %q (in %q)", filepath.Base(file), sel.metric, name, expr)
						continue
					}
					if op != "=" && op != "=~" || op == "=~" && !reAlternatives.MatchString(value) {
						continue
					}
					for _, v := range strings.Split(value, "|") {
						if !labels[name][v] {
							t.Errorf("%s: %s has no series with %s=%q (in %q)", filepath.Base(file), sel.metric, name, v, expr)
						}
					}
				}
			}
		}
	}
	if n < 40 {
		t.Errorf("only %d metric selectors found in the dashboard and the alerts", n)
	}
}

// TestDeployFiles checks the deployment files as far as this machine can
// without a container engine: the Dockerfile's build command builds a
// static binary, and the flags and environment that docker-compose.yml and
// the systemd unit pass are accepted by inboxd's own parsing.
func TestDeployFiles(t *testing.T) {
	t.Run("Dockerfile builds a static binary", func(t *testing.T) {
		b, err := os.ReadFile(repo + "/Dockerfile")
		if err != nil {
			t.Fatal(err)
		}
		m := regexp.MustCompile(`(?m)^RUN (CGO_ENABLED=0) go build (.*) -o (\S+) (\./cmd/inboxd)$`).FindStringSubmatch(string(b))
		if m == nil {
			t.Fatal("Dockerfile: no `RUN CGO_ENABLED=0 go build ... -o OUT ./cmd/inboxd` line")
		}
		if !regexp.MustCompile(`(?m)^USER \d+`).Match(b) || strings.Contains(string(b), "USER 0") {
			t.Error("Dockerfile: the final image must run as a non-root user")
		}
		args := append([]string{"build"}, shellFields(t, m[2])...)
		bin := filepath.Join(t.TempDir(), "inboxd")
		cmd := exec.Command("go", append(args, "-o", bin, m[4])...)
		cmd.Dir = repo
		cmd.Env = append(os.Environ(), m[1])
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%v: %v\n%s", cmd.Args, err, out)
		}
		f, err := elf.Open(bin)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		for _, p := range f.Progs {
			if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
				t.Errorf("the Dockerfile's binary is dynamically linked (%v)", p.Type)
			}
		}
	})

	t.Run("docker-compose.yml", func(t *testing.T) {
		b, err := os.ReadFile(repo + "/docker-compose.yml")
		if err != nil {
			t.Fatal(err)
		}
		var doc struct {
			Services map[string]struct {
				Build       string            `yaml:"build"`
				Command     []string          `yaml:"command"`
				Environment map[string]string `yaml:"environment"`
				Volumes     []string          `yaml:"volumes"`
			} `yaml:"services"`
		}
		if err := yaml.Unmarshal(b, &doc); err != nil {
			t.Fatal(err)
		}
		for _, name := range []string{"inboxd", "cassandra", "prometheus", "grafana"} {
			if _, ok := doc.Services[name]; !ok {
				t.Errorf("no service %q", name)
			}
		}
		svc := doc.Services["inboxd"]
		o, err := parse(svc.Command, func(k string) string { return svc.Environment[k] })
		if err != nil {
			t.Fatalf("inboxd refuses the compose command %q: %v", svc.Command, err)
		}
		if o.Store != "cassandra" || o.Admin != ":7601" || o.Consistency != gocql.One || o.Node != 1 {
			t.Errorf("compose options %+v", o)
		}
		for k := range svc.Environment {
			if !knownEnv(k) {
				t.Errorf("compose sets %s, which no inboxd flag reads", k)
			}
		}
		// Every file the services mount from the repository exists.
		for name, s := range doc.Services {
			for _, v := range s.Volumes {
				if src, _, _ := strings.Cut(v, ":"); strings.HasPrefix(src, "./") {
					if _, err := os.Stat(filepath.Join(repo, src)); err != nil {
						t.Errorf("service %s mounts %s: %v", name, src, err)
					}
				}
			}
		}
	})

	t.Run("systemd unit", func(t *testing.T) {
		b, err := os.ReadFile(repo + "/deploy/systemd/inboxd.service")
		if err != nil {
			t.Fatal(err)
		}
		unit := string(b)
		m := regexp.MustCompile(`(?m)^ExecStart=(\S+)(.*)$`).FindStringSubmatch(unit)
		if m == nil {
			t.Fatal("no ExecStart")
		}
		if _, err := parse(strings.Fields(m[2]), func(string) string { return "" }); err != nil {
			t.Errorf("inboxd refuses ExecStart's flags %q: %v", m[2], err)
		}
		for _, want := range []string{"DynamicUser=yes", "StateDirectory=inboxd", "LimitNOFILE=", "Restart=on-failure", "NoNewPrivileges=yes"} {
			if !strings.Contains(unit, "\n"+want) {
				t.Errorf("the unit lacks %s", want)
			}
		}
	})

	t.Run("prometheus.yml loads the alert rules", func(t *testing.T) {
		b, err := os.ReadFile(repo + "/deploy/prometheus/prometheus.yml")
		if err != nil {
			t.Fatal(err)
		}
		var doc struct {
			RuleFiles     []string `yaml:"rule_files"`
			ScrapeConfigs []struct {
				JobName     string `yaml:"job_name"`
				MetricsPath string `yaml:"metrics_path"`
			} `yaml:"scrape_configs"`
		}
		if err := yaml.Unmarshal(b, &doc); err != nil {
			t.Fatal(err)
		}
		if !slices.Contains(doc.RuleFiles, filepath.Base(alertsFile)) {
			t.Errorf("rule_files %q lacks %s", doc.RuleFiles, filepath.Base(alertsFile))
		}
		if len(doc.ScrapeConfigs) == 0 || doc.ScrapeConfigs[0].JobName != "inboxd" || doc.ScrapeConfigs[0].MetricsPath != "/metrics" {
			t.Errorf("scrape_configs %+v", doc.ScrapeConfigs)
		}
	})
}

// shellFields splits the Dockerfile's go build flags, unquoting
// -ldflags="...".
func shellFields(t *testing.T, s string) []string {
	var out []string
	for _, f := range regexp.MustCompile(`[^\s"=]+(=("[^"]*"|\S*))?`).FindAllString(s, -1) {
		out = append(out, strings.Replace(strings.TrimSuffix(f, `"`), `="`, "=", 1))
	}
	return out
}

// knownEnv reports whether an environment variable belongs to a flag.
func knownEnv(k string) bool {
	known := false
	flagSet(new(options)).VisitAll(func(f *flag.Flag) { known = known || envName(f.Name) == k })
	return known
}

// TestConfigTables keeps the configuration tables of the README and of
// docs/operations.md in step with the flags: every flag has a row, with the
// binary's default (flags without a default may say what they do instead).
func TestConfigTables(t *testing.T) {
	tests := []struct {
		file string
		row  func(f *flag.Flag) *regexp.Regexp
	}{
		{repo + "/README.md", func(f *flag.Flag) *regexp.Regexp {
			return regexp.MustCompile("(?m)^\\| `-" + f.Name + "` \\| " + defaultCell(f) + " \\|")
		}},
		{repo + "/docs/operations.md", func(f *flag.Flag) *regexp.Regexp {
			return regexp.MustCompile("(?m)^\\| `-" + f.Name + "` \\| `" + envName(f.Name) + "` \\| " + defaultCell(f) + " \\|")
		}},
	}
	for _, tt := range tests {
		b, err := os.ReadFile(tt.file)
		if err != nil {
			t.Fatal(err)
		}
		flagSet(new(options)).VisitAll(func(f *flag.Flag) {
			if !tt.row(f).Match(b) {
				t.Errorf("%s: no row for -%s with default %q", filepath.Base(tt.file), f.Name, f.DefValue)
			}
		})
	}
}

// defaultCell matches the default column of a flag's row.
func defaultCell(f *flag.Flag) string {
	if f.DefValue == "" {
		return "[^|]+"
	}
	return "`" + regexp.QuoteMeta(f.DefValue) + "`"
}

// checkMetricsTable fails for each inboxd metric the scrape s has and the
// metrics reference of docs/operations.md lacks, and for each row naming a
// metric s does not have. The rows under "Cluster mode" are a cluster
// node's own: a single node (cluster false) must not export them, and a
// cluster node must export them too.
func checkMetricsTable(t *testing.T, s scrape, cluster bool) {
	b, err := os.ReadFile(repo + "/docs/operations.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	split := strings.Index(doc, "#### Cluster mode\n")
	if split < 0 {
		t.Fatal(`docs/operations.md: no "Cluster mode" metrics table`)
	}
	end := split + strings.Index(doc[split:], "\n\n| metric |")
	end += strings.Index(doc[end+2:], "\n\n") + 2 // the end of the table
	row := regexp.MustCompile("(?m)^\\| `(inboxd_[a-z0-9_]+)` \\|")
	rows := func(part string) map[string]bool {
		m := make(map[string]bool)
		for _, r := range row.FindAllStringSubmatch(part, -1) {
			m[r[1]] = true
		}
		return m
	}
	single, clustered := rows(doc[:split]+doc[end:]), rows(doc[split:end])
	for name := range s {
		if strings.HasPrefix(name, "inboxd_") && !single[name] && !(cluster && clustered[name]) {
			t.Errorf("docs/operations.md: no row for %s (cluster mode %v)", name, cluster)
		}
	}
	// The single-node rows are checked by a run with every option on
	// (-api, -webhook-url); the cluster's by a cluster node's scrape.
	want := single
	if cluster {
		want = clustered
	}
	for name := range want {
		if s[name] == nil {
			t.Errorf("docs/operations.md documents %s, which inboxd does not export (cluster mode %v)", name, cluster)
		}
	}
}

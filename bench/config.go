package bench

import (
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/inboxd/inboxd/client"
)

// Config is one load run.
type Config struct {
	// Addr is a running inboxd to drive, or a comma-separated list of the
	// nodes of one cluster (the devices spread over them and follow
	// REDIRECT), with Secret its token secret. Empty: Run starts inboxd
	// itself as Server says.
	Addr   string
	Secret []byte
	Server ServerConfig

	Users   int         // simulated users
	Devices int         // devices (connections) per user
	Groups  []GroupSpec // how many groups of which size; members drawn at random
	// DirectPairs is the number of direct conversations (docs/protocol.md,
	// "Direct conversations"): pairs of users drawn at random, in the send
	// mix beside the groups, each conversation as likely to be picked as a
	// group. Their messages go by SEND_DIRECT, so the first one creates the
	// conversation mid-run, from either side.
	DirectPairs int

	Rate     float64       // sends per second across all users
	Duration time.Duration // of the load phase
	Messages int           // at most this many sends (0: Rate × Duration)
	BodySize int           // bytes of each message body (at least 12)

	Churn        float64       // device disconnects per second, each back after up to ChurnDown
	ChurnDown    time.Duration // default 1s
	OfflineUsers float64       // fraction of users offline from a fifth of the run to its end
	Storm        bool          // every device disconnects and reconnects at once, mid-run
	Chaos        int           // kill -9 and restart of the started server, at random moments; of a random node, one after the other, in a cluster
	Rolling      bool          // SIGTERM and restart of each node of the started cluster in turn
	MarkReadRate float64       // MARK_READ requests per second
	Features     Features      // shares of the sends that recall, edit or mention

	SetupTimeout time.Duration // connecting and creating groups (default 2m)
	DrainTimeout time.Duration // for unanswered sends after the load (default 1m)

	UserBase      uint64 // user ids are UserBase+1 … (0: derived from the time, fresh per run)
	Seed          uint64 // of the random choices (0: from the time)
	MaxViolations int    // reported in detail (default 1000)

	Logger   *slog.Logger // default: discard
	Progress io.Writer    // a progress line every second; nil: none
}

// Features are the shares (0–1) of the sends that are not plain messages:
// Recall and Edit recall or edit a message the same sender sent and had
// acknowledged earlier in the run (RECALL, EDIT, under their own client msg
// id); Mention sends a message that mentions one to three members, or
// everyone when the sender owns the group.
type Features struct {
	Recall, Edit, Mention float64
}

// ParseFeatures parses a feature mix such as "recall=0.05,edit=0.05,mention=0.1".
func ParseFeatures(s string) (Features, error) {
	var f Features
	if s == "" {
		return f, nil
	}
	for part := range strings.SplitSeq(s, ",") {
		name, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		share, err := strconv.ParseFloat(v, 64)
		var dst *float64
		switch name {
		case "recall":
			dst = &f.Recall
		case "edit":
			dst = &f.Edit
		case "mention":
			dst = &f.Mention
		}
		if !ok || err != nil || dst == nil || share < 0 || share > 1 {
			return Features{}, fmt.Errorf("bench: feature mix %q: want recall=S,edit=S,mention=S with shares in 0–1", s)
		}
		*dst = share
	}
	if f.Recall+f.Edit+f.Mention > 1 {
		return Features{}, fmt.Errorf("bench: feature mix %q: shares add up to more than 1", s)
	}
	return f, nil
}

// String is the inverse of ParseFeatures.
func (f Features) String() string {
	return fmt.Sprintf("recall=%g,edit=%g,mention=%g", f.Recall, f.Edit, f.Mention)
}

// GroupSpec is Count groups of Size members, the owner included.
type GroupSpec struct {
	Count, Size int
}

// ParseGroups parses a group mix such as "100x10,10x100,1x500".
func ParseGroups(s string) ([]GroupSpec, error) {
	var out []GroupSpec
	for part := range strings.SplitSeq(s, ",") {
		c, z, ok := strings.Cut(strings.TrimSpace(part), "x")
		count, err1 := strconv.Atoi(c)
		size, err2 := strconv.Atoi(z)
		if !ok || err1 != nil || err2 != nil || count < 1 || size < 1 {
			return nil, fmt.Errorf("bench: group mix %q: want COUNTxSIZE[,COUNTxSIZE…]", s)
		}
		out = append(out, GroupSpec{count, size})
	}
	return out, nil
}

// FormatGroups is the inverse of ParseGroups.
func FormatGroups(gs []GroupSpec) string {
	parts := make([]string, len(gs))
	for i, g := range gs {
		parts[i] = fmt.Sprintf("%dx%d", g.Count, g.Size)
	}
	return strings.Join(parts, ",")
}

// Presets names the built-in configurations.
var presetNames = []string{"smoke", "fanout", "chatty", "reconnect-storm", "idle", "groups100", "rolling"}

// PresetNames returns the names Preset accepts.
func PresetNames() []string { return slices.Clone(presetNames) }

// Preset returns a named configuration, for the embedded store unless the
// caller changes it:
//
//   - smoke: seconds; churn, offline users, mark-reads, recalls, edits,
//     mentions and one kill -9 (the test suite and CI run it);
//   - fanout: groups of 500;
//   - chatty: many groups of 10 at a high rate;
//   - groups100: groups of 100 at 1,000 sends/s (100,000 deliveries/s);
//   - reconnect-storm: every device reconnects at once, mid-run;
//   - idle: 10,000 connections and few messages: memory per connection;
//   - rolling: three cluster nodes on Cassandra, each stopped with SIGTERM
//     in turn under load and restarted (Server.CassandraHosts names the
//     node).
func Preset(name string) (Config, error) {
	c := Config{BodySize: 100, Duration: 20 * time.Second, Devices: 1}
	switch name {
	case "smoke":
		c.Users, c.Devices = 40, 2
		c.Groups = []GroupSpec{{8, 5}, {3, 20}, {1, 40}}
		c.Rate, c.Duration = 150, 3*time.Second
		c.Churn, c.ChurnDown, c.OfflineUsers, c.MarkReadRate, c.Chaos = 4, 300*time.Millisecond, 0.1, 10, 1
		c.Features = Features{Recall: 0.05, Edit: 0.05, Mention: 0.1}
		c.DirectPairs = 6
	case "fanout":
		c.Users = 1000
		c.Groups = []GroupSpec{{10, 500}}
		c.Rate = 200
	case "chatty":
		c.Users = 2000
		c.Groups = []GroupSpec{{400, 10}}
		c.Rate = 5000
	case "groups100":
		c.Users = 1000
		c.Groups = []GroupSpec{{20, 100}}
		c.Rate = 1000
	case "reconnect-storm":
		c.Users, c.Devices = 2000, 2
		c.Groups = []GroupSpec{{200, 10}, {20, 100}, {2, 500}}
		c.Rate, c.Storm = 300, true
	case "idle":
		c.Users = 10000
		c.Groups = []GroupSpec{{100, 10}}
		c.Rate = 10
	case "rolling":
		c.Users, c.Devices = 60, 2
		c.Groups = []GroupSpec{{10, 5}, {4, 20}, {1, 60}}
		c.Rate, c.Duration = 100, 10*time.Second
		c.Rolling = true
		c.Server.Store, c.Server.Nodes = "cassandra", 3
	default:
		return Config{}, fmt.Errorf("bench: no preset %q (have %s)", name, strings.Join(presetNames, ", "))
	}
	return c, nil
}

// validate fills in defaults and checks c.
func (c *Config) validate() error {
	if c.Users < 1 || c.Devices < 1 {
		return fmt.Errorf("bench: need at least one user and one device")
	}
	for _, g := range c.Groups {
		if g.Size > c.Users {
			return fmt.Errorf("bench: a group of %d members needs at least %d users, have %d", g.Size, g.Size, c.Users)
		}
	}
	if f := c.Features; f.Recall < 0 || f.Edit < 0 || f.Mention < 0 || f.Recall+f.Edit+f.Mention > 1 {
		return fmt.Errorf("bench: feature shares %v: each 0–1, adding up to at most 1", f)
	}
	if c.Server.Bare && c.Features != (Features{}) {
		return fmt.Errorf("bench: the bare baseline knows no recalls, edits or mentions")
	}
	if c.DirectPairs < 0 || c.DirectPairs > 0 && c.Users < 2 {
		return fmt.Errorf("bench: direct pairs need at least two users")
	}
	if c.DirectPairs > 0 && c.Server.Bare {
		return fmt.Errorf("bench: the bare baseline speaks no SEND_DIRECT")
	}
	if len(c.Groups) == 0 && c.DirectPairs == 0 {
		return fmt.Errorf("bench: no group and no direct pair to send to")
	}
	if c.Rate <= 0 || c.Duration <= 0 {
		return fmt.Errorf("bench: rate and duration must be positive")
	}
	if c.Server.Nodes > 1 && c.Server.Store != "cassandra" {
		return fmt.Errorf("bench: %d nodes share a Cassandra keyspace: they need the cassandra store", c.Server.Nodes)
	}
	if c.Rolling && (c.Addr != "" || c.Server.Nodes < 2) {
		return fmt.Errorf("bench: a rolling restart needs a cluster of two nodes or more that Run starts itself")
	}
	if c.Messages <= 0 {
		// The load lasts until the nodes stopped came back, past Duration.
		c.Messages = int(c.Rate*(c.Duration+time.Duration(c.nodeEvents())*outageBound).Seconds()) + 1
	}
	if c.Server.Bare && (c.Addr != "" || c.Chaos > 0 || c.Churn > 0 || c.OfflineUsers > 0 || c.Storm) {
		return fmt.Errorf("bench: the bare baseline stores nothing: no -addr, chaos, churn, offline users or storm with it")
	}
	if c.Addr != "" && c.Chaos > 0 {
		return fmt.Errorf("bench: chaos needs the server Run starts itself (no -addr)")
	}
	if c.Addr != "" && len(client.SplitAddrs(c.Addr)) == 0 {
		return fmt.Errorf("bench: -addr %q names no address", c.Addr)
	}
	if c.Addr != "" && len(c.Secret) == 0 {
		return fmt.Errorf("bench: the token secret of %s is needed", c.Addr)
	}
	c.BodySize = max(c.BodySize, 12)
	setDefault(&c.ChurnDown, time.Second)
	setDefault(&c.SetupTimeout, 2*time.Minute)
	setDefault(&c.DrainTimeout, time.Minute)
	if c.UserBase == 0 {
		// Fresh users per run, so that a shared server's old inboxes never
		// mix into the model.
		c.UserBase = uint64(time.Now().Unix()%100000) * 1_000_000
	}
	if c.Seed == 0 {
		c.Seed = uint64(time.Now().UnixNano())
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

func setDefault[T int | time.Duration](v *T, def T) {
	if *v <= 0 {
		*v = def
	}
}

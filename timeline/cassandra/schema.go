package cassandra

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/gocql/gocql"
)

// ErrSchema is wrapped by the error of Open when the keyspace or one of its
// tables is missing or differs from what this build reads and writes.
var ErrSchema = errors.New("timeline/cassandra: schema mismatch")

// table is one table of the schema. Its CREATE statement is generated from
// it, and Open checks a keyspace it did not create against it.
type table struct {
	name       string
	partition  []column
	clustering []column // all ascending
	regular    []column
	compaction string // the compaction class
	gcGrace    int    // gc_grace_seconds; 0: Cassandra's default
}

// activityGCGrace is the conversation_activity table's gc_grace_seconds.
// Every message moves an index row of each recipient, leaving a tombstone
// that reads of the partition step over until compaction drops it, which
// it may only after gc_grace_seconds. A tombstone dropped before a replica
// that missed it is repaired lets the old row come back; the reader skips
// such a row (it lies behind the conversation's current one), so the grace
// can be short.
const activityGCGrace = 3600

type column struct{ name, typ string }

// Every uint64 of the contract is a varint column: Cassandra's bigint is
// signed, so ids and seqs of 2^63 and above would sort before 0, while varint
// sorts numerically and prints as the number it is. Times are timestamps
// (milliseconds, the precision the contract keeps). A table is named by what
// one row is, as Batch names its fields.
//
// deploy/cassandra/schema.cql is the operators' copy of these definitions,
// with the reasons for each key and compaction; TestSchemaFile keeps the two
// the same.
func tables() []table {
	const (
		stcs = "SizeTieredCompactionStrategy"
		lcs  = "LeveledCompactionStrategy"
	)
	return []table{
		{
			name:       "inbox",
			partition:  []column{{"user", "varint"}, {"bucket", "varint"}},
			clustering: []column{{"seq", "varint"}},
			regular:    []column{{"conv", "varint"}, {"conv_seq", "varint"}, {"msg_id", "varint"}, {"kind", "int"}},
			compaction: stcs,
		},
		{
			name:       "inbox_buckets",
			partition:  []column{{"user", "varint"}},
			clustering: []column{{"bucket", "varint"}},
			compaction: lcs,
		},
		{
			name:       "messages",
			partition:  []column{{"conv", "varint"}, {"bucket", "varint"}},
			clustering: []column{{"conv_seq", "varint"}},
			regular: []column{{"msg_id", "varint"}, {"sender", "varint"}, {"client_msg_id", "text"},
				{"kind", "int"}, {"body", "blob"}, {"time", "timestamp"},
				{"mentions", "frozen<list<varint>>"}, {"mention_all", "boolean"}, {"recalled", "boolean"},
				{"edited", "timestamp"}, {"last_edit", "varint"}},
			compaction: stcs,
		},
		{
			name:       "message_buckets",
			partition:  []column{{"conv", "varint"}},
			clustering: []column{{"bucket", "varint"}},
			compaction: lcs,
		},
		{
			name:      "groups",
			partition: []column{{"conv", "varint"}},
			regular: []column{{"name", "text"}, {"owner", "varint"}, {"created", "timestamp"},
				{"open", "boolean"}, {"muted_until", "timestamp"}, {"dismissed", "boolean"},
				{"announcement", "text"}, {"avatar_url", "text"},
				{"direct_a", "varint"}, {"direct_b", "varint"}, {"blocked_a", "boolean"}, {"blocked_b", "boolean"}},
			compaction: lcs,
		},
		{
			name:       "members",
			partition:  []column{{"conv", "varint"}},
			clustering: []column{{"user", "varint"}},
			regular:    []column{{"role", "int"}, {"joined_at", "varint"}, {"muted_until", "timestamp"}, {"dnd", "boolean"}},
			compaction: lcs,
		},
		{
			name:       "conversations",
			partition:  []column{{"user", "varint"}},
			clustering: []column{{"conv", "varint"}},
			regular:    []column{{"joined_at", "varint"}, {"left_at", "varint"}, {"dnd", "boolean"}, {"read_seq", "varint"}},
			compaction: lcs,
		},
		{
			name:       "conversation_activity",
			partition:  []column{{"user", "varint"}},
			clustering: []column{{"active", "timestamp"}, {"conv", "varint"}},
			compaction: lcs,
			gcGrace:    activityGCGrace,
		},
		{
			name:       "dedups",
			partition:  []column{{"sender", "varint"}, {"client_msg_id", "text"}},
			regular:    []column{{"conv", "varint"}, {"conv_seq", "varint"}, {"msg_id", "varint"}, {"time", "timestamp"}},
			compaction: stcs,
		},
		{
			name:       "mentions",
			partition:  []column{{"conv", "varint"}, {"user", "varint"}},
			clustering: []column{{"conv_seq", "varint"}},
			compaction: lcs,
		},
		{
			name:       "clocks",
			partition:  []column{{"node", "bigint"}},
			regular:    []column{{"clock", "varint"}},
			compaction: lcs,
		},
		{
			name:       "outbox",
			partition:  []column{{"source", "int"}},
			clustering: []column{{"seq", "varint"}},
			regular:    []column{{"data", "blob"}},
			compaction: lcs,
		},
		{
			name:       "outbox_low",
			partition:  []column{{"source", "int"}},
			regular:    []column{{"low", "varint"}},
			compaction: lcs,
		},
		{
			name:       "applied",
			partition:  []column{{"dest", "int"}},
			clustering: []column{{"source", "int"}},
			regular:    []column{{"stream", "varint"}},
			compaction: lcs,
		},
		{
			name:       "batch_log",
			partition:  []column{{"slot", "int"}},
			clustering: []column{{"chunk", "int"}},
			regular:    []column{{"ts", "bigint"}, {"chunks", "int"}, {"data", "blob"}},
			compaction: stcs,
		},
		{
			name:       "batch_log_nodes",
			partition:  []column{{"node", "int"}, {"slot", "int"}},
			clustering: []column{{"chunk", "int"}},
			regular:    []column{{"ts", "bigint"}, {"chunks", "int"}, {"data", "blob"}},
			compaction: stcs,
		},
		{
			name:       "lease",
			partition:  []column{{"name", "text"}},
			regular:    []column{{"owner", "text"}, {"epoch", "bigint"}, {"ts_limit", "bigint"}},
			compaction: lcs,
		},
		{
			name:      "nodes",
			partition: []column{{"node", "int"}},
			regular: []column{{"incarnation", "bigint"}, {"addr", "text"}, {"peer", "text"},
				{"beat", "bigint"}, {"ts_limit", "bigint"}, {"state", "text"}},
			compaction: lcs,
		},
		{
			name:       "shards",
			partition:  []column{{"ring", "int"}},
			clustering: []column{{"shard", "int"}},
			regular: []column{{"node", "int"}, {"incarnation", "bigint"}, {"epoch", "bigint"},
				{"ts_floor", "bigint"}},
			compaction: lcs,
		},
		{
			name:       "restrictions",
			partition:  []column{{"ring", "int"}},
			clustering: []column{{"user", "varint"}, {"device", "text"}},
			regular:    []column{{"banned", "boolean"}, {"revoked_before", "bigint"}},
			compaction: lcs,
		},
		{
			name:       "settings",
			partition:  []column{{"name", "text"}},
			regular:    []column{{"value", "bigint"}},
			compaction: lcs,
		},
	}
}

// createTable returns the CREATE TABLE statement of t in keyspace ks.
func createTable(ks string, t table) string {
	var b strings.Builder
	fmt.Fprintf(&b, "CREATE TABLE IF NOT EXISTS %s.%s (", ks, t.name)
	for _, c := range slices.Concat(t.partition, t.clustering, t.regular) {
		fmt.Fprintf(&b, "%s %s, ", c.name, c.typ)
	}
	names := func(cs []column) string {
		var s []string
		for _, c := range cs {
			s = append(s, c.name)
		}
		return strings.Join(s, ", ")
	}
	fmt.Fprintf(&b, "PRIMARY KEY ((%s)", names(t.partition))
	if len(t.clustering) > 0 {
		fmt.Fprintf(&b, ", %s", names(t.clustering))
	}
	fmt.Fprintf(&b, ")) WITH compaction = {'class': '%s'}", t.compaction)
	if t.gcGrace != 0 {
		fmt.Fprintf(&b, " AND gc_grace_seconds = %d", t.gcGrace)
	}
	return b.String()
}

// createSchema creates the keyspace, for development and tests with one
// replica, and every table missing from it.
func createSchema(ctx context.Context, s *gocql.Session, ks string) error {
	stmts := []string{fmt.Sprintf("CREATE KEYSPACE IF NOT EXISTS %s WITH replication = "+
		"{'class': 'SimpleStrategy', 'replication_factor': 1}", ks)}
	for _, t := range tables() {
		stmts = append(stmts, createTable(ks, t))
	}
	for _, stmt := range stmts {
		// Schema changes are not idempotent in flight (a retried CREATE can
		// race itself), so they run once, without the retry policy.
		if err := s.Query(stmt).WithContext(ctx).RetryPolicy(nil).Exec(); err != nil {
			return fmt.Errorf("create schema: %s: %w", stmt, err)
		}
	}
	return addColumns(ctx, s, ks)
}

// addColumns adds the regular columns a table created by an earlier build
// lacks (CREATE TABLE IF NOT EXISTS leaves an existing table as it is), as
// deploy/cassandra/schema.cql's ALTER statements do for operators.
func addColumns(ctx context.Context, s *gocql.Session, ks string) error {
	have := make(map[[2]string]bool)
	iter := s.Query(`SELECT table_name, column_name FROM system_schema.columns WHERE keyspace_name = ?`, ks).
		WithContext(ctx).Iter()
	var tbl, col string
	for iter.Scan(&tbl, &col) {
		have[[2]string{tbl, col}] = true
	}
	if err := iter.Close(); err != nil {
		return fmt.Errorf("create schema: read columns: %w", err)
	}
	for _, t := range tables() {
		for _, c := range t.regular {
			if have[[2]string{t.name, c.name}] {
				continue
			}
			stmt := fmt.Sprintf("ALTER TABLE %s.%s ADD %s %s", ks, t.name, c.name, c.typ)
			if err := s.Query(stmt).WithContext(ctx).RetryPolicy(nil).Exec(); err != nil {
				return fmt.Errorf("create schema: %s: %w", stmt, err)
			}
		}
	}
	return nil
}

// checkSchema reports every table of keyspace ks that is missing or whose
// columns or keys differ from tables(). Extra tables and columns are allowed.
func checkSchema(ctx context.Context, s *gocql.Session, ks string) error {
	var name string
	err := s.Query(`SELECT keyspace_name FROM system_schema.keyspaces WHERE keyspace_name = ?`, ks).
		WithContext(ctx).Scan(&name)
	if errors.Is(err, gocql.ErrNotFound) {
		return fmt.Errorf("%w: keyspace %q does not exist: create it with deploy/cassandra/schema.cql "+
			"(or Config.CreateSchema for development)", ErrSchema, ks)
	}
	if err != nil {
		return fmt.Errorf("check schema: %w", err)
	}

	// have[table][column] describes a column as system_schema does.
	have := make(map[string]map[string]string)
	iter := s.Query(`SELECT table_name, column_name, kind, type, position, clustering_order
		FROM system_schema.columns WHERE keyspace_name = ?`, ks).WithContext(ctx).Iter()
	var tbl, col, kind, typ, order string
	var pos int
	for iter.Scan(&tbl, &col, &kind, &typ, &pos, &order) {
		if have[tbl] == nil {
			have[tbl] = make(map[string]string)
		}
		have[tbl][col] = describe(kind, typ, pos, order)
	}
	if err := iter.Close(); err != nil {
		return fmt.Errorf("check schema: %w", err)
	}

	var problems []string
	for _, t := range tables() {
		cols, ok := have[t.name]
		if !ok {
			problems = append(problems, fmt.Sprintf("table %s.%s is missing", ks, t.name))
			continue
		}
		for _, want := range expectedColumns(t) {
			got, ok := cols[want.name]
			switch {
			case !ok:
				problems = append(problems, fmt.Sprintf("table %s.%s has no column %s (want %s)", ks, t.name, want.name, want.desc))
			case got != want.desc:
				problems = append(problems, fmt.Sprintf("table %s.%s column %s is %s, want %s", ks, t.name, want.name, got, want.desc))
			}
		}
	}
	if len(problems) > 0 {
		return fmt.Errorf("%w: %s; apply deploy/cassandra/schema.cql", ErrSchema, strings.Join(problems, "; "))
	}
	return nil
}

type expected struct{ name, desc string }

// expectedColumns returns t's columns as system_schema.columns describes them.
func expectedColumns(t table) []expected {
	var out []expected
	for i, c := range t.partition {
		out = append(out, expected{c.name, describe("partition_key", c.typ, i, "none")})
	}
	for i, c := range t.clustering {
		out = append(out, expected{c.name, describe("clustering", c.typ, i, "asc")})
	}
	for _, c := range t.regular {
		out = append(out, expected{c.name, describe("regular", c.typ, -1, "none")})
	}
	return out
}

// describe names a column's place in its table for an error message.
func describe(kind, typ string, pos int, order string) string {
	switch kind {
	case "regular":
		return "a regular " + typ + " column"
	case "clustering":
		return fmt.Sprintf("%s clustering column %d (%s)", typ, pos, order)
	}
	return fmt.Sprintf("%s %s column %d", typ, strings.ReplaceAll(kind, "_", " "), pos)
}

// CreateSchema creates cfg's keyspace (one replica) and its tables when
// missing, as Open does with cfg.CreateSchema, for development and tests: in
// cluster mode the nodes table must exist before the node joins, and the
// node must have joined before Open.
func CreateSchema(ctx context.Context, cfg Config) error {
	cfg.Fence = nil
	if err := cfg.setDefaults(); err != nil {
		return fmt.Errorf("timeline/cassandra: create schema: %w", err)
	}
	session, err := newSession(cfg)
	if err != nil {
		return fmt.Errorf("timeline/cassandra: create schema: connect to %v: %w", cfg.Hosts, err)
	}
	defer session.Close()
	if err := createSchema(ctx, session, cfg.Keyspace); err != nil {
		return fmt.Errorf("timeline/cassandra: %w", err)
	}
	return nil
}

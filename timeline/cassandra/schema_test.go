package cassandra_test

import (
	"errors"
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/gocql/gocql"

	"github.com/inboxd/inboxd/timeline/cassandra"
)

// applySchemaFile runs deploy/cassandra/schema.cql, as an operator would,
// with the keyspace renamed to ks.
func applySchemaFile(t *testing.T, s *gocql.Session, ks string) {
	t.Helper()
	file, err := os.ReadFile("../../deploy/cassandra/schema.cql")
	if err != nil {
		t.Fatal(err)
	}
	cql := regexp.MustCompile(`--.*`).ReplaceAllString(string(file), "")
	cql = regexp.MustCompile(`\binboxd\b`).ReplaceAllString(cql, ks)
	for stmt := range strings.SplitSeq(cql, ";") {
		if stmt = strings.TrimSpace(stmt); stmt != "" {
			if err := s.Query(stmt).Exec(); err != nil {
				t.Fatalf("%s: %v", stmt, err)
			}
		}
	}
}

// describeKeyspace returns every column and every table's compaction class
// of keyspace ks, one line each.
func describeKeyspace(t *testing.T, s *gocql.Session, ks string) string {
	t.Helper()
	var lines []string
	iter := s.Query(`SELECT table_name, column_name, kind, type, position, clustering_order
		FROM system_schema.columns WHERE keyspace_name = ?`, ks).Iter()
	var table, column, kind, typ, order string
	var pos int
	for iter.Scan(&table, &column, &kind, &typ, &pos, &order) {
		lines = append(lines, fmt.Sprintln(table, column, kind, typ, pos, order))
	}
	if err := iter.Close(); err != nil {
		t.Fatal(err)
	}
	iter = s.Query(`SELECT table_name, compaction FROM system_schema.tables WHERE keyspace_name = ?`, ks).Iter()
	var compaction map[string]string
	for iter.Scan(&table, &compaction) {
		lines = append(lines, fmt.Sprintln(table, compaction["class"]))
	}
	if err := iter.Close(); err != nil {
		t.Fatal(err)
	}
	return strings.Join(lines, "")
}

func TestSchema(t *testing.T) {
	sess := session(t)
	created := config(t, "")
	open(t, created).Close() // CreateSchema
	fromFile := config(t, "_file")
	fromFile.CreateSchema = false

	t.Run("File", func(t *testing.T) {
		applySchemaFile(t, sess, fromFile.Keyspace)
		got, want := describeKeyspace(t, sess, fromFile.Keyspace), describeKeyspace(t, sess, created.Keyspace)
		if got != want {
			t.Fatalf("deploy/cassandra/schema.cql differs from the schema the store creates:\nfile:\n%s\nstore:\n%s", got, want)
		}
		if err := open(t, fromFile).Close(); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("Mismatch", func(t *testing.T) {
		for _, stmt := range []string{
			"DROP TABLE %[1]s.dedups",
			"ALTER TABLE %[1]s.messages DROP kind",
			"DROP TABLE %[1]s.clocks",
			"CREATE TABLE %[1]s.clocks (node bigint PRIMARY KEY, clock bigint)",
		} {
			if err := sess.Query(fmt.Sprintf(stmt, fromFile.Keyspace)).Exec(); err != nil {
				t.Fatal(err)
			}
		}
		_, err := cassandra.Open(t.Context(), fromFile)
		if !errors.Is(err, cassandra.ErrSchema) {
			t.Fatalf("Open: got %v, want ErrSchema", err)
		}
		t.Log(err)
		for _, want := range []string{
			fromFile.Keyspace + ".dedups is missing",
			fromFile.Keyspace + ".messages has no column kind (want a regular int column)",
			fromFile.Keyspace + ".clocks column clock is a regular bigint column, want a regular varint column",
		} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("the error %q does not say %q", err, want)
			}
		}
	})

	t.Run("NoKeyspace", func(t *testing.T) {
		cfg := config(t, "_missing")
		cfg.CreateSchema = false
		_, err := cassandra.Open(t.Context(), cfg)
		if !errors.Is(err, cassandra.ErrSchema) || !strings.Contains(err.Error(), `keyspace "`+cfg.Keyspace+`" does not exist`) {
			t.Fatalf("Open: got %v, want ErrSchema naming the keyspace", err)
		}
	})

	t.Run("BucketSize", func(t *testing.T) {
		cfg := created
		cfg.BucketSize = cassandra.DefaultBucketSize + 1
		_, err := cassandra.Open(t.Context(), cfg)
		if !errors.Is(err, cassandra.ErrSchema) || !strings.Contains(err.Error(), "inbox_bucket_size 10000") {
			t.Fatalf("Open: got %v, want ErrSchema naming the recorded bucket size", err)
		}
	})
}

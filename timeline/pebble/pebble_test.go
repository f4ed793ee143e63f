package pebble_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	cpebble "github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"go.uber.org/goleak"

	"github.com/inboxd/inboxd/timeline"
	"github.com/inboxd/inboxd/timeline/pebble"
	"github.com/inboxd/inboxd/timeline/timelinetest"
	"github.com/inboxd/inboxd/wire"
)

// TestMain checks that no test leaves a goroutine behind: a Store must stop
// all of Pebble's background work when it closes.
func TestMain(m *testing.M) {
	if dir := os.Getenv(lockChildEnv); dir != "" {
		os.Exit(lockChild(dir))
	}
	goleak.VerifyTestMain(m)
}

// open opens a store and closes it when the test ends, unless the test did.
func open(t testing.TB, opts pebble.Options) *pebble.Store {
	t.Helper()
	s, err := pebble.Open(opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil && !errors.Is(err, timeline.ErrClosed) {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

func TestConformanceMem(t *testing.T) {
	timelinetest.Run(t, func(t *testing.T) timeline.Store {
		return open(t, pebble.Options{Dir: "db", FS: vfs.NewMem()})
	})
}

// TestConformanceDisk runs the suite on the OS filesystem with fsync on, as
// inboxd runs.
func TestConformanceDisk(t *testing.T) {
	if testing.Short() {
		t.Skip("syncs to disk")
	}
	timelinetest.Run(t, func(t *testing.T) timeline.Store {
		return open(t, pebble.Options{Dir: filepath.Join(t.TempDir(), "db")})
	})
}

func TestLockedInProcess(t *testing.T) {
	for name, opts := range map[string]pebble.Options{
		"Mem":  {Dir: "db", FS: vfs.NewMem()},
		"Disk": {Dir: t.TempDir()},
	} {
		t.Run(name, func(t *testing.T) {
			first := open(t, opts)
			_, err := pebble.Open(opts)
			if !errors.Is(err, pebble.ErrLocked) {
				t.Fatalf("second Open: got %v, want ErrLocked", err)
			}
			if !strings.Contains(err.Error(), opts.Dir) {
				t.Errorf("the error %q does not name the directory", err)
			}
			// Once the first store is closed the directory is free again.
			if err := first.Close(); err != nil {
				t.Fatal(err)
			}
			open(t, opts)
		})
	}
}

// lockChildEnv names the data directory a re-executed test binary tries to
// open while its parent holds it.
const lockChildEnv = "INBOXD_PEBBLE_LOCK_CHILD_DIR"

// lockChild is the child process of TestLockedOtherProcess: it reports the
// error of Open and exits non-zero with it.
func lockChild(dir string) int {
	s, err := pebble.Open(pebble.Options{Dir: dir})
	if err != nil {
		fmt.Println(err)
		if errors.Is(err, pebble.ErrLocked) {
			return 3
		}
		return 4
	}
	s.Close()
	fmt.Println("opened a directory held by another process")
	return 0
}

func TestLockedOtherProcess(t *testing.T) {
	dir := t.TempDir()
	open(t, pebble.Options{Dir: dir})

	cmd := exec.CommandContext(t.Context(), os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), lockChildEnv+"="+dir)
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 3 {
		t.Fatalf("child: %v, want exit status 3 (ErrLocked); output:\n%s", err, out)
	}
	t.Logf("child: %s", out)
	for _, want := range []string{"lock", "in use by another inboxd process", dir} {
		if !bytes.Contains(out, []byte(want)) {
			t.Errorf("child's error %q does not mention %q", out, want)
		}
	}
}

// rawSet writes key=val straight into the Pebble database in dir, the way a
// newer inboxd, another program or a disk fault might have left it.
func rawSet(t *testing.T, fs vfs.FS, dir string, key, val []byte) {
	t.Helper()
	db, err := cpebble.Open(dir, &cpebble.Options{FS: fs})
	if err != nil {
		t.Fatal(err)
	}
	if err := errors.Join(db.Set(key, val, cpebble.Sync), db.Close()); err != nil {
		t.Fatal(err)
	}
}

func TestFormatVersion(t *testing.T) {
	tests := []struct {
		name     string
		key, val []byte
		create   bool // open a store first, so that the version key exists
	}{
		{"NewerVersion", []byte("v"), []byte{1, 4}, true},
		{"CorruptVersion", []byte("v"), []byte{1, 0x80}, true},
		{"NotAnInboxdStore", []byte("someone else's key"), []byte("x"), false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fs := vfs.NewMem()
			if tc.create {
				s := open(t, pebble.Options{Dir: "db", FS: fs})
				if err := s.Close(); err != nil {
					t.Fatal(err)
				}
			}
			rawSet(t, fs, "db", tc.key, tc.val)
			_, err := pebble.Open(pebble.Options{Dir: "db", FS: fs})
			if !errors.Is(err, pebble.ErrUnknownFormat) {
				t.Fatalf("Open: got %v, want ErrUnknownFormat", err)
			}
			// The refused directory is not left locked.
			if _, err := cpebble.LockDirectory("db", fs); err != nil {
				t.Fatalf("after a refused Open the directory is still locked: %v", err)
			}
		})
	}
}

func TestReopen(t *testing.T) {
	fs := vfs.NewMem()
	s := open(t, pebble.Options{Dir: "db", FS: fs})
	b := timeline.Batch{Rows: []timeline.Row{{User: 1, Seq: 1, Conv: 2, ConvSeq: 3, MsgID: 4, Kind: wire.KindText}}}
	if err := s.Commit(t.Context(), &b); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = open(t, pebble.Options{Dir: "db", FS: fs})
	rows, err := s.Inbox(t.Context(), 1, timeline.Range{})
	if err != nil || len(rows) != 1 || rows[0] != b.Rows[0] {
		t.Fatalf("after reopening: Inbox = %+v, %v; want %+v", rows, err, b.Rows)
	}
}

// TestCorruptValue: a value the decoders cannot read fails the read with an
// error naming the key; it does not panic or return garbage.
func TestCorruptValue(t *testing.T) {
	fs := vfs.NewMem()
	s := open(t, pebble.Options{Dir: "db", FS: fs})
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	key := []byte{'i', 0, 0, 0, 0, 0, 0, 0, 7, 0, 0, 0, 0, 0, 0, 0, 1}
	rawSet(t, fs, "db", key, []byte{1, 0xFF})
	s = open(t, pebble.Options{Dir: "db", FS: fs})
	rows, err := s.Inbox(t.Context(), 7, timeline.Range{})
	if err == nil || !strings.Contains(err.Error(), "corrupt") || rows != nil {
		t.Fatalf("Inbox of a corrupt row = %+v, %v; want a corruption error", rows, err)
	}
}

// TestCommitContextDone: beyond the suite's check of the error, this
// backend writes nothing for a Commit whose context is already done.
func TestCommitContextDone(t *testing.T) {
	s := open(t, pebble.Options{Dir: "db", FS: vfs.NewMem()})
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	b := timeline.Batch{Rows: []timeline.Row{{User: 1, Seq: 1}}}
	if err := s.Commit(ctx, &b); !errors.Is(err, context.Canceled) {
		t.Fatalf("Commit: got %v, want context.Canceled", err)
	}
	if seq, err := s.LastInboxSeq(t.Context(), 1); seq != 0 || err != nil {
		t.Fatalf("LastInboxSeq after a cancelled Commit = %d, %v; want 0", seq, err)
	}
}

// TestCloseWhileInUse closes a store under concurrent readers and writers:
// every call returns nil or ErrClosed, and none crashes.
func TestCloseWhileInUse(t *testing.T) {
	s := open(t, pebble.Options{Dir: "db", FS: vfs.NewMem()})
	var wg sync.WaitGroup
	calls := []func(user, seq uint64) error{
		func(user, seq uint64) error {
			return s.Commit(t.Context(), &timeline.Batch{Rows: []timeline.Row{{User: user, Seq: seq}}})
		},
		func(user, _ uint64) error {
			_, err := s.Inbox(t.Context(), user, timeline.Range{Desc: true})
			return err
		},
		func(user, _ uint64) error { _, err := s.LastInboxSeq(t.Context(), user); return err },
		func(user, _ uint64) error { _, err := s.Conversations(t.Context(), user); return err },
	}
	for i, call := range calls {
		wg.Go(func() {
			for seq := uint64(1); ; seq++ {
				err := call(uint64(i), seq)
				if errors.Is(err, timeline.ErrClosed) {
					return
				}
				if err != nil {
					t.Errorf("call %d: %v", i, err)
					return
				}
			}
		})
	}
	time.Sleep(20 * time.Millisecond)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
}

// TestPrivateModes opens a store under the usual umask (022): the data
// directory is 0700 and every file in it 0600, so other local users read
// no message.
func TestPrivateModes(t *testing.T) {
	old := syscall.Umask(0o022)
	defer syscall.Umask(old)
	dir := filepath.Join(t.TempDir(), "data")
	b := timeline.Batch{Rows: []timeline.Row{{User: 1, Seq: 1, Conv: 2, ConvSeq: 3, MsgID: 4, Kind: wire.KindText}}}
	for range 2 { // reopening replays the WAL into new files
		s := open(t, pebble.Options{Dir: dir})
		if err := s.Commit(t.Context(), &b); err != nil {
			t.Fatal(err)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
	var files int
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		want := os.FileMode(0o600)
		if d.IsDir() {
			want = 0o700
		} else {
			files++
		}
		if fi.Mode().Perm() != want {
			t.Errorf("%s: mode %v, want %v", path, fi.Mode().Perm(), want)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if files < 4 {
		t.Fatalf("only %d files: the walk saw too little to show anything", files)
	}
}

// TestApplyVisibleBeforeWait shows why a caller of Apply caps its reads at
// the batches it has waited for: readers see a batch as soon as Apply
// returns, whether or not its sync has completed.
func TestApplyVisibleBeforeWait(t *testing.T) {
	s := open(t, pebble.Options{Dir: t.TempDir()})
	b := &timeline.Batch{Rows: []timeline.Row{{User: 7, Seq: 1, Conv: 3, ConvSeq: 1, MsgID: 9, Kind: wire.KindText}}}
	p, err := s.Apply(t.Context(), b)
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	rows, rerr := s.Inbox(t.Context(), 7, timeline.Range{})
	if err := p.Wait(); err != nil {
		t.Fatalf("Wait: %v", err)
	}
	if rerr != nil {
		t.Fatalf("Inbox: %v", rerr)
	}
	if len(rows) != 1 || rows[0].MsgID != 9 {
		t.Fatalf("Inbox after Apply, before Wait = %+v, want the applied row", rows)
	}
}

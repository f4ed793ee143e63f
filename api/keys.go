package api

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"
)

// ErrNoKeys is returned by NewKeys for a key file without a key: an API
// nobody can call is a mistake to report at start.
var ErrNoKeys = errors.New("api: the key file holds no key")

// MinKeyLen is the shortest API key accepted, in bytes.
const MinKeyLen = 16

// Keys are the API keys of a key file: one a line, blank lines and lines
// starting with # skipped. The file is read again whenever its modification
// time or size changes, checked on each request: rotating a key is adding
// the new line, moving the backends over, then deleting the old line, with
// no signal and no restart.
type Keys struct {
	path string

	mu      sync.Mutex
	modTime time.Time
	size    int64
	sums    [][sha256.Size]byte // the keys' SHA-256: compared in constant time
	failing string              // the reload error last returned, not repeated
}

// NewKeys reads the key file at path.
func NewKeys(path string) (*Keys, error) {
	k := &Keys{path: path}
	if err := k.reload(); err != nil {
		return nil, err
	}
	if len(k.sums) == 0 {
		return nil, fmt.Errorf("%w: %s", ErrNoKeys, path)
	}
	return k, nil
}

// reload reads the file again if it changed since the last read. Called
// with k.mu held, or before k is shared.
func (k *Keys) reload() error {
	fi, err := os.Stat(k.path)
	if err != nil {
		return fmt.Errorf("api: key file: %w", err)
	}
	if fi.ModTime().Equal(k.modTime) && fi.Size() == k.size && k.sums != nil {
		return nil
	}
	b, err := os.ReadFile(k.path)
	if err != nil {
		return fmt.Errorf("api: key file: %w", err)
	}
	sums, err := parseKeys(b)
	if err != nil {
		return fmt.Errorf("api: key file %s: %w", k.path, err)
	}
	k.modTime, k.size, k.sums = fi.ModTime(), fi.Size(), sums
	return nil
}

// parseKeys returns the hashes of the keys of a key file.
func parseKeys(b []byte) ([][sha256.Size]byte, error) {
	sums := [][sha256.Size]byte{}
	lines := bufio.NewScanner(bytes.NewReader(b))
	for n := 1; lines.Scan(); n++ {
		line := strings.TrimSpace(lines.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if len(line) < MinKeyLen || strings.ContainsAny(line, " \t") {
			// The line itself is never quoted: it may be a key.
			return nil, fmt.Errorf("line %d: a key is at least %d bytes with no blanks", n, MinKeyLen)
		}
		sums = append(sums, sha256.Sum256([]byte(line)))
	}
	return sums, lines.Err()
}

// Check reports whether key is one of the file's keys. A file that cannot
// be read again keeps the keys last read, and the error is returned for
// the log, once until it changes or the file is read again; a file emptied
// of keys refuses every key.
func (k *Keys) Check(key string) (bool, error) {
	k.mu.Lock()
	err := k.reload()
	switch {
	case err == nil:
		k.failing = ""
	case err.Error() == k.failing:
		err = nil
	default:
		k.failing = err.Error()
	}
	sums := k.sums
	k.mu.Unlock()
	sum := sha256.Sum256([]byte(key))
	found := 0
	// Every key is compared, so that the time taken says nothing of which
	// matched; comparing hashes makes every comparison the same length.
	for _, s := range sums {
		found |= subtle.ConstantTimeCompare(sum[:], s[:])
	}
	return found == 1 && key != "", err
}

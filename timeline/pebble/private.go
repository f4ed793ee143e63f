package pebble

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// Modes of what the store creates on the OS filesystem: the data directory
// holds every message, so other local users get nothing, whatever the
// process's umask.
const (
	dirMode  os.FileMode = 0o700
	fileMode os.FileMode = 0o600
)

// privateFS is the OS filesystem, narrowing every file and directory it
// creates to fileMode or dirMode. Pebble's OS filesystem asks for 0666 and
// leaves the rest to the umask; the file is narrowed right after it is
// created, and the directory's own mode keeps others out in between.
type privateFS struct{ vfs.FS }

func (fs privateFS) Create(name string, c vfs.DiskWriteCategory) (vfs.File, error) {
	f, err := fs.FS.Create(name, c)
	return narrow(f, err, name)
}

func (fs privateFS) OpenReadWrite(name string, c vfs.DiskWriteCategory, opts ...vfs.OpenOption) (vfs.File, error) {
	f, err := fs.FS.OpenReadWrite(name, c, opts...)
	return narrow(f, err, name)
}

func (fs privateFS) ReuseForWrite(oldname, newname string, c vfs.DiskWriteCategory) (vfs.File, error) {
	f, err := fs.FS.ReuseForWrite(oldname, newname, c)
	return narrow(f, err, newname)
}

func (fs privateFS) Lock(name string) (io.Closer, error) {
	l, err := fs.FS.Lock(name)
	return narrow(l, err, name)
}

// MkdirAll creates directories dirMode, whatever Pebble asks: the umask
// only takes bits away, and dirMode has none for it to take.
func (fs privateFS) MkdirAll(dir string, _ os.FileMode) error {
	return fs.FS.MkdirAll(dir, dirMode)
}

// narrow sets name's mode to fileMode once it is open; on failure it closes
// what was opened.
func narrow[T io.Closer](f T, err error, name string) (T, error) {
	if err != nil {
		return f, err
	}
	if err := os.Chmod(name, fileMode); err != nil {
		var zero T
		return zero, errors.Join(fmt.Errorf("timeline/pebble: chmod %s: %w", name, err), f.Close())
	}
	return f, nil
}

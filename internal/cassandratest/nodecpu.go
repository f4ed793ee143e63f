package cassandratest

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// NodeCPU returns the CPU time used so far by the node that
// deploy/cassandra/cassandra.sh started on this machine, found by the
// script's pid file (under INBOXD_CASSANDRA_STATE, or the script's default
// state directory), so that a benchmark can say what its load cost the node
// as well as its own process. ok is false when no such node runs here.
func NodeCPU() (d time.Duration, ok bool) {
	state := os.Getenv("INBOXD_CASSANDRA_STATE")
	if state == "" {
		home := os.Getenv("INBOXD_CASSANDRA_HOME")
		if home == "" {
			h, err := os.UserHomeDir()
			if err != nil {
				return 0, false
			}
			home = filepath.Join(h, ".cache", "inboxd", "cassandra")
		}
		state = filepath.Join(home, "state")
	}
	pid, err := os.ReadFile(filepath.Join(state, "cassandra.pid"))
	if err != nil {
		return 0, false
	}
	stat, err := os.ReadFile(filepath.Join("/proc", strings.TrimSpace(string(pid)), "stat"))
	if err != nil {
		return 0, false
	}
	// The fields after the command name, which is in parentheses and may
	// hold spaces: utime and stime are the 14th and 15th of the line, in
	// clock ticks of 1/100 s (USER_HZ, 100 on Linux whatever the kernel's
	// HZ).
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, false
	}
	f := strings.Fields(string(stat[i+1:]))
	if len(f) < 13 {
		return 0, false
	}
	var ticks int64
	for _, s := range f[11:13] {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return 0, false
		}
		ticks += n
	}
	return time.Duration(ticks) * 10 * time.Millisecond, true
}

package client

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"strings"
	"time"
)

// SplitAddrs splits a comma-separated list of addresses, as inboxctl's
// --addr takes it, dropping blanks around and between them.
func SplitAddrs(s string) []string {
	var out []string
	for a := range strings.SplitSeq(s, ",") {
		if a = strings.TrimSpace(a); a != "" {
			out = append(out, a)
		}
	}
	return out
}

// addrList is the rotation of Config.Addrs: shuffled once, so that clients
// given the same list spread over the nodes, then tried in turn from the
// one that answered last. Only the goroutine that connects uses it.
type addrList struct {
	addrs []string
	next  int // the index tried first
}

func newAddrList(addrs []string, shuffle bool) *addrList {
	a := &addrList{addrs: append([]string(nil), addrs...)}
	if !shuffle {
		return a
	}
	rand.Shuffle(len(a.addrs), func(i, j int) { a.addrs[i], a.addrs[j] = a.addrs[j], a.addrs[i] })
	return a
}

// pass makes the rotation start after addr (which it dialled), so that a
// node that cannot serve now is not asked first again.
func (a *addrList) pass(addr string) {
	if a.addrs[a.next] == addr {
		a.next = (a.next + 1) % len(a.addrs)
	}
}

// dial connects to the first address of the rotation that answers, trying
// each once, each within timeout. It returns the connection and its
// address, or every address's error.
func (a *addrList) dial(ctx context.Context, timeout time.Duration, dial func(context.Context, string) (net.Conn, error)) (net.Conn, string, error) {
	var errs []error
	for i := range a.addrs {
		k := (a.next + i) % len(a.addrs)
		dctx, cancel := context.WithTimeout(ctx, timeout)
		nc, err := dial(dctx, a.addrs[k])
		cancel()
		if err == nil {
			a.next = k
			return nc, a.addrs[k], nil
		}
		errs = append(errs, fmt.Errorf("client: connect to %s: %w", a.addrs[k], err))
		if ctx.Err() != nil {
			break
		}
	}
	// Start the next round one further, so that an address that hangs
	// until the timeout is not always the first to wait for.
	a.next = (a.next + 1) % len(a.addrs)
	return nil, "", errors.Join(errs...)
}

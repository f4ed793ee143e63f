package gateway

import (
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"time"
)

// gnetLogger routes gnet's own log lines to slog.
type gnetLogger struct{ log *slog.Logger }

func (l gnetLogger) Debugf(format string, args ...any) { l.log.Debug(fmt.Sprintf(format, args...)) }
func (l gnetLogger) Infof(format string, args ...any)  { l.log.Debug(fmt.Sprintf(format, args...)) }
func (l gnetLogger) Warnf(format string, args ...any)  { l.log.Warn(fmt.Sprintf(format, args...)) }
func (l gnetLogger) Errorf(format string, args ...any) { l.log.Error(fmt.Sprintf(format, args...)) }
func (l gnetLogger) Fatalf(format string, args ...any) { l.log.Error(fmt.Sprintf(format, args...)) }

// warning is a kind of event the gateway warns about in its log: signs of
// abuse or of clients in trouble, each also counted in the metrics.
type warning uint8

const (
	warnAuthFailed warning = iota
	warnFlood
	warnSlowReader
	warnConnLimit
	warnHandshake
	numWarnings
)

// warnEvery is how often each kind of warning may reach the log: an attack
// makes thousands of events a second, and one line per event would cost more
// than the events and bury everything else.
const warnEvery = 10 * time.Second

// warnLog writes at most one line per kind of warning per warnEvery, telling
// in each how many of that kind it held back since the last. Lines never
// hold a token: only reasons, addresses and user ids.
type warnLog struct {
	log *slog.Logger
	now func() time.Time

	mu   sync.Mutex
	last [numWarnings]time.Time
	held [numWarnings]int
}

func (w *warnLog) warn(kind warning, msg string, args ...any) {
	now := w.now()
	w.mu.Lock()
	if !w.last[kind].IsZero() && now.Sub(w.last[kind]) < warnEvery {
		w.held[kind]++
		w.mu.Unlock()
		return
	}
	held := w.held[kind]
	w.last[kind], w.held[kind] = now, 0
	w.mu.Unlock()
	w.log.Warn(msg, append(args, "suppressed", held)...)
}

// authFailed counts a refused AUTH and warns about it.
func (s *Server) authFailed(why authFailure, remote netip.AddrPort) {
	s.metrics.authFailures[why].Inc()
	s.warn.warn(warnAuthFailed, "gateway: authentication failed", "reason", authFailureNames[why], "remote", remote)
}

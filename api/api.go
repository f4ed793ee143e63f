// Package api is inboxd's server API: HTTP and JSON for the application's
// backend, on a listener of its own (docs/api.md; docs/api.yaml is the
// OpenAPI document, and a test holds the routes served to it).
//
// A backend acts on behalf of its users (creates a group for a user,
// invites, kicks, sends as a user), posts system messages into a group
// and recalls any message of one without being a member, and reads what the server knows of a user (the
// devices online on this node, the conversation list with unread counts).
//
// Every call carries one of the keys of the key file (Keys) as
// "Authorization: Bearer <key>"; a call without one is answered 401 and
// changes nothing. A failure is a JSON Error whose code is the name of a
// protocol error code. Request bodies are decoded strictly: unknown
// fields, wrong types and trailing data are 400, and a body past MaxBody
// is 413.
//
// The API counts every call (inboxd_api_requests_total{route,code}) and
// times it (inboxd_api_request_duration_seconds{route}), registered with
// Config.Registerer.
//
// Users can be banned (every device disconnected with BANNED, every later
// AUTH and send refused until unbanned) and their tokens revoked, for one
// device or all (tokens issued before the revocation are refused, the
// devices connected are disconnected with REVOKED): Moderation keeps these
// in the store and in memory, where the gateway checks them.
//
// This package is the server's own (README, "Layout"): backends speak
// HTTP to it and import nothing.
package api

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/inboxd/inboxd/gateway"
	"github.com/inboxd/inboxd/inbox"
	"github.com/inboxd/inboxd/timeline"
	"github.com/inboxd/inboxd/wire"
)

// MaxBody bounds a request body in bytes: a message body of the protocol's
// default limit, escaped as JSON at worst, with room for the other fields.
const MaxBody = 6*wire.DefaultMaxBody + 4096

// Service is what the API needs of the inbox; *inbox.Service has it.
type Service interface {
	CreateGroup(ctx context.Context, owner uint64, spec inbox.NewGroup) (timeline.Group, error)
	CreateGroupOnce(ctx context.Context, owner uint64, spec inbox.NewGroup, key string) (timeline.Group, bool, error)
	Invite(ctx context.Context, actor, conv uint64, users []uint64) error
	Kick(ctx context.Context, actor, conv, user uint64) error
	Dismiss(ctx context.Context, actor, conv uint64) error
	SetRole(ctx context.Context, actor, conv, user uint64, role wire.Role) error
	MuteMember(ctx context.Context, actor, conv, user uint64, until time.Time) error
	MuteGroup(ctx context.Context, actor, conv uint64, until time.Time) error
	SetGroupProfile(ctx context.Context, actor, conv uint64, p inbox.Profile) error
	Describe(ctx context.Context, conv uint64) (inbox.GroupInfo, error)
	SendGroupMessage(ctx context.Context, sender, conv uint64, clientMsgID string, kind wire.Kind, body []byte) (inbox.SendResult, error)
	SendSystemMessage(ctx context.Context, conv uint64, clientMsgID string, body []byte) (inbox.SendResult, error)
	RecallAsSystem(ctx context.Context, conv, convSeq uint64, clientMsgID string) (inbox.SendResult, error)
	Conversations(ctx context.Context, user uint64, offset, limit int) (inbox.ConversationsPage, error)
}

// Sessions is what the API needs of the gateway; *gateway.Server has it.
type Sessions interface {
	Devices(user uint64) []gateway.Device
	Rechecker
}

// Config configures Handler.
type Config struct {
	Keys     *Keys
	Service  Service
	Sessions Sessions
	// Moderation keeps the bans and revocations; the gateway must have it
	// as its Gate.
	Moderation *Moderation
	// Peers, in a cluster, tells the other nodes of each ban, unban and
	// revocation as it is made; a node it does not reach within
	// SyncInterval learns it by its Follower's next re-read. Nil: one node.
	Peers Announcer
	// Node is this server's node id, reported with each online device.
	Node int64
	// Timeout bounds one call (default 10 s).
	Timeout    time.Duration
	Logger     *slog.Logger
	Registerer prometheus.Registerer
	// Now is the time of a revocation (default time.Now).
	Now func() time.Time
}

// Handler returns the API's routes.
func Handler(cfg Config) (http.Handler, error) {
	if cfg.Keys == nil || cfg.Service == nil || cfg.Sessions == nil || cfg.Moderation == nil {
		return nil, errors.New("api: Config needs Keys, Service, Sessions and Moderation")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	h := &handler{cfg: cfg, metrics: m, mux: http.NewServeMux()}
	for _, r := range h.routes() {
		h.mux.Handle(r.pattern, h.call(r.pattern, r.fn))
		m.latency.WithLabelValues(r.pattern) // exported from the start
		method, _, _ := strings.Cut(r.pattern, " ")
		if !slices.Contains(h.methods, method) {
			h.methods = append(h.methods, method)
		}
	}
	m.latency.WithLabelValues(unknownRoute)
	return h, nil
}

// unknownRoute is the route label of calls no route serves.
const unknownRoute = "unknown"

// handler serves the routes behind the key check.
type handler struct {
	cfg     Config
	metrics *metrics
	mux     *http.ServeMux
	methods []string // of the routes, for the Allow header of a 405
}

// route is one call of the API: pattern is its method and path.
type route struct {
	pattern string
	fn      func(r *http.Request) (status int, resp any, err error)
}

// ServeHTTP answers what the mux has no route for in JSON, and counts it:
// 405 with an Allow header for a path served with other methods, else 404.
// The key is checked first, so that a caller without one learns no path.
func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if _, pattern := h.mux.Handler(r); pattern != "" {
		h.mux.ServeHTTP(w, r)
		return
	}
	start := time.Now()
	if !h.authorized(w, r, unknownRoute, start) {
		return
	}
	e := failure(http.StatusNotFound, wire.CodeUnknownCommand, "no such call: "+r.Method+" "+r.URL.Path)
	if allow := h.allowed(r); len(allow) > 0 {
		w.Header().Set("Allow", strings.Join(allow, ", "))
		e = failure(http.StatusMethodNotAllowed, wire.CodeUnknownCommand,
			fmt.Sprintf("%s is not served on %s: use %s", r.Method, r.URL.Path, strings.Join(allow, " or ")))
	}
	h.answer(w, unknownRoute, start, e.status, nil, e)
}

// allowed returns the methods the routes serve r's path with, HEAD with
// GET as the mux serves it.
func (h *handler) allowed(r *http.Request) []string {
	var allow []string
	probe := r.Clone(r.Context())
	for _, m := range h.methods {
		probe.Method = m
		if _, pattern := h.mux.Handler(probe); pattern != "" {
			allow = append(allow, m)
			if m == http.MethodGet {
				allow = append(allow, http.MethodHead)
			}
		}
	}
	return allow
}

// call wraps a route with the key check, the body limit, the call's
// timeout, the JSON answer and the metrics.
func (h *handler) call(pattern string, fn func(r *http.Request) (int, any, error)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		if !h.authorized(w, r, pattern, start) {
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, MaxBody)
		ctx, cancel := context.WithTimeout(r.Context(), h.cfg.Timeout)
		defer cancel()
		status, resp, err := fn(r.WithContext(ctx))
		h.answer(w, pattern, start, status, resp, err)
	})
}

// authorized checks the call's key, and answers 401 when it is missing or
// wrong. The key is never logged.
func (h *handler) authorized(w http.ResponseWriter, r *http.Request, pattern string, start time.Time) bool {
	key, ok := bearer(r.Header.Get("Authorization"))
	valid, err := h.cfg.Keys.Check(key)
	if err != nil {
		h.cfg.Logger.Error("api: key file unreadable; keeping the keys last read", "err", err)
	}
	if ok && valid {
		return true
	}
	w.Header().Set("WWW-Authenticate", `Bearer realm="inboxd"`)
	h.answer(w, pattern, start, 0, nil, failure(http.StatusUnauthorized, wire.CodeUnauthenticated, "missing or unknown API key"))
	return false
}

func bearer(header string) (string, bool) {
	const prefix = "Bearer "
	if len(header) <= len(prefix) || header[:len(prefix)] != prefix {
		return "", false
	}
	return header[len(prefix):], true
}

func (h *handler) answer(w http.ResponseWriter, pattern string, start time.Time, status int, resp any, err error) {
	if err != nil {
		e := classify(err)
		if e.code == wire.CodeInternal {
			h.cfg.Logger.Error("api: call failed", "route", pattern, "err", err)
		}
		status = e.status
		writeError(w, e)
	} else {
		writeJSON(w, status, resp)
	}
	h.metrics.requests.WithLabelValues(pattern, strconv.Itoa(status)).Inc()
	h.metrics.latency.WithLabelValues(pattern).Observe(time.Since(start).Seconds())
}

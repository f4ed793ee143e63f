package bench

import (
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/inboxd/inboxd/wire"
)

// Report is what a Run measured and found. Rates and latencies are of the
// load phase only (not setup, not the drain and verification after it).
type Report struct {
	Preset      string  `json:"preset,omitempty"`
	Store       string  `json:"store"`           // pebble, cassandra, or external (-addr)
	Nodes       int     `json:"nodes,omitempty"` // inboxd processes started
	Addr        string  `json:"addr"`
	Users       int     `json:"users"`
	Devices     int     `json:"devices_per_user"`
	Connections int     `json:"connections"`
	Groups      string  `json:"groups"`
	DirectPairs int     `json:"direct_pairs,omitempty"`
	Rate        float64 `json:"target_sends_per_sec"`
	Duration    float64 `json:"target_seconds"`
	Seed        uint64  `json:"seed"`

	LoadSeconds      float64 `json:"load_seconds"`
	SendsPerSec      float64 `json:"acked_sends_per_sec"`
	DeliveriesPerSec float64 `json:"deliveries_per_sec"` // entries pushed to devices
	AckLatency       Latency `json:"ack_latency"`
	DeliveryLatency  Latency `json:"send_to_delivery_latency"`

	Sends           int64            `json:"send_requests"` // retries included
	Acked           int64            `json:"acked"`
	DuplicateAcks   int64            `json:"duplicate_acks"` // a resend found its first attempt stored
	Retries         int64            `json:"retries"`
	Refused         int64            `json:"refused"`
	Unresolved      int64            `json:"unresolved"` // never answered, even after the drain
	NoSender        int64            `json:"skipped_no_online_sender"`
	AckedRecalls    int              `json:"acked_recalls"` // of Acked: RECALLs (Config.Features)
	AckedEdits      int              `json:"acked_edits"`
	AckedMentions   int              `json:"acked_mentions"` // messages that mention members or everyone
	MarkReads       int64            `json:"mark_reads"`
	Pushed          int64            `json:"pushed_entries"`
	Synced          int64            `json:"synced_entries"`
	GapSyncs        int64            `json:"gap_syncs"`
	Reconnects      int64            `json:"reconnects"`
	ConnectFailures int64            `json:"connect_failures"`
	Errors          map[string]int64 `json:"errors_by_code"`
	DirectSends     int64            `json:"direct_send_requests,omitempty"` // of Sends, the SEND_DIRECTs

	ServerKills            int      `json:"server_kills"`
	Outages                []Outage `json:"outages,omitempty"` // nodes of a cluster stopped under load
	ServerCPUSeconds       float64  `json:"server_cpu_seconds,omitempty"`
	ServerCPUCores         float64  `json:"server_cpu_cores,omitempty"`
	ServerCPUPerDeliveryUs float64  `json:"server_cpu_us_per_delivery,omitempty"`
	ServerPeakRSS          int64    `json:"server_peak_rss_bytes,omitempty"` // VmHWM
	ServerRSSBeforeConnect int64    `json:"server_rss_before_connect_bytes,omitempty"`
	ServerRSSConnected     int64    `json:"server_rss_connected_bytes,omitempty"`
	ServerIdleBytesPerConn float64  `json:"server_bytes_per_idle_connection,omitempty"`
	ServerLog              string   `json:"server_log,omitempty"`

	ClientCPUSeconds float64 `json:"client_cpu_seconds"`
	ClientCPUCores   float64 `json:"client_cpu_cores"`

	Verified       bool        `json:"verified"`
	CheckedEntries int         `json:"checked_inbox_entries"`
	CheckedDevices int         `json:"checked_devices"`
	VerifyError    string      `json:"verify_error,omitempty"`
	Violations     []Violation `json:"violations"`
	MoreViolations int         `json:"more_violations"`
}

// OK reports whether the run verified with no violation and left no send
// unanswered (for the baseline: left no send unanswered).
func (r *Report) OK() bool { return r.Problem() == "" }

// Problem says why the run is not OK, the first reason found; "" when it
// is.
func (r *Report) Problem() string {
	switch n := len(r.Violations) + r.MoreViolations; {
	case r.Store == "bare":
	case r.VerifyError != "":
		return "not verified: " + r.VerifyError
	case !r.Verified:
		return "not verified"
	case n > 0 && len(r.Violations) > 0:
		return fmt.Sprintf("%d violations, the first: %v", n, r.Violations[0])
	case n > 0:
		return fmt.Sprintf("%d violations", n)
	}
	if r.Unresolved > 0 {
		return fmt.Sprintf("%d sends unresolved", r.Unresolved)
	}
	return ""
}

// ClientBound reports whether the generator itself used most of a core:
// then the figures measure the client as much as the server.
func (r *Report) ClientBound() bool { return r.ClientCPUCores > 0.8 }

// WriteTable writes the report for people.
func (r *Report) WriteTable(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	row := func(k, format string, args ...any) { fmt.Fprintf(tw, "%s\t"+format+"\n", append([]any{k}, args...)...) }
	name := r.Preset
	if name == "" {
		name = "custom"
	}
	store := r.Store
	if r.Nodes > 1 {
		store = fmt.Sprintf("%d nodes on %s", r.Nodes, r.Store)
	}
	groups := r.Groups
	if r.DirectPairs > 0 {
		groups += fmt.Sprintf(" and %d direct pairs", r.DirectPairs)
	}
	row("run", "%s on %s (%s): %d users × %d devices = %d connections; groups %s; target %.0f sends/s for %.0fs",
		name, store, r.Addr, r.Users, r.Devices, r.Connections, groups, r.Rate, r.Duration)
	row("load", "%.1fs", r.LoadSeconds)
	row("acked sends/s", "%.0f", r.SendsPerSec)
	row("deliveries/s", "%.0f (pushed entries received across all devices)", r.DeliveriesPerSec)
	lat := func(l Latency) string {
		return fmt.Sprintf("p50 %.2f  p90 %.2f  p99 %.2f  p99.9 %.2f  max %.2f ms  (n=%d)", l.P50, l.P90, l.P99, l.P999, l.Max, l.Count)
	}
	row("ack latency", "%s", lat(r.AckLatency))
	row("send→delivery", "%s", lat(r.DeliveryLatency))
	row("sends", "%d requests (%d direct), %d acked (%d duplicate), %d retries, %d refused, %d unresolved, %d skipped (no online sender)",
		r.Sends, r.DirectSends, r.Acked, r.DuplicateAcks, r.Retries, r.Refused, r.Unresolved, r.NoSender)
	row("entries", "%d pushed, %d synced, %d gap syncs; %d mark-reads", r.Pushed, r.Synced, r.GapSyncs, r.MarkReads)
	if r.AckedRecalls+r.AckedEdits+r.AckedMentions > 0 {
		row("features", "of the acked: %d recalls, %d edits, %d mentioning messages", r.AckedRecalls, r.AckedEdits, r.AckedMentions)
	}
	row("connections", "%d reconnects, %d failed connects", r.Reconnects, r.ConnectFailures)
	errs := "none"
	if len(r.Errors) > 0 {
		var parts []string
		for _, k := range slices.Sorted(maps.Keys(r.Errors)) {
			parts = append(parts, fmt.Sprintf("%s %d", k, r.Errors[k]))
		}
		errs = strings.Join(parts, ", ")
	}
	row("errors by code", "%s", errs)
	if r.Store != "external" {
		row("server CPU", "%.2fs (%.2f cores), %.2f µs per delivery", r.ServerCPUSeconds, r.ServerCPUCores, r.ServerCPUPerDeliveryUs)
		// Below a few thousand connections, start-up allocations that do not
		// grow with them swamp the per-connection figure.
		note := ""
		if r.Connections < 5000 {
			note = "; rough below 5,000 connections"
		}
		row("server memory", "peak %s (VmHWM); %s per idle connection (%s → %s RSS%s)", mib(r.ServerPeakRSS),
			kib(r.ServerIdleBytesPerConn), mib(r.ServerRSSBeforeConnect), mib(r.ServerRSSConnected), note)
		row("server kills", "%d (kill -9, restarted on the same data)", r.ServerKills)
	}
	for _, sig := range []string{"KILL", "TERM"} {
		var parts []string
		for _, o := range r.Outages {
			if o.Signal == sig {
				parts = append(parts, fmt.Sprintf("%.2fs (%s, %d users)", o.Seconds, o.Node, o.Users))
			}
		}
		if len(parts) > 0 {
			row(outageRows[sig], "%s", strings.Join(parts, "; "))
		}
	}
	bound := ""
	if r.ClientBound() {
		bound = "  — the generator used most of a core: the run may be limited by the client"
	}
	row("generator CPU", "%.2fs (%.2f cores)%s", r.ClientCPUSeconds, r.ClientCPUCores, bound)
	verdict := fmt.Sprintf("PASS: every device holds exactly what was sent to its groups (%d inbox entries of %d users, %d device streams checked)",
		r.CheckedEntries, r.Users, r.CheckedDevices)
	switch {
	case r.Store == "bare":
		verdict = "baseline: nothing stored, nothing verified"
	case !r.Verified || r.VerifyError != "":
		verdict = "NOT VERIFIED: " + r.VerifyError
	case len(r.Violations) > 0 || r.MoreViolations > 0:
		verdict = fmt.Sprintf("FAIL: %d violations", len(r.Violations)+r.MoreViolations)
	case r.Unresolved > 0:
		verdict = fmt.Sprintf("FAIL: %d sends never answered", r.Unresolved)
	}
	row("verdict", "%s", verdict)
	tw.Flush()
	for _, v := range r.Violations {
		fmt.Fprintln(w, "  ", v)
	}
	if r.MoreViolations > 0 {
		fmt.Fprintf(w, "   … and %d more\n", r.MoreViolations)
	}
}

// outageRows name the report's rows of Outages.
var outageRows = map[string]string{
	"KILL": "failover (kill -9 → first ack of a user of the node)",
	"TERM": "handover (SIGTERM → first ack of a user of the node)",
}

func mib(b int64) string   { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }
func kib(b float64) string { return fmt.Sprintf("%.1f KiB", b/1024) }

var codeNames = map[wire.Code]string{
	wire.CodeBadRequest: "BAD_REQUEST", wire.CodeUnauthenticated: "UNAUTHENTICATED",
	wire.CodeTokenExpired: "TOKEN_EXPIRED", wire.CodeForbidden: "FORBIDDEN", wire.CodeNotMember: "NOT_MEMBER",
	wire.CodeNoGroup: "NO_GROUP", wire.CodeDismissed: "DISMISSED", wire.CodeMuted: "MUTED",
	wire.CodeGroupFull: "GROUP_FULL", wire.CodeInvalid: "INVALID", wire.CodeUnknownCommand: "UNKNOWN_COMMAND",
	wire.CodeFrameTooLarge: "FRAME_TOO_LARGE", wire.CodeRateLimited: "RATE_LIMITED",
	wire.CodeUnavailable: "UNAVAILABLE", wire.CodeTimeout: "TIMEOUT", wire.CodeSlowReader: "SLOW_READER",
	wire.CodeReplaced: "REPLACED", wire.CodeShuttingDown: "SHUTTING_DOWN", wire.CodeVersion: "VERSION",
	wire.CodeInternal: "INTERNAL", wire.CodeIdle: "IDLE", wire.CodeRedirect: "REDIRECT",
}

func codeName(c wire.Code) string {
	if s, ok := codeNames[c]; ok {
		return s
	}
	return fmt.Sprintf("CODE_%d", c)
}

func isOffline(err error) bool { return errors.Is(err, errOffline) }

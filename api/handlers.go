package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/inboxd/inboxd/inbox"
	"github.com/inboxd/inboxd/timeline"
	"github.com/inboxd/inboxd/token"
	"github.com/inboxd/inboxd/wire"
)

// ID is a group or message id: a 64-bit snowflake, beyond the integers a
// JavaScript number holds exactly, so it travels as a decimal string.
type ID uint64

// MarshalJSON writes the id as a decimal string.
func (id ID) MarshalJSON() ([]byte, error) {
	return []byte(`"` + strconv.FormatUint(uint64(id), 10) + `"`), nil
}

// UnmarshalJSON reads the id from a decimal string.
func (id *ID) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("api: id: %w", err)
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return fmt.Errorf("api: id %q: %w", s, err)
	}
	*id = ID(n)
	return nil
}

// The request bodies. User ids are plain JSON numbers.
type (
	CreateGroupRequest struct {
		Owner   uint64   `json:"owner"`
		Name    string   `json:"name"`
		Members []uint64 `json:"members"`
		Open    bool     `json:"open"`
		// IdempotencyKey, the owner's, makes a retry return the group the
		// first call created; without one every call creates a group.
		IdempotencyKey string `json:"idempotency_key"`
	}
	InviteRequest struct {
		Actor uint64   `json:"actor"`
		Users []uint64 `json:"users"`
	}
	KickRequest struct {
		Actor uint64 `json:"actor"`
		User  uint64 `json:"user"`
	}
	SetRoleRequest struct {
		Actor uint64 `json:"actor"`
		User  uint64 `json:"user"`
		Role  string `json:"role"` // member, admin or owner
	}
	MuteRequest struct {
		Actor uint64 `json:"actor"`
		User  uint64 `json:"user"`     // 0 or absent: the whole group
		Until int64  `json:"until_ms"` // Unix milliseconds; 0 lifts the mute
	}
	DismissRequest struct {
		Actor uint64 `json:"actor"`
	}
	// ProfileRequest changes a group's profile as SET_GROUP_PROFILE does:
	// a field absent (or null) stays as it is; "" clears the announcement
	// or the avatar.
	ProfileRequest struct {
		Actor        uint64  `json:"actor"`
		Name         *string `json:"name"`
		Announcement *string `json:"announcement"`
		AvatarURL    *string `json:"avatar_url"`
	}
	SendRequest struct {
		Sender      uint64 `json:"sender"`
		ClientMsgID string `json:"client_msg_id"`
		Kind        uint16 `json:"kind"` // default 1, text
		Body        string `json:"body"`
	}
	SystemMessageRequest struct {
		ClientMsgID string `json:"client_msg_id"`
		Body        string `json:"body"`
	}
	// RecallRequest recalls a message as the system; ClientMsgID is the
	// backend's idempotency key, in the namespace of system messages.
	RecallRequest struct {
		ClientMsgID string `json:"client_msg_id"`
	}
	RevokeRequest struct {
		Device string `json:"device"` // empty or absent: every device
	}
)

// The response bodies.
type (
	Group struct {
		ID         ID     `json:"id"`
		Name       string `json:"name"`
		Owner      uint64 `json:"owner"`
		CreatedMs  int64  `json:"created_ms"`
		Open       bool   `json:"open"`
		MutedUntil int64  `json:"muted_until_ms"`
		// Announcement and AvatarURL are the profile beside Name; empty:
		// none.
		Announcement string   `json:"announcement"`
		AvatarURL    string   `json:"avatar_url"`
		Members      []Member `json:"members,omitempty"`
		// Duplicate answers a create retried with its idempotency key.
		Duplicate bool `json:"duplicate,omitempty"`
	}
	Member struct {
		User       uint64 `json:"user"`
		Role       string `json:"role"`
		JoinedAt   uint64 `json:"joined_at"` // conv_seq of the notice that admitted the user
		MutedUntil int64  `json:"muted_until_ms"`
	}
	SendResult struct {
		MsgID     ID     `json:"msg_id"`
		ConvSeq   uint64 `json:"conv_seq"`
		TimeMs    int64  `json:"time_ms"`
		Duplicate bool   `json:"duplicate"`
	}
	Devices struct {
		Devices []Device `json:"devices"`
	}
	Device struct {
		Device  string `json:"device"`
		Node    int64  `json:"node"`
		SinceMs int64  `json:"since_ms"`
	}
	Conversations struct {
		Conversations []Conversation `json:"conversations"`
		HasMore       bool           `json:"has_more"`
	}
	Disconnected struct {
		Disconnected int `json:"disconnected"` // connections closed on this node
	}
	Revoked struct {
		// RevokedBefore is the Unix second from which tokens are accepted
		// again: a token's iat must be at least this.
		RevokedBefore int64 `json:"revoked_before"`
		Disconnected  int   `json:"disconnected"`
	}
	Conversation struct {
		Conv     ID     `json:"conv"`
		Name     string `json:"name"`
		Head     uint64 `json:"head"`
		ReadSeq  uint64 `json:"read_seq"`
		Unread   uint64 `json:"unread"`
		Left     bool   `json:"left"`
		DND      bool   `json:"dnd"`
		LastMsAt int64  `json:"last_time_ms"`   // 0: no message yet
		Peer     uint64 `json:"peer,omitempty"` // a direct conversation's other user
	}
)

var noContent = struct{}{}

func (h *handler) routes() []route {
	svc := h.cfg.Service
	return []route{
		{"POST /v1/groups", func(r *http.Request) (int, any, error) {
			var req CreateGroupRequest
			if err := decode(r.Body, &req); err != nil {
				return 0, nil, err
			}
			spec := inbox.NewGroup{Name: req.Name, Members: req.Members, Open: req.Open}
			if req.IdempotencyKey == "" {
				g, err := svc.CreateGroup(r.Context(), req.Owner, spec)
				if err != nil {
					return 0, nil, err
				}
				return http.StatusCreated, groupJSON(g, nil), nil
			}
			g, dup, err := svc.CreateGroupOnce(r.Context(), req.Owner, spec, req.IdempotencyKey)
			if err != nil {
				return 0, nil, err
			}
			resp := groupJSON(g, nil)
			if resp.Duplicate = dup; dup {
				return http.StatusOK, resp, nil
			}
			return http.StatusCreated, resp, nil
		}},
		{"GET /v1/groups/{conv}", func(r *http.Request) (int, any, error) {
			conv, err := pathID(r, "conv")
			if err != nil {
				return 0, nil, err
			}
			info, err := svc.Describe(r.Context(), conv)
			if err != nil {
				return 0, nil, err
			}
			return http.StatusOK, groupJSON(info.Group, info.Members), nil
		}},
		// Invite and kick are done once their users are (are not)
		// members: a retry of one that took effect succeeds, posting
		// nothing, where the protocol answers INVALID (NOT_MEMBER).
		{"POST /v1/groups/{conv}/invite", withConv(func(r *http.Request, conv uint64, req InviteRequest) error {
			return done(svc.Invite(r.Context(), req.Actor, conv, req.Users), inbox.ErrAlreadyMember)
		})},
		{"POST /v1/groups/{conv}/kick", withConv(func(r *http.Request, conv uint64, req KickRequest) error {
			return done(svc.Kick(r.Context(), req.Actor, conv, req.User), inbox.ErrNoSuchMember)
		})},
		{"POST /v1/groups/{conv}/role", withConv(func(r *http.Request, conv uint64, req SetRoleRequest) error {
			role, err := parseRole(req.Role)
			if err != nil {
				return err
			}
			return svc.SetRole(r.Context(), req.Actor, conv, req.User, role)
		})},
		{"POST /v1/groups/{conv}/mute", withConv(func(r *http.Request, conv uint64, req MuteRequest) error {
			var until time.Time
			if req.Until != 0 {
				until = time.UnixMilli(req.Until)
			}
			if req.User == 0 {
				return svc.MuteGroup(r.Context(), req.Actor, conv, until)
			}
			return svc.MuteMember(r.Context(), req.Actor, conv, req.User, until)
		})},
		{"POST /v1/groups/{conv}/profile", withConv(func(r *http.Request, conv uint64, req ProfileRequest) error {
			return svc.SetGroupProfile(r.Context(), req.Actor, conv, inbox.Profile{Name: req.Name, Announcement: req.Announcement, AvatarURL: req.AvatarURL})
		})},
		{"POST /v1/groups/{conv}/dismiss", withConv(func(r *http.Request, conv uint64, req DismissRequest) error {
			return svc.Dismiss(r.Context(), req.Actor, conv)
		})},
		{"POST /v1/groups/{conv}/messages", sendRoute(func(r *http.Request, conv uint64, req SendRequest) (inbox.SendResult, error) {
			if h.cfg.Moderation.Banned(req.Sender) {
				return inbox.SendResult{}, failure(http.StatusForbidden, wire.CodeBanned, fmt.Sprintf("user %d is banned", req.Sender))
			}
			kind := wire.Kind(req.Kind)
			if kind == 0 {
				kind = wire.KindText
			}
			return svc.SendGroupMessage(r.Context(), req.Sender, conv, req.ClientMsgID, kind, []byte(req.Body))
		})},
		{"POST /v1/groups/{conv}/system-messages", sendRoute(func(r *http.Request, conv uint64, req SystemMessageRequest) (inbox.SendResult, error) {
			return svc.SendSystemMessage(r.Context(), conv, req.ClientMsgID, []byte(req.Body))
		})},
		{"POST /v1/groups/{conv}/messages/{conv_seq}/recall", sendRoute(func(r *http.Request, conv uint64, req RecallRequest) (inbox.SendResult, error) {
			convSeq, err := pathID(r, "conv_seq")
			if err != nil {
				return inbox.SendResult{}, err
			}
			return svc.RecallAsSystem(r.Context(), conv, convSeq, req.ClientMsgID)
		})},
		{"GET /v1/users/{user}/devices", func(r *http.Request) (int, any, error) {
			user, err := pathID(r, "user")
			if err != nil {
				return 0, nil, err
			}
			resp := Devices{Devices: []Device{}}
			for _, d := range h.cfg.Sessions.Devices(user) {
				resp.Devices = append(resp.Devices, Device{Device: d.ID, Node: h.cfg.Node, SinceMs: d.Since.UnixMilli()})
			}
			return http.StatusOK, resp, nil
		}},
		{"POST /v1/users/{user}/ban", h.setBanned(true)},
		{"POST /v1/users/{user}/unban", h.setBanned(false)},
		{"POST /v1/users/{user}/revoke", func(r *http.Request) (int, any, error) {
			user, err := pathID(r, "user")
			if err != nil {
				return 0, nil, err
			}
			var req RevokeRequest
			if err := decodeOptional(r.Body, &req); err != nil {
				return 0, nil, err
			}
			if len(req.Device) > token.MaxDevice {
				return 0, nil, failure(http.StatusBadRequest, wire.CodeInvalid, fmt.Sprintf("device id of %d bytes, want at most %d", len(req.Device), token.MaxDevice))
			}
			before, err := h.cfg.Moderation.Revoke(r.Context(), user, req.Device, h.cfg.Now())
			if err != nil {
				return 0, nil, err
			}
			n := h.restricted(r.Context(), user)
			h.cfg.Logger.Info("api: tokens revoked", "user", user, "device", req.Device, "before", before.Unix(), "disconnected", n)
			return http.StatusOK, Revoked{RevokedBefore: before.Unix(), Disconnected: n}, nil
		}},
		{"GET /v1/users/{user}/conversations", func(r *http.Request) (int, any, error) {
			user, err := pathID(r, "user")
			if err != nil {
				return 0, nil, err
			}
			offset, err := queryInt(r, "offset")
			if err != nil {
				return 0, nil, err
			}
			limit, err := queryInt(r, "limit")
			if err != nil {
				return 0, nil, err
			}
			page, err := svc.Conversations(r.Context(), user, offset, limit)
			if err != nil {
				return 0, nil, err
			}
			resp := Conversations{Conversations: []Conversation{}, HasMore: page.HasMore}
			for _, c := range page.Conversations {
				cj := Conversation{Conv: ID(c.Conv), Name: c.Name, Head: c.Head, ReadSeq: c.ReadSeq, Unread: c.Unread, Left: c.LeftAt != 0, DND: c.DND, Peer: c.Peer}
				if c.Last != nil {
					cj.LastMsAt = c.Last.Time.UnixMilli()
				}
				resp.Conversations = append(resp.Conversations, cj)
			}
			return http.StatusOK, resp, nil
		}},
	}
}

// setBanned is the route that bans (or unbans) a user: durably first, then
// the user's connections are closed.
func (h *handler) setBanned(banned bool) func(r *http.Request) (int, any, error) {
	return func(r *http.Request) (int, any, error) {
		user, err := pathID(r, "user")
		if err != nil {
			return 0, nil, err
		}
		if err := decodeOptional(r.Body, &struct{}{}); err != nil {
			return 0, nil, err
		}
		if err := h.cfg.Moderation.SetBanned(r.Context(), user, banned); err != nil {
			return 0, nil, err
		}
		n := h.restricted(r.Context(), user)
		h.cfg.Logger.Info("api: ban set", "user", user, "banned", banned, "disconnected", n)
		return http.StatusOK, Disconnected{Disconnected: n}, nil
	}
}

// done is err, but nil when it is already: the call finds done what it
// asks for.
func done(err, already error) error {
	if errors.Is(err, already) {
		return nil
	}
	return err
}

// restricted enforces a change of user's restrictions stored here: it
// closes the user's connections on this node that they refuse now, and
// tells the other nodes, waiting at most SyncInterval for them (a node
// not told re-reads the change by then anyway). It returns the number of
// connections closed here.
func (h *handler) restricted(ctx context.Context, user uint64) int {
	n := h.cfg.Sessions.Recheck(user)
	if h.cfg.Peers != nil {
		ctx, cancel := context.WithTimeout(ctx, SyncInterval)
		defer cancel()
		if err := h.cfg.Peers.AnnounceRestrictions(ctx); err != nil {
			h.cfg.Logger.Warn("api: a node was not told of a restriction; it re-reads it within "+SyncInterval.String(), "user", user, "err", err)
		}
	}
	return n
}

// withConv is a route on a group that takes a body of type T and answers
// 204 No Content.
func withConv[T any](fn func(r *http.Request, conv uint64, req T) error) func(r *http.Request) (int, any, error) {
	return func(r *http.Request) (int, any, error) {
		conv, req, err := convAndBody[T](r)
		if err != nil {
			return 0, nil, err
		}
		if err := fn(r, conv, req); err != nil {
			return 0, nil, err
		}
		return http.StatusNoContent, noContent, nil
	}
}

// sendRoute is a route posting a message into a group.
func sendRoute[T any](fn func(r *http.Request, conv uint64, req T) (inbox.SendResult, error)) func(r *http.Request) (int, any, error) {
	return func(r *http.Request) (int, any, error) {
		conv, req, err := convAndBody[T](r)
		if err != nil {
			return 0, nil, err
		}
		res, err := fn(r, conv, req)
		if err != nil {
			return 0, nil, err
		}
		return http.StatusOK, SendResult{MsgID: ID(res.MsgID), ConvSeq: res.ConvSeq, TimeMs: res.Time.UnixMilli(), Duplicate: res.Duplicate}, nil
	}
}

func convAndBody[T any](r *http.Request) (uint64, T, error) {
	var req T
	conv, err := pathID(r, "conv")
	if err != nil {
		return 0, req, err
	}
	return conv, req, decode(r.Body, &req)
}

// decode reads one JSON object into v strictly: no unknown field, no value
// of the wrong type, nothing after it. A body past MaxBody is 413.
func decode(body io.Reader, v any) error {
	return decodeBody(body, v, false)
}

// decodeOptional is decode for calls whose fields are all optional: an
// empty body is an empty object.
func decodeOptional(body io.Reader, v any) error {
	return decodeBody(body, v, true)
}

func decodeBody(body io.Reader, v any, optional bool) error {
	b, err := io.ReadAll(body)
	if err == nil && optional && len(bytes.TrimSpace(b)) == 0 {
		return nil
	}
	if err != nil {
		if mbe := (*http.MaxBytesError)(nil); errors.As(err, &mbe) {
			return failure(http.StatusRequestEntityTooLarge, wire.CodeFrameTooLarge, fmt.Sprintf("body exceeds %d bytes", mbe.Limit))
		}
		return failure(http.StatusBadRequest, wire.CodeBadRequest, "read body: "+err.Error())
	}
	return decodeJSON(b, v)
}

func decodeJSON(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return failure(http.StatusBadRequest, wire.CodeBadRequest, "body: "+err.Error())
	}
	if _, err := dec.Token(); err != io.EOF {
		return failure(http.StatusBadRequest, wire.CodeBadRequest, "body: data after the JSON object")
	}
	if err := exactKeys(b, v); err != nil {
		return failure(http.StatusBadRequest, wire.CodeBadRequest, "body: "+err.Error())
	}
	return nil
}

// exactKeys holds the object b, which decoded into the struct v, to the
// keys of v's json tags, each once and spelled as tagged: encoding/json
// alone folds case and takes the last of duplicate keys, two spellings of
// one request.
func exactKeys(b []byte, v any) error {
	if bytes.Equal(bytes.TrimSpace(b), []byte("null")) {
		return errors.New("null is not an object")
	}
	known := map[string]bool{}
	t := reflect.TypeOf(v).Elem()
	for i := range t.NumField() {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ",")
		known[name] = true
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.Token() // the {, checked by the decoding above
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return err
		}
		key, _ := tok.(string)
		switch {
		case !known[key]:
			return fmt.Errorf("unknown field %q", key)
		case seen[key]:
			return fmt.Errorf("field %q twice", key)
		}
		seen[key] = true
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return err
		}
	}
	return nil
}

func pathID(r *http.Request, name string) (uint64, error) {
	n, err := strconv.ParseUint(r.PathValue(name), 10, 64)
	if err != nil || n == 0 {
		return 0, failure(http.StatusBadRequest, wire.CodeInvalid, fmt.Sprintf("%s %q: want a non-zero decimal id", name, r.PathValue(name)))
	}
	return n, nil
}

func queryInt(r *http.Request, name string) (int, error) {
	s := r.URL.Query().Get(name)
	if s == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		return 0, failure(http.StatusBadRequest, wire.CodeInvalid, fmt.Sprintf("%s %q: want a number from 0", name, s))
	}
	return n, nil
}

func parseRole(s string) (wire.Role, error) {
	for _, r := range []wire.Role{wire.RoleMember, wire.RoleAdmin, wire.RoleOwner} {
		if r.String() == s {
			return r, nil
		}
	}
	return 0, failure(http.StatusBadRequest, wire.CodeInvalid, fmt.Sprintf("role %q: want member, admin or owner", s))
}

func groupJSON(g timeline.Group, members []timeline.Member) Group {
	out := Group{ID: ID(g.ID), Name: g.Name, Owner: g.Owner, CreatedMs: g.Created.UnixMilli(), Open: g.Open, MutedUntil: unixMilli(g.MutedUntil),
		Announcement: g.Announcement, AvatarURL: g.AvatarURL}
	for _, m := range members {
		out.Members = append(out.Members, Member{User: m.User, Role: m.Role.String(), JoinedAt: m.JoinedAt, MutedUntil: unixMilli(m.MutedUntil)})
	}
	return out
}

func unixMilli(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

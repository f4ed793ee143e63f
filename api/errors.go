package api

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"

	"github.com/inboxd/inboxd/inbox"
	"github.com/inboxd/inboxd/wire"
)

// Error is the body of every failed call: code is the name of a protocol
// error code (docs/protocol.md, "Errors"), message says what went wrong.
type Error struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// apiError is a failure with the HTTP status it answers.
type apiError struct {
	status int
	code   wire.Code
	msg    string
}

func (e *apiError) Error() string { return e.msg }

func failure(status int, code wire.Code, msg string) *apiError {
	return &apiError{status: status, code: code, msg: msg}
}

// statuses maps the inbox's errors to a protocol code and an HTTP status.
var statuses = []struct {
	err    error
	code   wire.Code
	status int
}{
	{inbox.ErrInvalid, wire.CodeInvalid, http.StatusBadRequest},
	{inbox.ErrNoGroup, wire.CodeNoGroup, http.StatusNotFound},
	{inbox.ErrDismissed, wire.CodeDismissed, http.StatusGone},
	{inbox.ErrNotMember, wire.CodeNotMember, http.StatusForbidden},
	{inbox.ErrForbidden, wire.CodeForbidden, http.StatusForbidden},
	{inbox.ErrMuted, wire.CodeMuted, http.StatusForbidden},
	{inbox.ErrBlocked, wire.CodeBlocked, http.StatusForbidden},
	{inbox.ErrGroupFull, wire.CodeGroupFull, http.StatusConflict},
	{inbox.ErrUnavailable, wire.CodeUnavailable, http.StatusServiceUnavailable},
	{inbox.ErrClosed, wire.CodeShuttingDown, http.StatusServiceUnavailable},
	{context.DeadlineExceeded, wire.CodeTimeout, http.StatusGatewayTimeout},
}

// classify turns an error of a call into its answer.
func classify(err error) *apiError {
	var ae *apiError
	if errors.As(err, &ae) {
		return ae
	}
	for _, s := range statuses {
		if errors.Is(err, s.err) {
			return failure(s.status, s.code, err.Error())
		}
	}
	return failure(http.StatusInternalServerError, wire.CodeInternal, "internal error")
}

func writeError(w http.ResponseWriter, e *apiError) {
	writeJSON(w, e.status, Error{Code: e.code.String(), Message: e.msg})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	if status == http.StatusNoContent {
		w.WriteHeader(status)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

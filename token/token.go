// Package token issues and checks inboxd's connection tokens: a user id, a
// device id and an expiry, signed with HMAC-SHA256 under a secret shared by
// inboxd and the application's backend, which issues them.
//
// A token is two base64url (unpadded) parts joined by a dot:
//
//	base64url(payload) "." base64url(HMAC-SHA256(secret, base64url(payload)))
//
// where payload is the JSON object {"u": user id, "d": device id, "exp": unix
// seconds}. Any language with HMAC-SHA256 and JSON can issue one.
//
// This package is part of inboxd's public API (README, "Layout"), for Go
// backends that mint tokens: its exported names keep their meaning across
// releases, and it imports nothing of the server.
package token

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Errors of Verify.
var (
	ErrMalformed = errors.New("token: malformed")
	ErrSignature = errors.New("token: bad signature")
	ErrExpired   = errors.New("token: expired")
)

// MinSecret is the shortest secret accepted, in bytes.
const MinSecret = 16

// MaxLen bounds a token's length; longer input is malformed.
const MaxLen = 1024

// Claims is what a token says.
type Claims struct {
	User   uint64
	Device string
	Expiry time.Time // second precision
}

// payload is the JSON form of Claims.
type payload struct {
	User   uint64 `json:"u"`
	Device string `json:"d"`
	Exp    int64  `json:"exp"`
}

var enc = base64.RawURLEncoding

// Sign returns a token for c under secret.
func Sign(secret []byte, c Claims) (string, error) {
	if len(secret) < MinSecret {
		return "", fmt.Errorf("token: secret of %d bytes, want at least %d", len(secret), MinSecret)
	}
	if c.User == 0 || c.Device == "" || len(c.Device) > 64 {
		return "", fmt.Errorf("token: user id must be non-zero and device id 1–64 bytes")
	}
	js, err := json.Marshal(payload{c.User, c.Device, c.Expiry.Unix()})
	if err != nil {
		return "", fmt.Errorf("token: %w", err)
	}
	p := enc.EncodeToString(js)
	return p + "." + enc.EncodeToString(mac(secret, p)), nil
}

func mac(secret []byte, payload string) []byte {
	h := hmac.New(sha256.New, secret)
	h.Write([]byte(payload))
	return h.Sum(nil)
}

// Verify checks tok's signature under secret and its expiry against now,
// and returns its claims.
func Verify(secret []byte, tok string, now time.Time) (Claims, error) {
	if len(tok) > MaxLen {
		return Claims{}, ErrMalformed
	}
	p, s, ok := strings.Cut(tok, ".")
	if !ok {
		return Claims{}, ErrMalformed
	}
	sig, err := enc.DecodeString(s)
	if err != nil {
		return Claims{}, ErrMalformed
	}
	if !hmac.Equal(sig, mac(secret, p)) {
		return Claims{}, ErrSignature
	}
	js, err := enc.DecodeString(p)
	if err != nil {
		return Claims{}, ErrMalformed
	}
	var pl payload
	if err := json.Unmarshal(js, &pl); err != nil || pl.User == 0 || pl.Device == "" {
		return Claims{}, ErrMalformed
	}
	c := Claims{User: pl.User, Device: pl.Device, Expiry: time.Unix(pl.Exp, 0)}
	if !now.Before(c.Expiry) {
		return Claims{}, fmt.Errorf("%w at %v", ErrExpired, c.Expiry.UTC())
	}
	return c, nil
}

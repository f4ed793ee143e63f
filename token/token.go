// Package token issues and checks inboxd's connection tokens: a user id, a
// device id and an expiry, signed with HMAC-SHA256 under a secret shared by
// inboxd and the application's backend, which issues them.
//
// A token is two base64url (unpadded) parts joined by a dot:
//
//	base64url(payload) "." base64url(HMAC-SHA256(secret, base64url(payload)))
//
// where payload is the JSON object {"u": user id, "d": device id, "exp": unix
// seconds}, and optionally "iat": the unix second it was issued at, which a
// revocation of the user's or the device's tokens compares (docs/api.md).
// Any language with HMAC-SHA256 and JSON can issue one. Verify is strict, so
// that one token has one spelling and one meaning: both parts must be
// canonical unpadded base64url, the keys are matched exactly (no case
// folding, no duplicates, no others), u, d and exp are required, and iat,
// when present, is a positive integer.
//
// This package is part of inboxd's public API (README, "Layout"), for Go
// backends that mint tokens: its exported names keep their meaning across
// releases, and it imports nothing of the server.
package token

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
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

// MaxDevice bounds a device id's length in bytes.
const MaxDevice = 64

// Claims is what a token says.
type Claims struct {
	User   uint64
	Device string // 1–MaxDevice bytes
	// Expiry is second precision. Verify compares the payload's exp as an
	// integer, so any exp up to the largest int64 is honoured; for one past
	// year 292277026596 Expiry itself wraps, but Expiry.Unix() is still exp.
	Expiry time.Time
	// Issued is when the token was issued, second precision; the zero time
	// for a token without iat. The server refuses a token issued before a
	// revocation of its user or device, and one without iat once there is
	// any.
	Issued time.Time
}

// payload is the JSON form of Claims.
type payload struct {
	User   uint64 `json:"u"`
	Device string `json:"d"`
	Exp    int64  `json:"exp"`
	Iat    int64  `json:"iat,omitempty"` // 0: absent
}

var enc = base64.RawURLEncoding.Strict()

// ParseSecret turns the contents of a secret file into the HMAC key: the
// file's bytes with white space (spaces, tabs, CR, LF) at either end
// removed, used as they are. A hex secret is used as its hex text, not
// decoded: "00ff…" is the key 0x30 0x30 0x66 0x66 …. inboxd and inboxctl
// both read secret files with it, so a file written by echo (with its
// trailing newline) means the same key to both.
func ParseSecret(file []byte) ([]byte, error) {
	secret := bytes.Trim(file, " \t\r\n")
	if len(secret) < MinSecret {
		return nil, fmt.Errorf("token: secret of %d bytes, want at least %d", len(secret), MinSecret)
	}
	return secret, nil
}

// Sign returns a token for c under secret.
func Sign(secret []byte, c Claims) (string, error) {
	if len(secret) < MinSecret {
		return "", fmt.Errorf("token: secret of %d bytes, want at least %d", len(secret), MinSecret)
	}
	if c.User == 0 || c.Device == "" || len(c.Device) > MaxDevice {
		return "", fmt.Errorf("token: user id must be non-zero and device id 1–%d bytes", MaxDevice)
	}
	pl := payload{User: c.User, Device: c.Device, Exp: c.Expiry.Unix()}
	if !c.Issued.IsZero() {
		if pl.Iat = c.Issued.Unix(); pl.Iat < 1 {
			return "", fmt.Errorf("token: issue time %d before 1970", pl.Iat)
		}
	}
	js, err := json.Marshal(pl)
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
	sig, ok := decode(s)
	if !ok {
		return Claims{}, ErrMalformed
	}
	if !hmac.Equal(sig, mac(secret, p)) {
		return Claims{}, ErrSignature
	}
	js, ok := decode(p)
	if !ok {
		return Claims{}, ErrMalformed
	}
	pl, err := parsePayload(js)
	if err != nil {
		return Claims{}, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	c := Claims{User: pl.User, Device: pl.Device, Expiry: time.Unix(pl.Exp, 0)}
	if pl.Iat != 0 {
		c.Issued = time.Unix(pl.Iat, 0)
	}
	// Compared as integers: time.Unix(exp) overflows for exp near the
	// largest int64, and a far expiry must not read as a past one.
	if now.Unix() >= pl.Exp {
		return Claims{}, fmt.Errorf("%w at %d", ErrExpired, pl.Exp)
	}
	return c, nil
}

// decode decodes canonical unpadded base64url only. The decoder skips CR and
// LF even in strict mode, so the text must also be what encoding gives back.
func decode(s string) ([]byte, bool) {
	b, err := enc.DecodeString(s)
	if err != nil || enc.EncodedLen(len(b)) != len(s) {
		return nil, false
	}
	return b, true
}

// parsePayload decodes the payload JSON, holding it to the keys u, d and
// exp, and optionally iat, each once and spelled in lower case. encoding/json alone would
// fold case, take the last of duplicate keys and skip unknown ones.
func parsePayload(js []byte) (payload, error) {
	var pl payload
	dec := json.NewDecoder(bytes.NewReader(js))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return pl, errors.New("not a JSON object")
	}
	seen := map[string]bool{}
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return pl, err
		}
		key, _ := t.(string)
		if seen[key] {
			return pl, fmt.Errorf("key %q twice", key)
		}
		seen[key] = true
		var dst any
		switch key {
		case "u":
			dst = &pl.User
		case "d":
			dst = &pl.Device
		case "exp":
			dst = &pl.Exp
		case "iat":
			dst = &pl.Iat
		default:
			return pl, fmt.Errorf("unknown key %q", key)
		}
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return pl, err
		}
		// null would decode as the zero value: a second spelling of 0 and "".
		if string(raw) == "null" {
			return pl, fmt.Errorf("key %q is null", key)
		}
		if err := json.Unmarshal(raw, dst); err != nil {
			return pl, fmt.Errorf("key %q: %w", key, err)
		}
	}
	if _, err := dec.Token(); err != nil {
		return pl, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return pl, errors.New("data after the object")
	}
	switch {
	case !seen["u"] || !seen["d"] || !seen["exp"]:
		return pl, errors.New("want the keys u, d and exp")
	case seen["iat"] && pl.Iat < 1:
		// 0 would be a second spelling of a token without iat.
		return pl, fmt.Errorf("iat %d: want a positive Unix time", pl.Iat)
	case pl.User == 0:
		return pl, errors.New("zero user id")
	case pl.Device == "" || len(pl.Device) > MaxDevice:
		return pl, fmt.Errorf("device id of %d bytes, want 1–%d", len(pl.Device), MaxDevice)
	}
	return pl, nil
}

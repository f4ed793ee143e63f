package token

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestVerify(t *testing.T) {
	secret := []byte("0123456789abcdef0123")
	now := time.Unix(1_800_000_000, 0)
	good, err := Sign(secret, Claims{User: 42, Device: "phone", Expiry: now.Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	expired, _ := Sign(secret, Claims{User: 42, Device: "phone", Expiry: now})
	other, _ := Sign([]byte("another secret of 32 bytes......"), Claims{User: 42, Device: "phone", Expiry: now.Add(time.Hour)})
	p, s, _ := strings.Cut(good, ".")
	forged := strings.Replace(p, p[:4], "eyJ1", 1) + "." + s
	tests := []struct {
		name string
		tok  string
		want error
	}{
		{"good", good, nil},
		{"expired", expired, ErrExpired},
		{"other secret", other, ErrSignature},
		{"payload changed", forged[:len(forged)-1] + "A", ErrSignature},
		{"no dot", "abc", ErrMalformed},
		{"bad base64 sig", p + ".!!", ErrMalformed},
		{"empty", "", ErrMalformed},
		{"huge", strings.Repeat("a", MaxLen+1), ErrMalformed},
		{"signed garbage", signRaw(secret, "not json"), ErrMalformed},
		{"signed zero user", signRaw(secret, `{"u":0,"d":"x","exp":1900000000}`), ErrMalformed},
	}
	for _, tt := range tests {
		c, err := Verify(secret, tt.tok, now)
		if !errors.Is(err, tt.want) {
			t.Errorf("%s: err %v, want %v", tt.name, err, tt.want)
		}
		if tt.want == nil && (c.User != 42 || c.Device != "phone" || !c.Expiry.Equal(now.Add(time.Hour))) {
			t.Errorf("%s: claims %+v", tt.name, c)
		}
	}
}

func signRaw(secret []byte, payload string) string {
	p := enc.EncodeToString([]byte(payload))
	return p + "." + enc.EncodeToString(mac(secret, p))
}

func TestSignRejects(t *testing.T) {
	if _, err := Sign([]byte("short"), Claims{User: 1, Device: "d"}); err == nil {
		t.Error("short secret accepted")
	}
	if _, err := Sign(make([]byte, 16), Claims{Device: "d"}); err == nil {
		t.Error("zero user accepted")
	}
}

func FuzzVerify(f *testing.F) {
	secret := []byte("0123456789abcdef")
	good, _ := Sign(secret, Claims{User: 1, Device: "d", Expiry: time.Unix(2e9, 0)})
	f.Add(good)
	f.Add("a.b")
	f.Fuzz(func(t *testing.T, tok string) {
		c, err := Verify(secret, tok, time.Unix(1e9, 0))
		if err == nil && (c.User == 0 || c.Device == "") {
			t.Fatalf("accepted empty claims from %q", tok)
		}
	})
}

package token

import (
	"encoding/json"
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
		{"device of 64 bytes", signRaw(secret, `{"u":42,"d":"`+strings.Repeat("d", 64)+`","exp":1900000000}`), nil},
		{"device of 65 bytes", signRaw(secret, `{"u":42,"d":"`+strings.Repeat("d", 65)+`","exp":1900000000}`), ErrMalformed},
		{"device of 700 bytes", signRaw(secret, `{"u":42,"d":"`+strings.Repeat("d", 700)+`","exp":1900000000}`), ErrMalformed},
		{"empty device", signRaw(secret, `{"u":42,"d":"","exp":1900000000}`), ErrMalformed},
		{"key U", signRaw(secret, `{"U":42,"d":"phone","exp":1900000000}`), ErrMalformed},
		{"key D", signRaw(secret, `{"u":42,"D":"phone","exp":1900000000}`), ErrMalformed},
		{"key EXP", signRaw(secret, `{"u":42,"d":"phone","EXP":1900000000}`), ErrMalformed},
		{"key twice", signRaw(secret, `{"u":7,"u":42,"d":"phone","exp":1900000000}`), ErrMalformed},
		{"unknown key", signRaw(secret, `{"u":42,"d":"phone","exp":1900000000,"admin":true}`), ErrMalformed},
		{"no exp", signRaw(secret, `{"u":42,"d":"phone"}`), ErrMalformed},
		{"null exp", signRaw(secret, `{"u":42,"d":"phone","exp":null}`), ErrMalformed},
		{"fractional exp", signRaw(secret, `{"u":42,"d":"phone","exp":1.9e9}`), ErrMalformed},
		{"exp past int64", signRaw(secret, `{"u":42,"d":"phone","exp":9223372036854775808}`), ErrMalformed},
		{"two objects", signRaw(secret, `{"u":42,"d":"phone","exp":1900000000}{}`), ErrMalformed},
		{"exp int64 max", signRaw(secret, `{"u":42,"d":"phone","exp":9223372036854775807}`), nil},
		{"exp far", signRaw(secret, `{"u":42,"d":"phone","exp":9223371974719179008}`), nil},
		{"exp negative", signRaw(secret, `{"u":42,"d":"phone","exp":-1}`), ErrExpired},
		{"mac with other trailing bits", p + "." + flipTrailingBits(s), ErrMalformed},
		{"mac with a newline", p + "." + s[:10] + "\n" + s[10:], ErrMalformed},
		{"mac padded", p + "." + s + "=", ErrMalformed},
		{"payload with other trailing bits", signText(secret, flipTrailingBits(p)), ErrMalformed},
		{"iat", signRaw(secret, `{"u":42,"d":"phone","exp":1900000000,"iat":1700000000}`), nil},
		{"iat first", signRaw(secret, `{"iat":1700000000,"u":42,"d":"phone","exp":1900000000}`), nil},
		{"iat zero", signRaw(secret, `{"u":42,"d":"phone","exp":1900000000,"iat":0}`), ErrMalformed},
		{"iat negative", signRaw(secret, `{"u":42,"d":"phone","exp":1900000000,"iat":-5}`), ErrMalformed},
		{"iat null", signRaw(secret, `{"u":42,"d":"phone","exp":1900000000,"iat":null}`), ErrMalformed},
		{"iat string", signRaw(secret, `{"u":42,"d":"phone","exp":1900000000,"iat":"1700000000"}`), ErrMalformed},
		{"iat twice", signRaw(secret, `{"u":42,"d":"phone","exp":1900000000,"iat":1,"iat":2}`), ErrMalformed},
		{"key IAT", signRaw(secret, `{"u":42,"d":"phone","exp":1900000000,"IAT":1700000000}`), ErrMalformed},
		{"iat without exp", signRaw(secret, `{"u":42,"d":"phone","iat":1700000000}`), ErrMalformed},
	}
	for _, tt := range tests {
		c, err := Verify(secret, tt.tok, now)
		if !errors.Is(err, tt.want) {
			t.Errorf("%s: err %v, want %v", tt.name, err, tt.want)
		}
		if tt.want == nil && (c.User != 42 || c.Device == "" || c.Expiry.Unix() < now.Unix()) {
			t.Errorf("%s: claims %+v", tt.name, c)
		}
	}
}

func signRaw(secret []byte, payload string) string {
	return signText(secret, enc.EncodeToString([]byte(payload)))
}

// signText signs p, the payload's base64url text, as it is.
func signText(secret []byte, p string) string {
	return p + "." + enc.EncodeToString(mac(secret, p))
}

// flipTrailingBits changes the unused low bits of the last character of an
// unpadded base64url text whose length is not a multiple of 4: a lenient
// decoder reads the same bytes from it.
func flipTrailingBits(s string) string {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	last := strings.IndexByte(alphabet, s[len(s)-1])
	return s[:len(s)-1] + string(alphabet[last^1])
}

func TestParseSecret(t *testing.T) {
	hex := "00ff00ff00ff00ff00ff00ff00ff00ff"
	tests := []struct {
		file string
		want string // "" : refused
	}{
		{hex, hex},
		{hex + "\n", hex},
		{hex + "\r\n", hex},
		{"  " + hex + "\t\n", hex},
		{"a secret with inner spaces\n", "a secret with inner spaces"},
		{"short\n", ""},
		{"\n\n", ""},
	}
	for _, tt := range tests {
		got, err := ParseSecret([]byte(tt.file))
		if (err != nil) != (tt.want == "") || string(got) != tt.want {
			t.Errorf("ParseSecret(%q) = %q, %v; want %q", tt.file, got, err, tt.want)
		}
	}
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
	f.Add(signRaw(secret, `{"u":1,"d":"d","exp":9223372036854775807}`))
	f.Add(signRaw(secret, `{"U":1,"d":"d","exp":2000000000}`))
	f.Fuzz(func(t *testing.T, tok string) {
		c, err := Verify(secret, tok, time.Unix(1e9, 0))
		if err != nil {
			return
		}
		if c.User == 0 || c.Device == "" || len(c.Device) > MaxDevice || c.Expiry.Unix() <= 1e9 {
			t.Fatalf("accepted claims %+v from %q", c, tok)
		}
		// One token, one spelling: the claims sign back to the same text.
		if again, err := Sign(secret, c); err != nil || again != tok && canonicalJSON(t, tok) {
			t.Fatalf("claims of %q sign to %q, %v", tok, again, err)
		}
	})
}

// canonicalJSON reports whether tok's payload is the JSON Sign writes, so
// that the fuzz target can demand that such tokens sign back to themselves.
func canonicalJSON(t *testing.T, tok string) bool {
	p, _, _ := strings.Cut(tok, ".")
	js, err := enc.DecodeString(p)
	if err != nil {
		t.Fatalf("accepted payload %q does not decode: %v", p, err)
	}
	pl, err := parsePayload(js)
	if err != nil {
		t.Fatal(err)
	}
	again, _ := json.Marshal(pl)
	return string(again) == string(js)
}

// FuzzSignedPayload signs whatever payload text it is given, so that the
// fuzzer reaches the payload parser (FuzzVerify mostly stops at the MAC).
func FuzzSignedPayload(f *testing.F) {
	secret := []byte("0123456789abcdef")
	for _, p := range []string{
		`{"u":1,"d":"d","exp":2000000000}`,
		`{"u":18446744073709551615,"d":"phone","exp":9223372036854775807}`,
		`{"U":1,"d":"d","exp":2000000000}`,
		`{"u":1,"u":2,"d":"d","exp":2000000000}`,
		`{"u":1,"d":"d","exp":null}`,
		`{"u":1,"d":"d","exp":2000000000,"iat":1000000000}`,
		`{"u":1,"d":"d","exp":2000000000,"iat":0}`,
		`{"u":1,"d":"\u0064","exp":2e9}`,
		` {"u":1,"d":"d","exp":2000000000} `,
	} {
		f.Add(p)
	}
	now := time.Unix(1e9, 0)
	f.Fuzz(func(t *testing.T, payload string) {
		c, err := Verify(secret, signRaw(secret, payload), now)
		if err != nil {
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrExpired) {
				t.Fatalf("payload %q: unexpected error %v", payload, err)
			}
			return
		}
		if c.User == 0 || c.Device == "" || len(c.Device) > MaxDevice || c.Expiry.Unix() <= now.Unix() {
			t.Fatalf("payload %q accepted as %+v", payload, c)
		}
		// Whatever the spelling, the claims are those of the JSON object,
		// and Sign writes them back into a token with the same claims.
		tok, err := Sign(secret, c)
		if err != nil {
			t.Fatalf("claims %+v of %q do not sign: %v", c, payload, err)
		}
		again, err := Verify(secret, tok, now)
		if err != nil || again.User != c.User || again.Device != c.Device || again.Expiry.Unix() != c.Expiry.Unix() || !again.Issued.Equal(c.Issued) {
			t.Fatalf("claims %+v signed again read as %+v, %v", c, again, err)
		}
	})
}

// TestIssued checks that Sign writes iat only for a set issue time, and
// Verify reads it back.
func TestIssued(t *testing.T) {
	secret := []byte("0123456789abcdef0123")
	now := time.Unix(1_800_000_000, 0)
	for _, issued := range []time.Time{{}, now.Add(-time.Minute)} {
		tok, err := Sign(secret, Claims{User: 1, Device: "d", Expiry: now.Add(time.Hour), Issued: issued})
		if err != nil {
			t.Fatal(err)
		}
		js, _ := enc.DecodeString(strings.Split(tok, ".")[0])
		if strings.Contains(string(js), "iat") == issued.IsZero() {
			t.Errorf("issued %v: payload %s", issued, js)
		}
		c, err := Verify(secret, tok, now)
		if err != nil || !c.Issued.Equal(issued) {
			t.Errorf("issued %v: read %v, %v", issued, c.Issued, err)
		}
	}
	if _, err := Sign(secret, Claims{User: 1, Device: "d", Expiry: now, Issued: time.Unix(-1, 0)}); err == nil {
		t.Error("an issue time before 1970 signed")
	}
}

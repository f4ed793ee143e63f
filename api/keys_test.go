package api

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestNewKeys(t *testing.T) {
	tests := []struct {
		name, file string
		ok         []string // keys accepted
		err        bool
	}{
		{"one key", key1 + "\n", []string{key1}, false},
		{"comments, blanks, CRLF and spaces around", "# rotate monthly\r\n\r\n  " + key1 + "  \r\n" + key2, []string{key1, key2}, false},
		{"no key", "# nothing yet\n\n", nil, true},
		{"a short key", key1 + "\nshort\n", nil, true},
		{"a key with a blank inside", "two halves of one key\n", nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "keys")
			if err := os.WriteFile(path, []byte(tt.file), 0o600); err != nil {
				t.Fatal(err)
			}
			k, err := NewKeys(path)
			if (err != nil) != tt.err {
				t.Fatalf("NewKeys: %v", err)
			}
			if err != nil {
				if tt.name == "no key" && !errors.Is(err, ErrNoKeys) {
					t.Errorf("no key: %v, want ErrNoKeys", err)
				}
				return
			}
			for _, key := range tt.ok {
				if ok, err := k.Check(key); !ok || err != nil {
					t.Errorf("key %q refused: %v", key[:5], err)
				}
			}
			for _, bad := range []string{"", key1 + "x", "# rotate monthly", "  " + key1} {
				if ok, _ := k.Check(bad); ok {
					t.Errorf("%q accepted", bad)
				}
			}
		})
	}
	if _, err := NewKeys(filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Error("a missing key file accepted")
	}
}

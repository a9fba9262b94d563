package store_test

import (
	"errors"
	"testing"

	"github.com/cfbackup/cfbackup/pkg/store"
)

func TestValidateKey(t *testing.T) {
	for _, k := range []string{"config.json", "snapshots/2026-11-21T00:00:00Z-ab.json", "a/b/c", "ünï côdé/🎉", "..a/b..", ".hidden"} {
		if err := store.ValidateKey(k); err != nil {
			t.Errorf("ValidateKey(%q) = %v, want nil", k, err)
		}
	}
	for _, k := range []string{"", "/abs", "..", "a/../b", "a/..", "a\\b", "a//b", "a/", "./a", "a/./b", "nul\x00", ".tmp-x", "a/.tmp-1234"} {
		if err := store.ValidateKey(k); !errors.Is(err, store.ErrInvalidKey) {
			t.Errorf("ValidateKey(%q) = %v, want ErrInvalidKey", k, err)
		}
	}
	for _, p := range []string{"", "snapshots/", "snap", "a/b/"} {
		if err := store.ValidatePrefix(p); err != nil {
			t.Errorf("ValidatePrefix(%q) = %v", p, err)
		}
	}
	for _, p := range []string{"/", "../", "a//", "/x"} {
		if err := store.ValidatePrefix(p); !errors.Is(err, store.ErrInvalidKey) {
			t.Errorf("ValidatePrefix(%q) = %v, want ErrInvalidKey", p, err)
		}
	}
}

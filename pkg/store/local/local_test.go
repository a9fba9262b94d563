package local_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/cfbackup/cfbackup/pkg/store"
	"github.com/cfbackup/cfbackup/pkg/store/local"
	"github.com/cfbackup/cfbackup/pkg/store/storetest"
)

func newStore(t *testing.T) *local.Store {
	t.Helper()
	s, err := local.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store { return newStore(t) })
}

// Stray temp files (a crash mid-Put) stay invisible, and failed Puts leave none behind.
func TestTempFiles(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, err := local.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "segments"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "segments", ".tmp-crashed"), []byte("partial"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := s.Put(ctx, "segments/a", strings.NewReader("a"), store.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	boom := errors.New("boom")
	if err := s.Put(ctx, "segments/b", iotest.ErrReader(boom), store.PutOptions{}); !errors.Is(err, boom) {
		t.Fatalf("Put = %v", err)
	}
	if err := s.Put(ctx, "segments/a", strings.NewReader("x"), store.PutOptions{IfNotExists: true}); !errors.Is(err, store.ErrExists) {
		t.Fatalf("conditional Put = %v", err)
	}
	var keys []string
	if err := s.List(ctx, "", func(oi store.ObjectInfo) error { keys = append(keys, oi.Key); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(keys) != 1 || keys[0] != "segments/a" {
		t.Fatalf("List = %q", keys)
	}
	ents, _ := os.ReadDir(filepath.Join(dir, "segments"))
	if len(ents) != 2 { // a and the pre-existing .tmp-crashed
		t.Fatalf("directory holds %d entries, want 2 (failed Puts left temp files)", len(ents))
	}
}

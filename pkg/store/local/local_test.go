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

// TempCollector lists only ".tmp-*" files and removes nothing else.
func TestTempCollector(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	if err := s.Put(ctx, "segments/a.age", strings.NewReader("object"), store.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(s.Location(), "segments", ".tmp-killed"), []byte("half"), 0o600); err != nil {
		t.Fatal(err)
	}
	var got []store.TempFile
	if err := s.ListTemp(ctx, func(tf store.TempFile) error { got = append(got, tf); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].Name != "segments/.tmp-killed" || got[0].Size != 4 {
		t.Fatalf("ListTemp: %+v", got)
	}
	for _, bad := range []string{"segments/a.age", "../x/.tmp-1", "/etc/.tmp-1", ".tmp-", "a/../.tmp-1"} {
		if err := s.RemoveTemp(ctx, bad); !errors.Is(err, store.ErrInvalidKey) {
			t.Errorf("RemoveTemp(%q) = %v, want ErrInvalidKey", bad, err)
		}
	}
	if err := s.RemoveTemp(ctx, got[0].Name); err != nil {
		t.Fatal(err)
	}
	if err := s.RemoveTemp(ctx, got[0].Name); err != nil {
		t.Fatalf("removing a temp file already gone: %v", err)
	}
	if _, err := s.Stat(ctx, "segments/a.age"); err != nil {
		t.Fatal(err)
	}
}

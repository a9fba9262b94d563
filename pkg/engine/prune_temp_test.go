package engine_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cfbackup/cfbackup/pkg/engine"
	"github.com/cfbackup/cfbackup/pkg/retention"
	"github.com/cfbackup/cfbackup/pkg/store/local"
	"github.com/cfbackup/cfbackup/pkg/store/retry"
)

// TestPruneSweepsKilledWritesTempFiles: a write killed mid-way (kill -9) leaves a ".tmp-*" file in
// the local store that List never shows; the sweep removes those older than the grace period, in
// every directory (segments, snapshots, journals, locks…), and leaves younger ones (a write in flight).
func TestPruneSweepsKilledWritesTempFiles(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	ls, err := local.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	f := newPruneFixture(t, retry.New(ls, retry.Options{})) // found beneath decorators
	f.snapshot(t, "media", nil, nil)
	now := f.clk.Now()
	write := func(rel string, age time.Duration) string {
		p := filepath.Join(dir, filepath.FromSlash(rel))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(strings.Repeat("x", 1000)), 0o600); err != nil {
			t.Fatal(err)
		}
		mt := now.Add(-age)
		if err := os.Chtimes(p, mt, mt); err != nil {
			t.Fatal(err)
		}
		return p
	}
	old := []string{
		write("segments/.tmp-111", 30*time.Hour),
		write("snapshots/.tmp-222", 25*time.Hour),
		write("journal/r2/abc/.tmp-333", 48*time.Hour),
		write(".tmp-444", 100*time.Hour),
	}
	young := write("segments/.tmp-555", time.Hour)
	pol := retention.Policies{Default: retention.Policy{Last: 5}}

	dry, err := f.eng.Prune(ctx, engine.PruneOptions{Policies: pol, DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	if dry.TempFilesDeleted != len(old) {
		t.Fatalf("dry run: temp files %d, want %d", dry.TempFilesDeleted, len(old))
	}
	for _, p := range append(old, young) {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("dry run removed %s: %v", p, err)
		}
	}

	res, err := f.eng.Prune(ctx, engine.PruneOptions{Policies: pol})
	if err != nil {
		t.Fatal(err)
	}
	if res.TempFilesDeleted != len(old) || res.BytesFreed < int64(len(old)*1000) {
		t.Fatalf("temp files deleted %d (want %d), bytes freed %d", res.TempFilesDeleted, len(old), res.BytesFreed)
	}
	for _, p := range old {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("%s older than the grace period is still there: %v", p, err)
		}
	}
	if _, err := os.Stat(young); err != nil {
		t.Errorf("a temp file younger than the grace period (a write in flight) was removed: %v", err)
	}
	// Grace 0: nothing is left.
	if _, err := f.eng.Prune(ctx, engine.PruneOptions{Policies: pol, Grace: -1}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(young); !os.IsNotExist(err) {
		t.Errorf("grace 0 left %s: %v", young, err)
	}
	f.verifyAll(t)
}

package r2_test

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/cfbackup/cfbackup/pkg/archive"
	"github.com/cfbackup/cfbackup/pkg/source/r2"
)

func tempFiles(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	if err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && strings.HasPrefix(d.Name(), "%cfbackup-tmp-") {
			out = append(out, p)
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

// An interrupted restore to a directory removes its temporary files; the same command run again
// leaves the files already written alone (same SHA-256), reads only the missing objects, and removes
// temporary files a killed restore left behind.
func TestInterruptedDirRestoreResumes(t *testing.T) {
	e := newEnv(t, "src")
	ctx := context.Background()
	model := seed(t, e, "src", 200)
	m, _, err := e.backup(ctx, r2.BackupOptions{Bucket: "src"})
	if err != nil {
		t.Fatal(err)
	}
	cat, err := m.OpenCatalogue(e.ids)
	if err != nil {
		t.Fatal(err)
	}
	items, err := r2.Select(cat, "src", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	base := r2.Opener(e.eng.Opener(m, e.ids))
	var opens atomic.Int32
	counting := func(cancelAt int32, cancel context.CancelFunc) r2.Opener {
		return func(ctx context.Context, ref archive.ItemRef) (io.ReadCloser, error) {
			if opens.Add(1) == cancelAt {
				cancel()
			}
			return base(ctx, ref)
		}
	}

	cctx, cancel := context.WithCancel(ctx)
	plan, err := r2.PlanRestore(cctx, nil, items, r2.Target{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	res, err := r2.Restore(cctx, nil, counting(80, cancel), plan, 4)
	cancel()
	if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "run the same command again") {
		t.Fatalf("interrupted restore: %v", err)
	}
	if res.Restored == 0 || res.Restored >= len(items) {
		t.Fatalf("interrupted restore wrote %d of %d files", res.Restored, len(items))
	}
	if tmp := tempFiles(t, dir); len(tmp) != 0 {
		t.Fatalf("temporary files left by an interrupted restore: %v", tmp)
	}
	if _, err := os.Stat(filepath.Join(dir, r2.DirIndexName)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("an interrupted restore wrote its index: %v", err)
	}
	// What kill -9 leaves: a temporary file next to the restored ones.
	stale := filepath.Join(dir, "k", "%cfbackup-tmp-123456")
	if err := os.WriteFile(stale, []byte("half an object"), 0o600); err != nil {
		t.Fatal(err)
	}

	plan, err = r2.PlanRestore(ctx, nil, items, r2.Target{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if plan.Same != res.Restored || plan.Conflicts != 0 || plan.Puts != len(items)-res.Restored {
		t.Fatalf("plan after the interruption: same %d puts %d conflicts %d; %d were written", plan.Same, plan.Puts, plan.Conflicts, res.Restored)
	}
	opens.Store(0)
	res2, err := r2.Restore(ctx, nil, counting(-1, func() {}), plan, 4)
	if err != nil {
		t.Fatal(err)
	}
	if res2.Restored != plan.Puts || res2.Same != plan.Same || int(opens.Load()) != plan.Puts {
		t.Fatalf("second restore: %+v, %d items read, plan puts %d", res2, opens.Load(), plan.Puts)
	}
	if tmp := tempFiles(t, dir); len(tmp) != 0 {
		t.Fatalf("temporary files left: %v", tmp)
	}
	compareDir(t, dir, model)
}

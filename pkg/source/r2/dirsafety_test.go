package r2_test

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"filippo.io/age"

	"github.com/cfbackup/cfbackup/pkg/archive"
	"github.com/cfbackup/cfbackup/pkg/manifest"
	"github.com/cfbackup/cfbackup/pkg/source/r2"
	"github.com/cfbackup/cfbackup/pkg/store/mem"
)

// dirItems archives one object per key (content "object <key>") as a backup would and returns the
// items and an opener for them.
func dirItems(t *testing.T, keys ...string) ([]manifest.Item, r2.Opener) {
	t.Helper()
	ctx := context.Background()
	id, _ := age.GenerateX25519Identity()
	st := mem.New()
	w, err := archive.NewWriter(ctx, archive.WriterOptions{Store: st, Recipients: []age.Recipient{id.Recipient()}})
	if err != nil {
		t.Fatal(err)
	}
	paths := r2.EncodePaths(keys)
	var items []manifest.Item
	for _, k := range keys {
		ref, err := w.WriteItem(r2.ItemName("b", paths[k]), strings.NewReader("object "+k))
		if err != nil {
			t.Fatal(err)
		}
		items = append(items, manifest.Item{Component: r2.Component, Source: "b", Kind: "object", ItemRef: ref,
			Object: &manifest.ObjectMeta{Key: k}})
	}
	segs, err := w.Close()
	if err != nil {
		t.Fatal(err)
	}
	m := &manifest.Manifest{Segments: segs}
	return items, func(ctx context.Context, ref archive.ItemRef) (io.ReadCloser, error) {
		return archive.OpenItem(ctx, st, m.SegmentMap(), []age.Identity{id}, ref)
	}
}

// listTree returns every path under dir with its content ("<dir>" for directories, "-> target" for links).
func listTree(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	if err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		switch {
		case d.Type()&fs.ModeSymlink != 0:
			l, _ := os.Readlink(p)
			out[p] = "-> " + l
		case d.IsDir():
			out[p] = "<dir>"
		default:
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			out[p] = string(b)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

func sameTree(t *testing.T, what string, before, after map[string]string) {
	t.Helper()
	for p, v := range after {
		if w, ok := before[p]; !ok {
			t.Errorf("%s: new %s", what, p)
		} else if w != v {
			t.Errorf("%s: %s changed", what, p)
		}
	}
	for p := range before {
		if _, ok := after[p]; !ok {
			t.Errorf("%s: %s removed", what, p)
		}
	}
}

// TestDirRestoreRefusesSymlinkedDirectory: DIR/img is a symbolic link to a directory elsewhere and the
// snapshot holds img/x.png: the restore is refused naming the key, and nothing outside DIR is
// written or removed (not even a stale-looking temporary file there).
func TestDirRestoreRefusesSymlinkedDirectory(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	dir, elsewhere := filepath.Join(root, "out"), filepath.Join(root, "elsewhere")
	for _, d := range []string{dir, elsewhere} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(elsewhere, "%cfbackup-tmp-precious"), []byte("keep me"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(elsewhere, filepath.Join(dir, "img")); err != nil {
		t.Fatal(err)
	}
	before := listTree(t, elsewhere)
	items, open := dirItems(t, "img/x.png", "ok.txt")
	for _, overwrite := range []string{"", r2.OverwriteOverwrite} {
		plan, err := r2.PlanRestore(ctx, nil, items, r2.Target{Dir: dir, Overwrite: overwrite})
		if err == nil {
			_, err = r2.Restore(ctx, nil, open, plan, 2)
		}
		if err == nil {
			t.Fatal("restore through a symlinked directory succeeded")
		}
		if !errors.Is(err, r2.ErrBadKey) || !strings.Contains(err.Error(), `"img/x.png"`) || !strings.Contains(err.Error(), "symbolic link") {
			t.Errorf("err = %v, want ErrBadKey naming the key and the link", err)
		}
		sameTree(t, "elsewhere", before, listTree(t, elsewhere))
	}
}

// TestDirRestoreFileLinkIsReplacedNotFollowed: a symbolic link where a restored file goes is a
// conflict; with --overwrite overwrite the link itself is replaced and its target is left alone.
func TestDirRestoreFileLinkIsReplacedNotFollowed(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	dir, victim := filepath.Join(root, "out"), filepath.Join(root, "victim")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(victim, []byte("precious"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(victim, filepath.Join(dir, "x.png")); err != nil {
		t.Fatal(err)
	}
	items, open := dirItems(t, "x.png")
	plan, err := r2.PlanRestore(ctx, nil, items, r2.Target{Dir: dir})
	if err != nil || plan.Conflicts != 1 {
		t.Fatalf("plan: %+v %v", plan, err)
	}
	plan, _ = r2.PlanRestore(ctx, nil, items, r2.Target{Dir: dir, Overwrite: r2.OverwriteOverwrite})
	if _, err := r2.Restore(ctx, nil, open, plan, 1); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(victim); string(b) != "precious" {
		t.Errorf("victim = %q", b)
	}
	fi, err := os.Lstat(filepath.Join(dir, "x.png"))
	if err != nil || !fi.Mode().IsRegular() || fi.Mode().Perm() != 0o600 {
		t.Errorf("restored file: %v %v", fi, err)
	}
}

// TestDirRestoreKeysStayInside: keys with "..", a leading "/", "." and empty segments are written
// under DIR (encoded), never beside or above it.
func TestDirRestoreKeysStayInside(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	dir := filepath.Join(root, "a", "out")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	keys := []string{"../escape", "../../escape2", "/etc/passwd", "x/../../up", "./dot", "..", "a//b"}
	items, open := dirItems(t, keys...)
	plan, err := r2.PlanRestore(ctx, nil, items, r2.Target{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r2.Restore(ctx, nil, open, plan, 2); err != nil {
		t.Fatal(err)
	}
	for p := range listTree(t, root) {
		if p != root && p != filepath.Join(root, "a") && !strings.HasPrefix(p, dir) {
			t.Errorf("written outside DIR: %s", p)
		}
	}
	n := 0
	for p, v := range listTree(t, dir) {
		if strings.HasPrefix(v, "object ") {
			n++
		} else if v != "<dir>" && !strings.HasSuffix(p, r2.DirIndexName) {
			t.Errorf("unexpected %s = %q", p, v)
		}
	}
	if n != len(keys) {
		t.Errorf("%d objects in DIR, want %d", n, len(keys))
	}
}

package config_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/cfbackup/cfbackup/pkg/source/config"
)

// TestWriteDirFilesAre0600: the written configuration holds account data (routes, bindings, variable
// values), so its files are readable by their owner only, like restored R2 files and D1 databases;
// also when existing files are overwritten.
func TestWriteDirFilesAre0600(t *testing.T) {
	st := &config.State{AccountID: "acc", Inventory: config.Doc{"workers": 1},
		Scripts: map[string]config.Doc{"app": {"vars": map[string]any{"PLAN": "pro"}}, "../x": {}}}
	dir := filepath.Join(t.TempDir(), "out")
	for _, overwrite := range []bool{false, true} {
		if overwrite {
			if err := os.Chmod(filepath.Join(dir, "inventory.json"), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		paths, err := config.WriteDir(dir, st, overwrite)
		if err != nil {
			t.Fatal(err)
		}
		if len(paths) != 3 {
			t.Fatalf("wrote %v", paths)
		}
		for _, p := range paths {
			fi, err := os.Stat(p)
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode().Perm() != 0o600 {
				t.Errorf("%s: mode %v, want 0600", p, fi.Mode().Perm())
			}
		}
	}
}

// TestWriteDirStaysInside: a symbolic link dir/scripts -> elsewhere does not carry script files out
// of dir: the write fails and elsewhere stays empty.
func TestWriteDirStaysInside(t *testing.T) {
	root := t.TempDir()
	dir, elsewhere := filepath.Join(root, "out"), filepath.Join(root, "elsewhere")
	for _, d := range []string{dir, elsewhere} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(elsewhere, filepath.Join(dir, "scripts")); err != nil {
		t.Fatal(err)
	}
	st := &config.State{AccountID: "acc", Inventory: config.Doc{}, Scripts: map[string]config.Doc{"app": {}}}
	if _, err := config.WriteDir(dir, st, true); err == nil {
		t.Fatal("WriteDir wrote through a link out of its directory")
	}
	if ents, _ := os.ReadDir(elsewhere); len(ents) != 0 {
		t.Errorf("elsewhere holds %d file(s)", len(ents))
	}
}

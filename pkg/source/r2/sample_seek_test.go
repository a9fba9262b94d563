package r2_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/cfbackup/cfbackup/pkg/engine"
	"github.com/cfbackup/cfbackup/pkg/errclass"
	"github.com/cfbackup/cfbackup/pkg/manifest"
	"github.com/cfbackup/cfbackup/pkg/source/r2"
	"github.com/cfbackup/cfbackup/pkg/store"
)

// restoredKeys lists the files a test-restore left in dir (its R2 scratch directory), as keys.
func restoredKeys(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	root := filepath.Join(dir, r2.Component, "b")
	err := filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || d.Name() == r2.DirIndexName {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		out = append(out, filepath.ToSlash(rel))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(out)
	return out
}

// TestSampleReadsOnlyChosenCatalogueObjects: test-restore --sample on a bucket whose catalogue spans
// three fenced objects reads only the catalogue objects holding a sampled object — one for a sample
// of one, never all three for a sample of two — and the same --seed picks the same objects again.
func TestSampleReadsOnlyChosenCatalogueObjects(t *testing.T) {
	n := 2*manifest.ObjectItems + 1000
	rp, cg, ids, m := seekRepo(t, n)
	if len(m.CatalogueObjects) != 3 {
		t.Fatalf("%d catalogue objects, want 3", len(m.CatalogueObjects))
	}
	eng := &engine.Engine{Repo: rp, Tool: "test"}
	run := func(sample string, seed uint64) ([]string, int64, *engine.TestRestoreResult) {
		t.Helper()
		dir := t.TempDir()
		cg.n.Store(0)
		res, err := eng.TestRestore(context.Background(), m, engine.TestRestoreOptions{Identities: ids, Components: []string{r2.Component}, Sample: sample, Seed: &seed, ScratchDir: dir, Env: quietEnv{}})
		if err != nil {
			t.Fatalf("test-restore --sample %s: %v", sample, err)
		}
		return restoredKeys(t, dir), cg.n.Load(), res
	}
	one, gets, res := run("1", 7)
	if len(one) != 1 || gets != 1 {
		t.Fatalf("--sample 1 restored %v and fetched %d catalogue objects, want 1 and 1", one, gets)
	}
	if res.Seed == nil || *res.Seed != 7 || res.Sources[0].Items != 1 || !strings.Contains(strings.Join(res.Sources[0].Checks, ","), "seed 7; 1 of 3 catalogue object(s) read") {
		t.Fatalf("result %+v", res.Sources)
	}
	again, _, _ := run("1", 7)
	if !slices.Equal(one, again) {
		t.Fatalf("--seed 7 picked %v, then %v", one, again)
	}
	two, gets, _ := run("2", 11)
	if len(two) != 2 || gets < 1 || gets > 2 {
		t.Fatalf("--sample 2 restored %v and fetched %d catalogue objects, want 2 and at most 2", two, gets)
	}
	// Different seeds cover different objects over a few runs.
	seen := map[string]bool{}
	for seed := range uint64(6) {
		keys, gets, _ := run("1", 100+seed)
		if gets != 1 {
			t.Fatalf("--sample 1 --seed %d fetched %d catalogue objects", 100+seed, gets)
		}
		seen[keys[0]] = true
	}
	if len(seen) < 2 {
		t.Fatalf("six seeds picked only %v", seen)
	}
	// A catalogue object replaced by other bytes is damage (exit 6), whichever one the seed picks.
	for _, co := range m.CatalogueObjects {
		if err := rp.Store.Put(context.Background(), co.Key, strings.NewReader("not a catalogue object"), store.PutOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	seed := uint64(7)
	_, err := eng.TestRestore(context.Background(), m, engine.TestRestoreOptions{Identities: ids, Components: []string{r2.Component}, Sample: "1", Seed: &seed, ScratchDir: t.TempDir(), Env: quietEnv{}})
	if !errors.Is(err, errclass.Integrity) {
		t.Fatalf("a damaged catalogue object: %v, want an integrity error", err)
	}
}

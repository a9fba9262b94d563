package r2_test

import (
	"context"
	"io"
	"math/rand"
	"testing"

	"github.com/cfbackup/cfbackup/pkg/manifest"
	"github.com/cfbackup/cfbackup/pkg/source/r2"
)

// indexMagic reads the first bytes of a snapshot's index of bucket.
func indexMagic(t *testing.T, e *env, m *manifest.Manifest, bucket string) string {
	t.Helper()
	src, _ := m.SourceByName(r2.Component, bucket)
	rc, err := e.st.Open(context.Background(), src.Index, 0, 8)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	b := make([]byte, 8)
	if _, err := io.ReadFull(rc, b); err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// Incrementals over an index of several pages of 7 entries, from a format 1 parent and from a
// format 2 one: unchanged objects are reused across page boundaries, changed, added (before the
// first key, between two, after the last) and deleted ones are seen, and the result restores.
func TestIncrementalAcrossIndexPages(t *testing.T) {
	defer r2.SetPageEntries(7)()
	defer r2.SetBackupWindow(5)() // windows of the listing that do not line up with index pages
	e := newEnv(t, "src", "dst")
	ctx := context.Background()
	model := seed(t, e, "src", 40)
	restoreV2 := r2.WriteV1Index()
	m1, st1, err := e.backup(ctx, r2.BackupOptions{Bucket: "src"})
	restoreV2()
	if err != nil || st1.Fetched != 40 {
		t.Fatalf("first backup: %+v %v", st1, err)
	}
	if got := indexMagic(t, e, m1, "src"); got != "CFBR2IX1" {
		t.Fatalf("first index is %q, want format 1", got)
	}
	// From the format 1 parent: nothing fetched, and the new index is format 2.
	m2, st2, err := e.backup(ctx, r2.BackupOptions{Bucket: "src"})
	if err != nil || st2.GETs != 0 || st2.Reused != 40 {
		t.Fatalf("no-change incremental from a format 1 index: %+v %v", st2, err)
	}
	if got := indexMagic(t, e, m2, "src"); got != "CFBR2IX2" {
		t.Fatalf("second index is %q, want format 2", got)
	}
	m3, st3, err := e.backup(ctx, r2.BackupOptions{Bucket: "src"})
	if err != nil || st3.GETs != 0 || st3.Reused != 40 || m3.StoredSize != 0 {
		t.Fatalf("no-change incremental from a format 2 index: %+v %v", st3, err)
	}
	// k/0006 and k/0007 end and start a page; k/0014 starts one.
	rng := rand.New(rand.NewSource(9))
	for _, k := range []string{"k/0006", "k/0007", "k/0039"} {
		o := content(rng, 1000)
		o.data = append(o.data, " changed"...)
		model[k] = o
		e.put(t, "src", k, o)
	}
	for _, k := range []string{"a/first", "k/00145", "z/last"} {
		model[k] = content(rng, 2000)
		e.put(t, "src", k, model[k])
	}
	delete(model, "k/0014")
	e.del(t, "src", "k/0014")
	m4, st4, err := e.backup(ctx, r2.BackupOptions{Bucket: "src"})
	if err != nil || st4.Fetched != 6 || st4.Reused != 36 || st4.Objects != 42 {
		t.Fatalf("changed incremental: %+v %v", st4, err)
	}
	n4, err := countIndex(e, m4)
	if err != nil || n4 != 42 {
		t.Fatalf("index of the changed incremental: %d entries, %v", n4, err)
	}
	cat, err := m4.OpenCatalogue(e.ids)
	if err != nil {
		t.Fatal(err)
	}
	items, err := r2.Select(cat, "src", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	plan, err := r2.PlanRestore(ctx, e.cl, items, r2.Target{Bucket: "dst"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r2.Restore(ctx, e.cl, r2.Opener(e.eng.Opener(m4, e.ids)), plan, 4); err != nil {
		t.Fatal(err)
	}
	e.compareBucket(t, "dst", "", model)
}

// countIndex counts the entries of a snapshot's index of src by re-keying it (which reads it
// through and checks its footer).
func countIndex(e *env, m *manifest.Manifest) (int, error) {
	src, _ := m.SourceByName(r2.Component, "src")
	return r2.CountIndex(e.secret, e.st, src.Index)
}

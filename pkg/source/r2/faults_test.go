package r2_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"filippo.io/age"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/cfbackup/cfbackup/pkg/archive"
	"github.com/cfbackup/cfbackup/pkg/engine"
	"github.com/cfbackup/cfbackup/pkg/manifest"
	"github.com/cfbackup/cfbackup/pkg/source/r2"
	"github.com/cfbackup/cfbackup/pkg/store"
	"github.com/cfbackup/cfbackup/pkg/store/mem"
)

func seed(t *testing.T, e *env, bucket string, n int) map[string]obj {
	rng := rand.New(rand.NewSource(int64(n)))
	model := map[string]obj{}
	for i := 0; i < n; i++ {
		k := fmt.Sprintf("k/%04d", i)
		model[k] = content(rng, i)
		e.put(t, bucket, k, model[k])
	}
	return model
}

func segmentKeys(t *testing.T, st store.Store) map[string]bool {
	t.Helper()
	out := map[string]bool{}
	if err := st.List(context.Background(), archive.SegmentPrefix, func(o store.ObjectInfo) error { out[o.Key] = true; return nil }); err != nil {
		t.Fatal(err)
	}
	return out
}

// Cancelling halfway leaves no snapshot and no new segment; the next backup completes and the
// earlier snapshot still restores.
func TestCancelledBackupLeavesNothing(t *testing.T) {
	e := newEnv(t, "src", "out")
	ctx := context.Background()
	model := seed(t, e, "src", 300)
	m1, _, err := e.backup(ctx, r2.BackupOptions{Bucket: "src"})
	if err != nil {
		t.Fatal(err)
	}
	for k := range model {
		if strings.HasSuffix(k, "5") {
			o := content(rand.New(rand.NewSource(9)), 5)
			o.data = append(o.data, 'x')
			model[k] = o
			e.put(t, "src", k, o)
		}
	}
	segsBefore := segmentKeys(t, e.st)
	cctx, cancel := context.WithCancel(ctx)
	var n atomic.Int32
	_, _, err = e.backup(cctx, r2.BackupOptions{Bucket: "src", BeforeGet: func(string) {
		if n.Add(1) == 10 {
			cancel()
		}
	}})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled backup: %v", err)
	}
	snaps, _, err := e.rp.ListSnapshots(ctx)
	if err != nil || len(snaps) != 1 {
		t.Fatalf("snapshots after cancel: %d %v", len(snaps), err)
	}
	if after := segmentKeys(t, e.st); len(after) != len(segsBefore) {
		t.Fatalf("cancelled backup left segments: %d before, %d after", len(segsBefore), len(after))
	}
	m3, st3, err := e.backup(ctx, r2.BackupOptions{Bucket: "src"})
	if err != nil {
		t.Fatal(err)
	}
	if st3.Fetched != 30 || st3.Reused != 270 {
		t.Fatalf("backup after cancel: %+v", st3)
	}
	for _, m := range []*manifest.Manifest{m1, m3} {
		if _, err := e.eng.Verify(ctx, m, engine.VerifyOptions{ReadData: true, Identities: e.ids}); err != nil {
			t.Fatal(err)
		}
	}
	cat, _ := m3.OpenCatalogue(e.ids)
	items, _ := r2.Select(cat, "src", "", nil)
	plan, err := r2.PlanRestore(ctx, e.cl, items, r2.Target{Bucket: "out"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r2.Restore(ctx, e.cl, r2.Opener(e.eng.Opener(m3, e.ids)), plan, 4); err != nil {
		t.Fatal(err)
	}
	e.compareBucket(t, "out", "", model)
}

// An object deleted between listing and GET is skipped with a count, or fails the backup under --strict.
func TestVanishedObject(t *testing.T) {
	e := newEnv(t, "src")
	ctx := context.Background()
	seed(t, e, "src", 20)
	hook := func(key string) {
		if key == "k/0007" {
			e.del(t, "src", key)
		}
	}
	_, _, err := e.backup(ctx, r2.BackupOptions{Bucket: "src", Strict: true, BeforeGet: hook})
	if !errors.Is(err, engine.ErrNotFound) || !strings.Contains(err.Error(), "--strict") {
		t.Fatalf("strict: %v", err)
	}
	if snaps, _, _ := e.rp.ListSnapshots(ctx); len(snaps) != 0 {
		t.Fatal("strict failure left a snapshot")
	}
	e.put(t, "src", "k/0007", obj{data: []byte("back")})
	m, st, err := e.backup(ctx, r2.BackupOptions{Bucket: "src", BeforeGet: hook})
	if err != nil {
		t.Fatal(err)
	}
	src, _ := m.SourceByName(r2.Component, "src")
	if st.Skipped != 1 || src.Skipped != 1 || src.Items != 19 {
		t.Fatalf("skipped: stats %+v source %+v", st, src)
	}
}

func TestBadBucketAndKeys(t *testing.T) {
	e := newEnv(t, "src")
	ctx := context.Background()
	if _, _, err := e.backup(ctx, r2.BackupOptions{Bucket: "no-such-bucket"}); !errors.Is(err, r2.ErrNoSuchBucket) {
		t.Fatalf("missing bucket: %v", err)
	}
	bad, err := r2.New(r2.Config{Endpoint: e.srv.Endpoint, Region: e.srv.Region, AccessKeyID: e.srv.AccessKey, SecretAccessKey: "wrong"})
	if err != nil {
		t.Fatal(err)
	}
	if err := bad.List(ctx, "src", "", func(r2.Object) error { return nil }); !errors.Is(err, r2.ErrAccessDenied) {
		t.Fatalf("wrong secret: %v", err)
	}
	if _, err := r2.New(r2.Config{Endpoint: e.srv.Endpoint}); !errors.Is(err, r2.ErrConfig) {
		t.Fatalf("no keys: %v", err)
	}
	// Without the writer secret the backup is complete but not incremental.
	seed(t, e, "src", 5)
	m, st, err := e.backup(ctx, r2.BackupOptions{Bucket: "src", WriterSecret: []byte{}})
	if err != nil || st.Objects != 5 {
		t.Fatalf("no secret: %+v %v", st, err)
	}
	if src, _ := m.SourceByName(r2.Component, "src"); src.Index != "" {
		t.Fatal("index written without a secret")
	}
	_, st, err = e.backup(ctx, r2.BackupOptions{Bucket: "src"})
	if err != nil || st.Reused != 0 || st.Fetched != 5 {
		t.Fatalf("after a backup without index: %+v %v", st, err)
	}
	// Another writer secret cannot read the index: full backup, not a failure.
	_, st, err = e.backup(ctx, r2.BackupOptions{Bucket: "src", WriterSecret: []byte("another secret of 32 bytes......")})
	if err != nil || st.Reused != 0 {
		t.Fatalf("wrong secret: %+v %v", st, err)
	}
	// The index never holds object keys in the clear.
	var idx []byte
	_ = e.st.List(ctx, "index/", func(o store.ObjectInfo) error {
		rc, _ := e.st.Open(ctx, o.Key, 0, -1)
		b := make([]byte, o.Size)
		_, _ = rc.Read(b)
		rc.Close()
		idx = append(idx, b...)
		return nil
	})
	if len(idx) == 0 || strings.Contains(string(idx), "k/000") {
		t.Fatalf("index missing or in the clear (%d bytes)", len(idx))
	}
}

// Keys the test S3 server cannot hold still restore into a directory without collisions: items are
// written with the archive writer as a backup would.
func TestDirRestoreAwkwardKeys(t *testing.T) {
	ctx := context.Background()
	id, _ := age.GenerateX25519Identity()
	st := mem.New()
	w, err := archive.NewWriter(ctx, archive.WriterOptions{Store: st, Recipients: []age.Recipient{id.Recipient()}})
	if err != nil {
		t.Fatal(err)
	}
	keys := []string{"a", "a/", "a/b", "..", "../x", "/leading", "double//slash", strings.Repeat("k", 1024), "back\\slash", "%", "."}
	paths := r2.EncodePaths(keys)
	var items []manifest.Item
	for i, k := range keys {
		ref, err := w.WriteItem(r2.ItemName("b", paths[k]), strings.NewReader(fmt.Sprintf("object %d", i)))
		if err != nil {
			t.Fatal(err)
		}
		items = append(items, manifest.Item{Component: r2.Component, Source: "b", Kind: "object", ItemRef: ref,
			Object: &manifest.ObjectMeta{Key: k, ContentType: "text/plain"}})
	}
	segs, err := w.Close()
	if err != nil {
		t.Fatal(err)
	}
	m := &manifest.Manifest{Segments: segs}
	open := func(ctx context.Context, ref archive.ItemRef) (io.ReadCloser, error) {
		return archive.OpenItem(ctx, st, m.SegmentMap(), []age.Identity{id}, ref)
	}
	dir := filepath.Join(t.TempDir(), "out")
	plan, err := r2.PlanRestore(ctx, nil, items, r2.Target{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r2.Restore(ctx, nil, open, plan, 3); err != nil {
		t.Fatal(err)
	}
	model := map[string]obj{}
	for i, k := range keys {
		model[k] = obj{data: []byte(fmt.Sprintf("object %d", i)), meta: manifest.ObjectMeta{ContentType: "text/plain"}}
	}
	compareDir(t, dir, model)
	// Again: everything is identical, nothing conflicts.
	plan, _ = r2.PlanRestore(ctx, nil, items, r2.Target{Dir: dir})
	if plan.Same != len(keys) || plan.Conflicts != 0 {
		t.Fatalf("second plan: same %d conflicts %d", plan.Same, plan.Conflicts)
	}
	// A changed file is a conflict under fail.
	if err := os.WriteFile(filepath.Join(dir, "a", "b"), []byte("edited"), 0o644); err != nil {
		t.Fatal(err)
	}
	plan, _ = r2.PlanRestore(ctx, nil, items, r2.Target{Dir: dir})
	if _, err := r2.Restore(ctx, nil, open, plan, 3); !errors.Is(err, r2.ErrConflict) {
		t.Fatalf("conflict: %v", err)
	}
}

// A prefetch budget smaller than a few objects must never deadlock: budget goes to claims in order.
func TestSmallPrefetchBudget(t *testing.T) {
	e := newEnv(t, "src")
	ctx := context.Background()
	seed(t, e, "src", 200)
	for i := 0; i < 3; i++ {
		_, st, err := e.backup(ctx, r2.BackupOptions{Bucket: "src", Concurrency: 8, PrefetchBudget: 70 << 10, WriterSecret: []byte{}})
		if err != nil || st.Objects != 200 {
			t.Fatalf("%+v %v", st, err)
		}
	}
}

// A restore from a damaged segment fails with ErrIntegrity and never PUTs an object whose bytes
// were damaged (read whole, checked, then sent); objects it did write are intact.
func TestRestoreFromDamagedSegment(t *testing.T) {
	e := newEnv(t, "src", "dst")
	ctx := context.Background()
	model := seed(t, e, "src", 30)
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
	// Flip a byte in the age chunk holding the start of the middle object's frame.
	victim := items[len(items)/2]
	c := victim.Chunks[0]
	var seg archive.SegmentInfo
	for _, s := range m.Segments {
		if s.ID == c.Segment {
			seg = s
		}
	}
	const chunk, encChunk = 64 << 10, 64<<10 + 16
	nchunks := (seg.PlainSize + chunk - 1) / chunk
	hdr := seg.Size - seg.PlainSize - 16*nchunks
	pos := hdr + (c.Offset/chunk)*encChunk + c.Offset%chunk
	damaged := map[string]bool{}
	lo, hi := (c.Offset/chunk)*chunk, (c.Offset/chunk+1)*chunk
	for _, it := range items {
		for _, ch := range it.Chunks {
			if ch.Segment == seg.ID && ch.Offset < hi && ch.Offset+ch.Length > lo {
				damaged[it.Object.Key] = true
			}
		}
	}
	out, err := e.admin.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("repo"), Key: aws.String(seg.Key)})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(out.Body)
	out.Body.Close()
	b[pos] ^= 0x20
	if _, err := e.admin.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("repo"), Key: aws.String(seg.Key), Body: bytes.NewReader(b)}); err != nil {
		t.Fatal(err)
	}
	plan, err := r2.PlanRestore(ctx, e.cl, items, r2.Target{Bucket: "dst"})
	if err != nil {
		t.Fatal(err)
	}
	_, err = r2.Restore(ctx, e.cl, r2.Opener(e.eng.Opener(m, e.ids)), plan, 1)
	if !errors.Is(err, archive.ErrIntegrity) {
		t.Fatalf("restore from a damaged segment: %v, want ErrIntegrity", err)
	}
	written := 0
	for k, o := range model {
		_, _, found, err := e.cl.Head(ctx, "dst", k)
		if err != nil {
			t.Fatal(err)
		}
		if !found {
			continue
		}
		written++
		if damaged[k] {
			t.Errorf("%q was restored from a damaged chunk", k)
		} else if !bytes.Equal(e.get(t, "dst", k), o.data) {
			t.Errorf("%q restored with other bytes", k)
		}
	}
	t.Logf("%d of %d objects written before the damaged one (%d damaged): %v", written, len(model), len(damaged), err)
}

// A whole-bucket backup after a --prefix one takes the newest snapshot that covers the whole
// bucket as its parent, so nothing unchanged is fetched again; a prefix backup may use either.
func TestParentCoversPrefix(t *testing.T) {
	e := newEnv(t, "src")
	ctx := context.Background()
	seed(t, e, "src", 30)
	m1, _, err := e.backup(ctx, r2.BackupOptions{Bucket: "src"})
	if err != nil {
		t.Fatal(err)
	}
	m2, st2, err := e.backup(ctx, r2.BackupOptions{Bucket: "src", Prefix: "k/001"})
	if err != nil {
		t.Fatal(err)
	}
	src2, _ := m2.SourceByName(r2.Component, "src")
	if st2.GETs != 0 || st2.Objects != 10 || src2.Prefix != "k/001" || src2.Parent != m1.ID {
		t.Fatalf("prefix backup: %+v, source %+v", st2, src2)
	}
	m3, st3, err := e.backup(ctx, r2.BackupOptions{Bucket: "src"})
	if err != nil {
		t.Fatal(err)
	}
	src3, _ := m3.SourceByName(r2.Component, "src")
	if src3.Parent != m1.ID || st3.GETs != 0 || st3.Reused != 30 || src3.Prefix != "" {
		t.Fatalf("whole-bucket backup after a prefix one: parent %s (want %s), %+v", src3.Parent, m1.ID, st3)
	}
	// A prefix backup takes the newest snapshot that covers its prefix: the whole-bucket m3.
	m4, st4, err := e.backup(ctx, r2.BackupOptions{Bucket: "src", Prefix: "k/002"})
	if err != nil {
		t.Fatal(err)
	}
	if src4, _ := m4.SourceByName(r2.Component, "src"); src4.Parent != m3.ID || st4.GETs != 0 {
		t.Fatalf("prefix backup: parent %s (want %s), %+v", src4.Parent, m3.ID, st4)
	}
}

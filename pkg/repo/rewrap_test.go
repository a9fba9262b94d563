package repo_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"testing"
	"time"

	"filippo.io/age"

	"github.com/cfbackup/cfbackup/internal/testutil/s3server"
	"github.com/cfbackup/cfbackup/pkg/archive"
	"github.com/cfbackup/cfbackup/pkg/manifest"
	. "github.com/cfbackup/cfbackup/pkg/repo"
	"github.com/cfbackup/cfbackup/pkg/store"
	"github.com/cfbackup/cfbackup/pkg/store/faulty"
	"github.com/cfbackup/cfbackup/pkg/store/local"
	"github.com/cfbackup/cfbackup/pkg/store/mem"
	"github.com/cfbackup/cfbackup/pkg/store/open"
)

// writeSnapshot stores a snapshot of n random items with the real archive writer (small segments, so
// there are several) and returns the items' contents by name.
func writeSnapshot(t *testing.T, r *Repo, id string, at time.Time, n int) map[string][]byte {
	t.Helper()
	ctx := context.Background()
	rcp, err := r.Recipients()
	if err != nil {
		t.Fatal(err)
	}
	w, err := archive.NewWriter(ctx, archive.WriterOptions{Store: r.Store, Recipients: rcp, SegmentSize: 64 << 10, ChunkSize: 32 << 10, Concurrency: 1})
	if err != nil {
		t.Fatal(err)
	}
	items := map[string][]byte{}
	var cat manifest.Catalogue
	for i := 0; i < n; i++ {
		b := make([]byte, 20<<10)
		rand.Read(b)
		name := fmt.Sprintf("%s/item%02d", id, i)
		ref, err := w.WriteItem(name, bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		items[name] = b
		cat.Items = append(cat.Items, manifest.Item{Component: "d1", Source: "s", Kind: "table", Table: name, ItemRef: ref})
	}
	segs, err := w.Close()
	if err != nil {
		t.Fatal(err)
	}
	m := &manifest.Manifest{ID: id, Time: at, Components: []string{"d1"}, Segments: segs, Items: int64(n)}
	for _, s := range segs {
		m.StoredSize += s.Size
	}
	if err := m.SealCatalogue(&cat, rcp); err != nil {
		t.Fatal(err)
	}
	if err := r.SaveManifest(ctx, m); err != nil {
		t.Fatal(err)
	}
	return items
}

// readSnapshots reads every item of every snapshot with ids; an error on the first failure.
func readSnapshots(ctx context.Context, r *Repo, ids []age.Identity, want map[string][]byte) error {
	snaps, bad, err := r.ListSnapshots(ctx)
	if err != nil {
		return err
	}
	if len(bad) > 0 {
		return fmt.Errorf("bad manifests: %v", bad)
	}
	seen := 0
	for _, s := range snaps {
		m, err := r.LoadManifest(ctx, s)
		if err != nil {
			return err
		}
		for _, seg := range m.Segments {
			if err := archive.VerifySegment(ctx, r.Store, seg); err != nil {
				return err
			}
		}
		cat, err := m.OpenCatalogue(ids)
		if err != nil {
			return err
		}
		for _, it := range cat.Items {
			rc, err := archive.OpenItem(ctx, r.Store, m.SegmentMap(), ids, it.ItemRef)
			if err != nil {
				return err
			}
			b, err := io.ReadAll(rc)
			rc.Close()
			if err != nil {
				return err
			}
			if !bytes.Equal(b, want[it.Table]) {
				return fmt.Errorf("item %s differs", it.Table)
			}
			seen++
		}
	}
	if seen != len(want) {
		return fmt.Errorf("read %d items, want %d", seen, len(want))
	}
	return nil
}

// s3Store is a store on a real S3 server (versitygw), in a bucket with Object Lock when lock is set.
func s3Store(t *testing.T, bucket string, lock bool) store.Store {
	t.Helper()
	srv := s3server.Start(t)
	srv.CreateBucket(t, bucket, lock)
	st, err := open.Open(context.Background(), "s3://"+bucket+"/repo", open.Options{S3Endpoint: srv.Endpoint, S3Region: srv.Region,
		AccessKeyID: srv.AccessKey, SecretAccessKey: srv.SecretKey, PathStyle: true})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func TestRewrapInterruptedResumes(t *testing.T) {
	all := stores(t)
	if !testing.Short() {
		all["s3"] = func() store.Store { return s3Store(t, "rewrap", false) }
	}
	for name, mk := range all {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			oldID, oldR := newKey(t)
			newID, newR := newKey(t)
			st := mk()
			r, _, err := Init(ctx, st, InitOptions{Recipients: []string{oldR}})
			if err != nil {
				t.Fatal(err)
			}
			want := writeSnapshot(t, r, "aaaa0001", time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), 8)
			if err := r.SetRecipients(ctx, []string{oldR, newR}); err != nil {
				t.Fatal(err)
			}
			for k, v := range writeSnapshot(t, r, "aaaa0002", time.Date(2026, 1, 2, 0, 0, 0, 0, time.UTC), 8) {
				want[k] = v
			}
			if err := readSnapshots(ctx, r, []age.Identity{oldID}, want); err != nil {
				t.Fatalf("old identity before removal: %v", err)
			}
			if err := r.SetRecipients(ctx, []string{newR}); err != nil {
				t.Fatal(err)
			}
			// Interrupt after 2 segments.
			cctx, cancel := context.WithCancel(ctx)
			res, err := r.Rewrap(cctx, RewrapOptions{Identities: []age.Identity{oldID}, OnObject: func(_ string, done, _ int) {
				if done == 2 {
					cancel()
				}
			}})
			if !errors.Is(err, context.Canceled) || res.Rewritten != 2 {
				t.Fatalf("interrupted rewrap: %+v, %v", res, err)
			}
			if res.Segments < 4 {
				t.Fatalf("only %d segments: the test needs several", res.Segments)
			}
			// Midway every snapshot still reads (sizes kept) with the new identity's catalogue access
			// pending: the old identity still opens catalogues, the new one opens every segment read.
			if err := readSnapshotsNoVerify(ctx, r, []age.Identity{oldID, newID}); err != nil {
				t.Fatalf("midway: %v", err)
			}
			if _, err := st.Stat(ctx, "rotation/rewrap.idx"); err != nil {
				t.Fatalf("no journal midway: %v", err)
			}
			// Resume: reopen from the store as a new process would.
			r2, err := OpenWithIdentities(ctx, st, []age.Identity{newID}, AuthOptions{})
			if err != nil {
				t.Fatal(err)
			}
			res, err = r2.Rewrap(ctx, RewrapOptions{Identities: []age.Identity{newID, oldID}})
			if err != nil {
				t.Fatal(err)
			}
			if res.Resumed != 2 || res.Rewritten != res.Segments-2 || res.Manifests != 2 || res.Grown != 0 {
				t.Fatalf("resume: %+v", res)
			}
			if err := readSnapshots(ctx, r2, []age.Identity{newID}, want); err != nil {
				t.Fatalf("new identity after rewrap: %v", err)
			}
			if err := readSnapshots(ctx, r2, []age.Identity{oldID}, want); err == nil {
				t.Fatal("the removed identity still reads the repository")
			}
			if _, err := OpenWithIdentities(ctx, st, []age.Identity{oldID}, AuthOptions{}); err == nil {
				t.Fatal("the removed identity still opens keys/writer.age")
			}
			if _, err := st.Stat(ctx, "rotation/rewrap.idx"); !errors.Is(err, store.ErrNotFound) {
				t.Fatalf("journal left: %v", err)
			}
		})
	}
}

// readSnapshotsNoVerify reads every item (no whole-segment hash check: manifests are updated last).
func readSnapshotsNoVerify(ctx context.Context, r *Repo, ids []age.Identity) error {
	snaps, _, err := r.ListSnapshots(ctx)
	if err != nil {
		return err
	}
	for _, s := range snaps {
		m, err := r.LoadManifest(ctx, s)
		if err != nil {
			return err
		}
		cat, err := m.OpenCatalogue(ids)
		if err != nil {
			return err
		}
		for _, it := range cat.Items {
			rc, err := archive.OpenItem(ctx, r.Store, m.SegmentMap(), ids, it.ItemRef)
			if err != nil {
				return err
			}
			_, err = io.Copy(io.Discard, rc)
			rc.Close()
			if err != nil {
				return fmt.Errorf("%s: %w", it.Table, err)
			}
		}
	}
	return nil
}

func TestRotateWriterInterruptedResumes(t *testing.T) {
	ctx := context.Background()
	id, rc := newKey(t)
	st := mem.New()
	r, oldSecret, err := Init(ctx, st, InitOptions{Recipients: []string{rc}})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][]byte{}
	for i := 1; i <= 3; i++ {
		for k, v := range writeSnapshot(t, r, fmt.Sprintf("bbbb000%d", i), time.Date(2026, 1, i, 0, 0, 0, 0, time.UTC), 2) {
			want[k] = v
		}
	}
	newSecret := bytes.Repeat([]byte{7}, 32)
	cctx, cancel := context.WithCancel(ctx)
	res, err := r.RotateWriter(cctx, newSecret, RotateWriterOptions{OnObject: func(_ string, done, _ int) {
		if done == 1 {
			cancel()
		}
	}})
	if !errors.Is(err, context.Canceled) || res.Manifests != 1 {
		t.Fatalf("interrupted: %+v %v", res, err)
	}
	// Midway the configuration still authenticates with the old secret only.
	r2, err := Open(ctx, st)
	if err != nil {
		t.Fatal(err)
	}
	if r2.TryKeys(newSecret, oldSecret) != 1 {
		t.Fatal("config.json changed before the commit point")
	}
	if err := r2.Authenticate(oldSecret, AuthOptions{}); err != nil {
		t.Fatal(err)
	}
	res, err = r2.RotateWriter(ctx, newSecret, RotateWriterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if res.Resumed != 1 || res.Manifests != 2 {
		t.Fatalf("resume: %+v", res)
	}
	r3, err := Open(ctx, st)
	if err != nil {
		t.Fatal(err)
	}
	if err := r3.Authenticate(oldSecret, AuthOptions{}); !errors.Is(err, ErrUnauthenticated) {
		t.Fatalf("old secret: %v", err)
	}
	r4, err := OpenWithIdentities(ctx, st, []age.Identity{id}, AuthOptions{KeyID: res.NewKeyID})
	if err != nil {
		t.Fatal(err)
	}
	if err := readSnapshots(ctx, r4, []age.Identity{id}, want); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Stat(ctx, "rotation/writer.idx"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("journal left: %v", err)
	}
}

// Under S3 Object Lock, segments cannot be replaced for good (their old versions stay): rewrap
// reports each one and fails with ErrRewrapLocked (exit 8) after doing everything else.
func TestRewrapObjectLockReported(t *testing.T) {
	if testing.Short() {
		t.Skip("starts an S3 server")
	}
	ctx := context.Background()
	oldID, oldR := newKey(t)
	newID, newR := newKey(t)
	st := s3Store(t, "locked", true)
	r, _, err := Init(ctx, st, InitOptions{Recipients: []string{oldR}, ObjectLock: &ObjectLock{Mode: "governance", Days: 1}})
	if err != nil {
		t.Fatal(err)
	}
	r, err = OpenWithIdentities(ctx, st, []age.Identity{oldID}, AuthOptions{})
	if err != nil {
		t.Fatal(err)
	}
	want := writeSnapshot(t, r, "cccc0001", time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), 4)
	if err := r.SetRecipients(ctx, []string{oldR, newR}); err != nil {
		t.Fatal(err)
	}
	if err := r.SetRecipients(ctx, []string{newR}); err != nil {
		t.Fatal(err)
	}
	res, err := r.Rewrap(ctx, RewrapOptions{Identities: []age.Identity{oldID}})
	if !errors.Is(err, ErrRewrapLocked) {
		t.Fatalf("want ErrRewrapLocked, got %v", err)
	}
	if len(res.Locked) != res.Segments || res.Rewritten != 0 || res.Manifests != 1 {
		t.Fatalf("%+v", res)
	}
	// The segments keep their old headers; the catalogue and writer secret moved to the new set.
	if err := readSnapshots(ctx, r, []age.Identity{oldID, newID}, want); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenWithIdentities(ctx, st, []age.Identity{oldID}, AuthOptions{}); err == nil {
		t.Fatal("old identity opens the writer secret")
	}
}

// A failing store instead of a cancelled context: a PUT cut midway leaves the old segment (still
// readable), and a PUT whose answer was lost after the server stored it is recognised on the rerun
// by the header the journal noted, so its new hash is recorded rather than refused as foreign.
func TestRewrapFailingStoreResumes(t *testing.T) {
	for _, tc := range []struct {
		name  string
		fault func(f *faulty.Store)
	}{
		{"put cut midway", func(f *faulty.Store) { f.FailPutMidway(5, 1000, errors.New("connection reset")) }},
		{"put answer lost", func(f *faulty.Store) { f.FailAfter(faulty.OpPut, 5, errors.New("timeout after the server stored it")) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			oldID, oldR := newKey(t)
			newID, newR := newKey(t)
			inner, err := local.New(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			r, _, err := Init(ctx, inner, InitOptions{Recipients: []string{oldR}})
			if err != nil {
				t.Fatal(err)
			}
			want := writeSnapshot(t, r, "eeee0001", time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), 8)
			if err := r.SetRecipients(ctx, []string{newR}); err != nil {
				t.Fatal(err)
			}
			fs := faulty.New(inner)
			tc.fault(fs) // Puts: 1 writer.age, then per segment: journal (pending), segment
			rf, err := OpenWithIdentities(ctx, fs, []age.Identity{newID}, AuthOptions{})
			if err != nil {
				t.Fatal(err)
			}
			res, err := rf.Rewrap(ctx, RewrapOptions{Identities: []age.Identity{oldID}})
			if err == nil || res.Rewritten != 1 {
				t.Fatalf("want a failure at the 2nd segment: %+v %v", res, err)
			}
			if err := readSnapshotsNoVerify(ctx, rf, []age.Identity{oldID, newID}); err != nil {
				t.Fatalf("after the failure: %v", err)
			}
			r2, err := OpenWithIdentities(ctx, inner, []age.Identity{newID}, AuthOptions{})
			if err != nil {
				t.Fatal(err)
			}
			res, err = r2.Rewrap(ctx, RewrapOptions{Identities: []age.Identity{newID, oldID}})
			if err != nil {
				t.Fatal(err)
			}
			if res.Resumed != 1 || res.Rewritten != res.Segments-1 {
				t.Fatalf("resume: %+v", res)
			}
			if err := readSnapshots(ctx, r2, []age.Identity{newID}, want); err != nil {
				t.Fatal(err)
			}
			if err := readSnapshots(ctx, r2, []age.Identity{oldID}, want); err == nil {
				t.Fatal("old identity still reads")
			}
		})
	}
}

// After add-recipient, a rewrap lets the new recipient read old snapshots too: headers grow (no
// padding can shrink them), manifests record the new sizes, and both identities read everything.
func TestRewrapAfterAddGrowsHeaders(t *testing.T) {
	ctx := context.Background()
	oldID, oldR := newKey(t)
	newID, newR := newKey(t)
	st := mem.New()
	r, _, err := Init(ctx, st, InitOptions{Recipients: []string{oldR}})
	if err != nil {
		t.Fatal(err)
	}
	want := writeSnapshot(t, r, "ffff0001", time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), 6)
	if err := readSnapshots(ctx, r, []age.Identity{newID}, want); err == nil {
		t.Fatal("the new identity reads a snapshot made before it was added")
	}
	if err := r.SetRecipients(ctx, []string{oldR, newR}); err != nil {
		t.Fatal(err)
	}
	res, err := r.Rewrap(ctx, RewrapOptions{Identities: []age.Identity{oldID}})
	if err != nil {
		t.Fatal(err)
	}
	if res.Grown != res.Segments || res.BytesWritten <= res.BytesRead {
		t.Fatalf("%+v", res)
	}
	for _, id := range []age.Identity{oldID, newID} {
		if err := readSnapshots(ctx, r, []age.Identity{id}, want); err != nil {
			t.Fatal(err)
		}
	}
}

package engine_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/cfbackup/cfbackup/internal/testutil/s3server"
	"github.com/cfbackup/cfbackup/pkg/engine"
	"github.com/cfbackup/cfbackup/pkg/keys"
	"github.com/cfbackup/cfbackup/pkg/manifest"
	"github.com/cfbackup/cfbackup/pkg/repo"
	"github.com/cfbackup/cfbackup/pkg/store"
	"github.com/cfbackup/cfbackup/pkg/store/faulty"
	"github.com/cfbackup/cfbackup/pkg/store/local"
	"github.com/cfbackup/cfbackup/pkg/store/open"
)

// TestCopyToS3Replica replicates a snapshot from a local repository to a replica on a real S3 server,
// interrupted once halfway: the second run copies only what is missing, the replica verifies and
// restores on its own, and a third run is a no-op.
func TestCopyToS3Replica(t *testing.T) {
	if testing.Short() {
		t.Skip("starts an S3 server")
	}
	srv := s3server.Start(t)
	srv.CreateBucket(t, "replica", false)
	f := newFixture(t, 40)
	ctx := context.Background()
	m, err := f.backup(t, ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Segments) < 3 {
		t.Fatalf("want several segments, got %d", len(m.Segments))
	}
	s3st, err := open.Open(ctx, "s3://replica/dr", open.Options{S3Endpoint: srv.Endpoint, S3Region: srv.Region,
		AccessKeyID: srv.AccessKey, SecretAccessKey: srv.SecretKey, PathStyle: true})
	if err != nil {
		t.Fatal(err)
	}
	fst := faulty.New(s3st)
	dst, created, err := f.eng.InitReplica(ctx, fst)
	if err != nil || !created {
		t.Fatalf("InitReplica: created=%v err=%v", created, err)
	}
	if dst.Config.ID != f.repo.Config.ID {
		t.Fatalf("replica id %s, source %s", dst.Config.ID, f.repo.Config.ID)
	}
	// The third segment's upload breaks halfway: no manifest may appear at the destination.
	boom := errors.New("network down")
	fst.FailPutMidway(fst.Calls(faulty.OpPut)+3, 1000, boom)
	if _, err := f.eng.Copy(ctx, dst, m, engine.CopyOptions{}); !errors.Is(err, boom) {
		t.Fatalf("interrupted copy: %v", err)
	}
	if _, err := s3st.Stat(ctx, manifest.Key(m.Time, m.ID)); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("manifest at the destination after a failed copy: %v", err)
	}
	fst.Reset()
	res, err := f.eng.Copy(ctx, dst, m, engine.CopyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if res.SegmentsCopied == 0 || res.SegmentsCopied >= len(m.Segments) || !res.Verified {
		t.Fatalf("resumed copy copied %d of %d segments (verified %v): want only the missing ones", res.SegmentsCopied, len(m.Segments), res.Verified)
	}
	res, err = f.eng.Copy(ctx, dst, m, engine.CopyOptions{})
	if err != nil || !res.AlreadyCopied || res.BytesCopied != 0 {
		t.Fatalf("third copy: %+v %v", res, err)
	}
	// The replica stands alone: list, verify --read-data and restore from it.
	f.checkStandsAlone(t, ctx, s3st, m.ID, "the replica")
}

func TestCopyRefusesOtherRecipientsAndBadSource(t *testing.T) {
	f := newFixture(t, 10)
	ctx := context.Background()
	m, err := f.backup(t, ctx)
	if err != nil {
		t.Fatal(err)
	}
	// A repository with other recipients cannot hold these snapshots.
	_, other, err := keys.Generate(false)
	if err != nil {
		t.Fatal(err)
	}
	ost, err := local.New(filepath.Join(t.TempDir(), "other"))
	if err != nil {
		t.Fatal(err)
	}
	odst, _, err := repo.Init(ctx, ost, repo.InitOptions{Recipients: []string{other}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.eng.Copy(ctx, odst, m, engine.CopyOptions{}); !errors.Is(err, engine.ErrRefused) {
		t.Fatalf("copy to a repository with other recipients: %v", err)
	}
	// A source segment altered after it was written is not copied, and no snapshot appears.
	dir := t.TempDir()
	dst, _, err := f.eng.InitReplica(ctx, mustLocal(t, dir))
	if err != nil {
		t.Fatal(err)
	}
	seg := m.Segments[len(m.Segments)-1]
	p := filepath.Join(f.repo.Store.Location(), seg.Key)
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("read %s: %v", p, err)
	}
	b[len(b)/2] ^= 0xff
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := f.eng.Copy(ctx, dst, m, engine.CopyOptions{}); !errors.Is(err, engine.ErrIntegrity) {
		t.Fatalf("copy of a corrupted segment: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, seg.Key)); !os.IsNotExist(err) {
		t.Fatalf("the corrupted segment was left at the destination: %v", err)
	}
	if snaps, _, _ := dst.ListSnapshots(ctx); len(snaps) != 0 {
		t.Fatalf("%d snapshot(s) at the destination after a failed copy", len(snaps))
	}
}

func mustLocal(t *testing.T, dir string) store.Store {
	t.Helper()
	st, err := local.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// Copy takes a shared lock on the destination: while a prune holds it exclusively the copy is refused
// with ErrLocked before writing anything, and once it is free the copy runs and leaves no lock behind.
func TestCopyLocksTheDestination(t *testing.T) {
	f := newFixture(t, 10)
	ctx := context.Background()
	m, err := f.backup(t, ctx)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	dst, _, err := f.eng.InitReplica(ctx, mustLocal(t, dir))
	if err != nil {
		t.Fatal(err)
	}
	deng := &engine.Engine{Repo: dst, Tool: "test"}
	l, _, err := deng.Lock(ctx, engine.LockOptions{Kind: engine.LockExclusive, Command: "prune"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.eng.Copy(ctx, dst, m, engine.CopyOptions{}); !errors.Is(err, engine.ErrLocked) {
		t.Fatalf("copy while the destination is locked by prune: %v, want ErrLocked", err)
	}
	if _, err := os.Stat(filepath.Join(dir, m.Segments[0].Key)); !os.IsNotExist(err) {
		t.Fatalf("a segment was copied although the destination was locked: %v", err)
	}
	if err := l.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if res, err := f.eng.Copy(ctx, dst, m, engine.CopyOptions{}); err != nil || res.AlreadyCopied {
		t.Fatalf("copy after the lock was released: %+v %v", res, err)
	}
	if locks, err := deng.ListLocks(ctx); err != nil || len(locks) != 0 {
		t.Fatalf("locks left at the destination: %v %v", locks, err)
	}
}

package engine_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/cfbackup/cfbackup/internal/testutil/s3server"
	"github.com/cfbackup/cfbackup/pkg/engine"
	"github.com/cfbackup/cfbackup/pkg/manifest"
	"github.com/cfbackup/cfbackup/pkg/repo"
	"github.com/cfbackup/cfbackup/pkg/retention"
	"github.com/cfbackup/cfbackup/pkg/store"
	"github.com/cfbackup/cfbackup/pkg/store/retry"
	"github.com/cfbackup/cfbackup/pkg/store/s3"
)

// On a real S3 server with an Object Lock bucket, 'hold add' puts a legal hold on every object the
// snapshot needs: the store itself refuses to delete them, prune keeps the snapshot, and after the
// release prune removes it and really frees the bytes (every version).
func TestHoldSetsObjectLockLegalHolds(t *testing.T) {
	ctx := context.Background()
	srv := s3server.Start(t)
	srv.CreateBucket(t, "vault", true)
	raw, err := s3.New(ctx, s3.Config{Bucket: "vault", Prefix: "repo", Endpoint: srv.Endpoint, Region: srv.Region, AccessKeyID: srv.AccessKey, SecretAccessKey: srv.SecretKey})
	if err != nil {
		t.Fatal(err)
	}
	f := newPruneFixture(t, retry.New(raw, retry.Options{Attempts: 2}))
	base := f.snapshot(t, "media", nil, nil)
	f.clk.Add(time.Hour)
	newer := f.snapshot(t, "media", nil, nil)
	res, err := f.eng.AddHold(ctx, base, engine.HoldOptions{Reason: "litigation", Case: "C-7"})
	if err != nil {
		t.Fatal(err)
	}
	if res.LegalHolds != len(engine.SnapshotObjects(base)) || res.LegalHolds < 2 {
		t.Fatalf("legal holds %d, want one per object (%v)", res.LegalHolds, engine.SnapshotObjects(base))
	}
	for _, k := range engine.SnapshotObjects(base) {
		if on, err := raw.LegalHold(ctx, k); err != nil || !on {
			t.Fatalf("%s: legal hold %v %v", k, on, err)
		}
		if err := raw.DeleteVersions(ctx, k); !errors.Is(err, store.ErrObjectLocked) {
			t.Fatalf("%s: delete of a held object: %v", k, err)
		}
	}
	// Even an admin client's versioned delete is refused.
	seg := "repo/" + base.Segments[0].Key
	vers, err := srv.Client().ListObjectVersions(ctx, &awss3.ListObjectVersionsInput{Bucket: aws.String("vault"), Prefix: aws.String(seg)})
	if err != nil || len(vers.Versions) != 1 {
		t.Fatalf("versions: %v %v", vers, err)
	}
	if _, err := srv.Client().DeleteObject(ctx, &awss3.DeleteObjectInput{Bucket: aws.String("vault"), Key: aws.String(seg), VersionId: vers.Versions[0].VersionId}); err == nil {
		t.Fatal("held segment version deleted")
	}
	pol := retention.Policies{Default: retention.Policy{Last: 1}}
	pr, err := f.eng.Prune(ctx, engine.PruneOptions{Policies: pol, Grace: -1})
	if err != nil || len(pr.Removed) != 0 {
		t.Fatalf("prune removed a held snapshot: %v %+v", err, pr)
	}
	f.verifyAll(t)

	rel, err := f.eng.ReleaseHold(ctx, base.ID, engine.HoldOptions{Reason: "case closed"})
	if err != nil || rel.LegalHolds != len(engine.SnapshotObjects(base)) {
		t.Fatalf("release: %v %+v", err, rel)
	}
	pr, err = f.eng.Prune(ctx, engine.PruneOptions{Policies: pol, Grace: -1})
	if err != nil || len(pr.Removed) != 1 || pr.SegmentsDeleted != 1 {
		t.Fatalf("prune after release: %v %+v", err, pr)
	}
	vers, _ = srv.Client().ListObjectVersions(ctx, &awss3.ListObjectVersionsInput{Bucket: aws.String("vault"), Prefix: aws.String(seg)})
	if len(vers.Versions)+len(vers.DeleteMarkers) != 0 {
		t.Fatalf("pruned segment still has %d version(s) and %d marker(s)", len(vers.Versions), len(vers.DeleteMarkers))
	}
	f.verifyAll(t)
	_ = newer
}

// init --object-lock-retention: everything written carries retention, a snapshot the policy lets go
// stays until its retention ends (kept as "object-lock", not an error), and prune extends the
// retention of what it keeps — not of what it lets go.
func TestObjectLockRetentionOnEverythingWritten(t *testing.T) {
	ctx := context.Background()
	srv := s3server.Start(t)
	srv.CreateBucket(t, "worm", true)
	srv.CreateBucket(t, "plain", false)
	mk := func(bucket string) store.Store {
		raw, err := s3.New(ctx, s3.Config{Bucket: bucket, Prefix: "repo", Endpoint: srv.Endpoint, Region: srv.Region, AccessKeyID: srv.AccessKey, SecretAccessKey: srv.SecretKey})
		if err != nil {
			t.Fatal(err)
		}
		return retry.New(raw, retry.Options{Attempts: 2})
	}
	if _, _, err := repo.Init(ctx, mk("plain"), repo.InitOptions{Recipients: []string{testRecipient(t)}, ObjectLock: &repo.ObjectLock{Mode: "governance", Days: 1}}); !errors.Is(err, repo.ErrObjectLock) {
		t.Fatalf("init with retention on a bucket without Object Lock: %v", err)
	}
	st := mk("worm")
	f := newPruneFixtureWith(t, st, &repo.ObjectLock{Mode: "governance", Days: 1})
	lk, _ := store.AsObjectLocker(st)
	mode, until, err := lk.Retention(ctx, "config.json")
	if err != nil || mode != store.RetentionGovernance || until.Before(time.Now().Add(23*time.Hour)) {
		t.Fatalf("config.json retention %q %v %v", mode, until, err)
	}
	a := f.snapshot(t, "media", nil, nil)
	f.clk.Add(time.Hour)
	b := f.snapshot(t, "media", nil, nil)
	for _, k := range append(engine.SnapshotObjects(a), engine.SnapshotObjects(b)...) {
		if mode, _, err := lk.Retention(ctx, k); err != nil || mode != store.RetentionGovernance {
			t.Fatalf("%s: retention %q %v", k, mode, err)
		}
	}
	// 20 hours later a is past its policy but not its retention; b's retention gets extended.
	f.clk.Add(20 * time.Hour)
	res, err := f.eng.Prune(ctx, engine.PruneOptions{Policies: retention.Policies{Default: retention.Policy{Last: 1}}, Grace: -1})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Removed) != 0 || keptIDs(res)[a.ID][0] != "object-lock" {
		t.Fatalf("kept %v removed %v", res.Kept, res.Removed)
	}
	if res.RetentionExtended != len(engine.SnapshotObjects(b)) {
		t.Fatalf("extended %d, want %d", res.RetentionExtended, len(engine.SnapshotObjects(b)))
	}
	_, ub, _ := lk.Retention(ctx, engine.SnapshotObjects(b)[0])
	_, ua, _ := lk.Retention(ctx, engine.SnapshotObjects(a)[0])
	if !ub.After(time.Now().Add(40*time.Hour)) || ua.After(time.Now().Add(25*time.Hour)) {
		t.Fatalf("retention of kept %v, of let-go %v", ub, ua)
	}
	// Lock objects are exempt: prune could take and release its lock.
	if keys := f.keys(t, "locks/"); len(keys) != 0 {
		t.Fatalf("locks left: %v", keys)
	}
	f.verifyAll(t)
}

// Releasing one hold clears the legal hold only on objects no other active hold needs: an incremental
// snapshot's hold keeps the base segment it references held.
func TestReleaseKeepsLegalHoldsOtherHoldsNeed(t *testing.T) {
	ctx := context.Background()
	srv := s3server.Start(t)
	srv.CreateBucket(t, "vault2", true)
	raw, err := s3.New(ctx, s3.Config{Bucket: "vault2", Endpoint: srv.Endpoint, Region: srv.Region, AccessKeyID: srv.AccessKey, SecretAccessKey: srv.SecretKey})
	if err != nil {
		t.Fatal(err)
	}
	f := newPruneFixture(t, raw)
	base := f.snapshot(t, "media", nil, nil)
	f.clk.Add(time.Hour)
	inc := f.snapshot(t, "media", nil, base)
	for _, m := range []*manifest.Manifest{base, inc} {
		if _, err := f.eng.AddHold(ctx, m, engine.HoldOptions{Reason: "case"}); err != nil {
			t.Fatal(err)
		}
	}
	res, err := f.eng.ReleaseHold(ctx, base.ID, engine.HoldOptions{Reason: "base no longer needed"})
	if err != nil {
		t.Fatal(err)
	}
	// The base's manifest and catalogue are released; its segment is still needed by the held incremental.
	if res.LegalHolds != 2 {
		t.Fatalf("cleared %d legal holds, want 2 (the base manifest and its catalogue object only)", res.LegalHolds)
	}
	if on, _ := raw.LegalHold(ctx, base.Segments[0].Key); !on {
		t.Fatal("shared segment lost its legal hold while another hold needs it")
	}
	if on, _ := raw.LegalHold(ctx, engine.SnapshotObjects(base)[0]); on {
		t.Fatal("base manifest still held")
	}
}

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

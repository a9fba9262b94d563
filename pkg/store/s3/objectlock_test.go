package s3_test

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/cfbackup/cfbackup/internal/testutil/s3server"
	"github.com/cfbackup/cfbackup/pkg/store"
	"github.com/cfbackup/cfbackup/pkg/store/retry"
)

// A legal hold on a real Object Lock bucket makes the object undeletable (every version), until the
// hold is cleared; the capability is found beneath the retry decorator.
func TestObjectLockLegalHoldBlocksDelete(t *testing.T) {
	ctx := context.Background()
	srv := s3server.Start(t)
	srv.CreateBucket(t, "locked", true)
	srv.CreateBucket(t, "plain", false)
	raw := newStore(t, srv, "locked", "repo")
	st := retry.New(raw, retry.Options{Attempts: 2})
	lk, ok := store.AsObjectLocker(st)
	if !ok {
		t.Fatal("S3 store has no ObjectLocker")
	}
	if on, err := lk.ObjectLockEnabled(ctx); err != nil || !on {
		t.Fatalf("ObjectLockEnabled = %v, %v", on, err)
	}
	if on, err := newStore(t, srv, "plain", "").ObjectLockEnabled(ctx); err != nil || on {
		t.Fatalf("plain bucket: ObjectLockEnabled = %v, %v", on, err)
	}
	if err := st.Put(ctx, "segments/a.age", bytes.NewReader([]byte("data")), store.PutOptions{IfNotExists: true}); err != nil {
		t.Fatal(err)
	}
	if err := lk.SetLegalHold(ctx, "segments/a.age", true); err != nil {
		t.Fatal(err)
	}
	if on, err := lk.LegalHold(ctx, "segments/a.age"); err != nil || !on {
		t.Fatalf("LegalHold = %v, %v", on, err)
	}
	err := lk.DeleteVersions(ctx, "segments/a.age")
	if !errors.Is(err, store.ErrObjectLocked) {
		t.Fatalf("delete of a held object: %v, want ErrObjectLocked", err)
	}
	// Behind the store's back too: the admin client cannot delete the version either.
	vers, verr := srv.Client().ListObjectVersions(ctx, &awss3.ListObjectVersionsInput{Bucket: aws.String("locked"), Prefix: aws.String("repo/segments/a.age")})
	if verr != nil || len(vers.Versions) != 1 {
		t.Fatalf("versions %v %v", vers, verr)
	}
	if _, err := srv.Client().DeleteObject(ctx, &awss3.DeleteObjectInput{Bucket: aws.String("locked"), Key: aws.String("repo/segments/a.age"), VersionId: vers.Versions[0].VersionId}); err == nil {
		t.Fatal("admin client deleted a held version")
	}
	if _, err := st.Stat(ctx, "segments/a.age"); err != nil {
		t.Fatalf("held object gone: %v", err)
	}
	if err := lk.SetLegalHold(ctx, "segments/a.age", false); err != nil {
		t.Fatal(err)
	}
	if err := lk.DeleteVersions(ctx, "segments/a.age"); err != nil {
		t.Fatalf("delete after release: %v", err)
	}
	vers, _ = srv.Client().ListObjectVersions(ctx, &awss3.ListObjectVersionsInput{Bucket: aws.String("locked"), Prefix: aws.String("repo/segments/a.age")})
	if len(vers.Versions)+len(vers.DeleteMarkers) != 0 {
		t.Fatalf("versions left after DeleteVersions: %d + %d markers", len(vers.Versions), len(vers.DeleteMarkers))
	}
	if err := lk.DeleteVersions(ctx, "segments/a.age"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("second delete: %v", err)
	}
}

func TestObjectLockRetention(t *testing.T) {
	ctx := context.Background()
	srv := s3server.Start(t)
	srv.CreateBucket(t, "ret", true)
	st := newStore(t, srv, "ret", "")
	if err := st.Put(ctx, "snapshots/x.json", bytes.NewReader([]byte("{}")), store.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	until := time.Now().Add(time.Hour).UTC().Truncate(time.Second)
	if err := st.SetRetention(ctx, "snapshots/x.json", "compliance", until); err != nil {
		t.Fatal(err)
	}
	mode, got, err := st.Retention(ctx, "snapshots/x.json")
	if err != nil || mode != store.RetentionCompliance || !got.Equal(until) {
		t.Fatalf("retention %q %v %v, want COMPLIANCE %v", mode, got, err, until)
	}
	if err := st.DeleteVersions(ctx, "snapshots/x.json"); !errors.Is(err, store.ErrObjectLocked) {
		t.Fatalf("delete under retention: %v", err)
	}
	if err := st.SetRetention(ctx, "snapshots/x.json", "compliance", until.Add(-30*time.Minute)); err == nil {
		t.Fatal("compliance retention shortened")
	}
	if err := st.SetRetention(ctx, "snapshots/x.json", "compliance", until.Add(time.Hour)); err != nil {
		t.Fatalf("extend: %v", err)
	}
	if err := st.SetRetention(ctx, "snapshots/x.json", "forever", until); err == nil {
		t.Fatal("bad mode accepted")
	}
}

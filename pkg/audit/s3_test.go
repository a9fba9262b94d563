package audit_test

import (
	"context"
	"sync"
	"testing"

	"github.com/cfbackup/cfbackup/internal/testutil/s3server"
	"github.com/cfbackup/cfbackup/pkg/audit"
	"github.com/cfbackup/cfbackup/pkg/store/open"
)

// Concurrent writers on a real S3 server (conditional creates with If-None-Match) keep one linear chain.
func TestConcurrentAppendS3(t *testing.T) {
	if testing.Short() {
		t.Skip("starts an S3 server")
	}
	srv := s3server.Start(t)
	srv.CreateBucket(t, "audit", false)
	ctx := context.Background()
	st, err := open.Open(ctx, "s3://audit/repo", open.Options{S3Endpoint: srv.Endpoint, S3Region: srv.Region,
		AccessKeyID: srv.AccessKey, SecretAccessKey: srv.SecretKey, PathStyle: true})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l := &audit.Log{Store: st}
			for range 4 {
				if err := l.Append(ctx, &audit.Record{Command: "backup", Result: audit.ResultOK, Host: string(rune('a' + w))}); err != nil {
					errs <- err
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	_, s, err := (&audit.Log{Store: st}).Verify(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !s.OK || s.Records != 16 || s.HeadSeq != 16 {
		t.Fatalf("status %+v", s)
	}
}

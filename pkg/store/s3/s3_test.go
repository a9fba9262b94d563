package s3_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/cfbackup/cfbackup/internal/testutil/readers"
	"github.com/cfbackup/cfbackup/internal/testutil/s3server"
	"github.com/cfbackup/cfbackup/pkg/store"
	"github.com/cfbackup/cfbackup/pkg/store/local"
	"github.com/cfbackup/cfbackup/pkg/store/retry"
	"github.com/cfbackup/cfbackup/pkg/store/s3"
	"github.com/cfbackup/cfbackup/pkg/store/storetest"
)

func newStore(t testing.TB, srv *s3server.Server, bucket, prefix string) *s3.Store {
	t.Helper()
	s, err := s3.New(context.Background(), s3.Config{
		Bucket: bucket, Prefix: prefix, Endpoint: srv.Endpoint, Region: srv.Region,
		AccessKeyID: srv.AccessKey, SecretAccessKey: srv.SecretKey,
		PartSize: s3.MinPartSize, Concurrency: 3,
	})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestConformance(t *testing.T) {
	srv := s3server.Start(t)
	srv.CreateBucket(t, "conformance", false)
	var n atomic.Int64
	storetest.Run(t, func(t *testing.T) store.Store {
		// A fresh prefix per test also proves List strips the prefix and never leaks other repositories.
		return newStore(t, srv, "conformance", fmt.Sprintf("repos/%d", n.Add(1)))
	})
}

// The stack the CLI uses (open.Open): retry over S3.
func TestConformanceRetryWrapped(t *testing.T) {
	srv := s3server.Start(t)
	srv.CreateBucket(t, "wrapped", false)
	var n atomic.Int64
	storetest.Run(t, func(t *testing.T) store.Store {
		return retry.New(newStore(t, srv, "wrapped", fmt.Sprintf("r%d", n.Add(1))), retry.Options{})
	})
}

func TestConformanceNoPrefixObjectLockBucket(t *testing.T) {
	srv := s3server.Start(t)
	var n atomic.Int64
	storetest.Run(t, func(t *testing.T) store.Store {
		b := fmt.Sprintf("locked-%d", n.Add(1))
		srv.CreateBucket(t, b, true) // versioned: deletes leave markers, which must read as ErrNotFound
		return newStore(t, srv, b, "")
	})
}

// A conditional multipart create racing a plain Put that lands first is refused at Complete.
func TestConditionalMultipartRefused(t *testing.T) {
	srv := s3server.Start(t)
	srv.CreateBucket(t, "bkt", false)
	s := newStore(t, srv, "bkt", "")
	ctx := context.Background()
	// The plain Put lands while the last part is read: after the store's pre-check, before Complete.
	r := &readers.Hook{R: io.LimitReader(rand.Reader, 2*s3.MinPartSize+1), At: 2*s3.MinPartSize + 1, Fn: func() {
		if _, err := srv.Client().PutObject(ctx, &awss3.PutObjectInput{Bucket: aws.String("bkt"), Key: aws.String("m"), Body: strings.NewReader("first")}); err != nil {
			t.Error(err)
		}
	}}
	if err := s.Put(ctx, "m", r, store.PutOptions{IfNotExists: true}); !errors.Is(err, store.ErrExists) {
		t.Fatalf("Put = %v, want ErrExists", err)
	}
	rc, err := s.Open(ctx, "m", 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	if b, _ := io.ReadAll(rc); string(b) != "first" {
		t.Fatalf("object = %d bytes, want the first writer's", len(b))
	}
	// Found taken before any part is sent: the store's ErrExists too.
	if err := s.Put(ctx, "m", io.LimitReader(rand.Reader, 2*s3.MinPartSize+1), store.PutOptions{IfNotExists: true}); !errors.Is(err, store.ErrExists) {
		t.Fatalf("Put over an existing key = %v, want ErrExists", err)
	}
}

// A reader's error fails the Put with that error (and pkg/s3api aborts the upload).
func TestPutReaderError(t *testing.T) {
	srv := s3server.Start(t)
	srv.CreateBucket(t, "bkt", false)
	s := newStore(t, srv, "bkt", "p")
	boom := errors.New("boom")
	r := io.MultiReader(io.LimitReader(rand.Reader, 2*s3.MinPartSize+7), readers.Err{E: boom})
	if err := s.Put(context.Background(), "seg", r, store.PutOptions{}); !errors.Is(err, boom) {
		t.Fatalf("Put = %v", err)
	}
	if _, err := s.Stat(context.Background(), "seg"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Stat after a failed Put = %v, want ErrNotFound", err)
	}
}

func TestMissingBucket(t *testing.T) {
	srv := s3server.Start(t)
	s := newStore(t, srv, "no-such-bucket", "")
	_, err := s.Stat(context.Background(), "config.json")
	if !errors.Is(err, s3.ErrNoSuchBucket) && !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Stat in missing bucket = %v", err)
	}
	err = s.Put(context.Background(), "config.json", bytes.NewReader([]byte("{}")), store.PutOptions{})
	if !errors.Is(err, s3.ErrNoSuchBucket) {
		t.Fatalf("Put in missing bucket = %v, want ErrNoSuchBucket", err)
	}
}

func TestConfig(t *testing.T) {
	ctx := context.Background()
	for _, c := range []struct {
		name string
		cfg  s3.Config
		ok   bool
	}{
		{"no bucket", s3.Config{AccessKeyID: "a", SecretAccessKey: "b"}, false},
		{"half credentials", s3.Config{Bucket: "b", AccessKeyID: "a"}, false},
		{"tiny parts", s3.Config{Bucket: "b", AccessKeyID: "a", SecretAccessKey: "b", PartSize: 1 << 20}, false},
		{"bad endpoint", s3.Config{Bucket: "b", AccessKeyID: "a", SecretAccessKey: "b", Endpoint: "r2.example"}, false},
		{"r2", s3.Config{Bucket: "b", AccessKeyID: "a", SecretAccessKey: "b", Endpoint: "https://acct.r2.cloudflarestorage.com"}, true},
	} {
		_, err := s3.New(ctx, c.cfg)
		if (err == nil) != c.ok {
			t.Errorf("%s: New err = %v", c.name, err)
		}
		if err != nil && !errors.Is(err, s3.ErrConfig) {
			t.Errorf("%s: error %v does not match ErrConfig", c.name, err)
		}
	}
	s, _ := s3.New(ctx, s3.Config{Bucket: "bk", Prefix: "/team/repo/", AccessKeyID: "AKIDSECRETISH", SecretAccessKey: "verysecret"})
	if loc := s.Location(); loc != "s3://bk/team/repo" || strings.Contains(loc, "secret") {
		t.Errorf("Location = %q", loc)
	}
	if !s3.IsR2("https://0123.eu.r2.cloudflarestorage.com") || s3.IsR2("https://s3.amazonaws.com") {
		t.Error("IsR2 misclassifies endpoints")
	}
}

// The S3 store reports its part buffers through the decorators wrapped around it, so a process that
// sets a soft memory limit can add them; a local store holds none.
func TestUploadBufferBytes(t *testing.T) {
	srv := s3server.Start(t)
	srv.CreateBucket(t, "bkt", false)
	s := newStore(t, srv, "bkt", "p") // MinPartSize, Concurrency 3
	if got, want := store.UploadBufferBytes(retry.New(s, retry.Options{})), int64(4*s3.MinPartSize); got != want {
		t.Fatalf("UploadBufferBytes through retry = %d, want %d", got, want)
	}
	if got := store.UploadBufferBytes(retry.New(mustLocal(t), retry.Options{})); got != 0 {
		t.Fatalf("local store: %d, want 0", got)
	}
}

func mustLocal(t *testing.T) store.Store {
	t.Helper()
	st, err := local.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return st
}

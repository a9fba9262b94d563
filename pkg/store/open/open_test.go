package open_test

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cfbackup/cfbackup/internal/testutil/s3server"
	"github.com/cfbackup/cfbackup/pkg/store"
	"github.com/cfbackup/cfbackup/pkg/store/local"
	"github.com/cfbackup/cfbackup/pkg/store/open"
	"github.com/cfbackup/cfbackup/pkg/store/retry"
	"github.com/cfbackup/cfbackup/pkg/store/s3"
)

func roundTrip(t *testing.T, s store.Store) {
	t.Helper()
	ctx := context.Background()
	if err := s.Put(ctx, "config.json", strings.NewReader("{}"), store.PutOptions{IfNotExists: true}); err != nil {
		t.Fatal(err)
	}
	if info, err := s.Stat(ctx, "config.json"); err != nil || info.Size != 2 {
		t.Fatalf("Stat = %+v, %v", info, err)
	}
}

func inner(t *testing.T, s store.Store) store.Store {
	t.Helper()
	r, ok := s.(*retry.Store)
	if !ok {
		t.Fatalf("Open returned %T, want a retry-wrapped store", s)
	}
	return r.Unwrap()
}

func TestLocal(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	for _, loc := range []string{filepath.Join(dir, "a"), "file://" + filepath.Join(dir, "b")} {
		s, err := open.Open(ctx, loc, open.Options{})
		if err != nil {
			t.Fatalf("Open(%q): %v", loc, err)
		}
		if _, ok := inner(t, s).(*local.Store); !ok {
			t.Fatalf("Open(%q) is not a local store", loc)
		}
		if want := strings.TrimPrefix(loc, "file://"); s.Location() != want {
			t.Fatalf("Location = %q, want %q", s.Location(), want)
		}
		roundTrip(t, s)
	}
}

func TestS3(t *testing.T) {
	srv := s3server.Start(t)
	srv.CreateBucket(t, "backups", false)
	s, err := open.Open(context.Background(), "s3://backups/prod/cfbackup", open.Options{
		S3Endpoint: srv.Endpoint, S3Region: srv.Region, AccessKeyID: srv.AccessKey, SecretAccessKey: srv.SecretKey,
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := inner(t, s).(*s3.Store); !ok {
		t.Fatal("not an S3 store")
	}
	if s.Location() != "s3://backups/prod/cfbackup" || strings.Contains(s.Location(), srv.SecretKey) {
		t.Fatalf("Location = %q", s.Location())
	}
	roundTrip(t, s)
}

func TestErrors(t *testing.T) {
	for loc, hint := range map[string]string{
		"":                "s3://BUCKET",
		"s3://":           "no bucket name",
		"s3:///prefix":    "no bucket name",
		"gs://bucket/x":   `unsupported scheme "gs"`,
		"r2://bucket":     "CFBACKUP_S3_ENDPOINT",
		"file://":         "no path",
		"https://example": "unsupported scheme",
	} {
		_, err := open.Open(context.Background(), loc, open.Options{AccessKeyID: "a", SecretAccessKey: "b"})
		if !errors.Is(err, open.ErrLocation) || !strings.Contains(err.Error(), hint) {
			t.Errorf("Open(%q) = %v, want ErrLocation mentioning %q", loc, err, hint)
		}
	}
}

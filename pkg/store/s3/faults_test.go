package s3_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/cfbackup/cfbackup/internal/testutil/faultproxy"
	"github.com/cfbackup/cfbackup/internal/testutil/s3server"
	"github.com/cfbackup/cfbackup/pkg/store"
	"github.com/cfbackup/cfbackup/pkg/store/retry"
	"github.com/cfbackup/cfbackup/pkg/store/s3"
)

// proxied is a store that reaches srv through a fault-injecting proxy.
func proxied(t *testing.T, srv *s3server.Server, bucket string) (*s3.Store, *faultproxy.Proxy) {
	t.Helper()
	p := faultproxy.Start(t, faultproxy.Options{Target: srv.Endpoint})
	s, err := s3.New(context.Background(), s3.Config{
		Bucket: bucket, Prefix: "repo", Endpoint: p.URL, Region: srv.Region,
		AccessKeyID: srv.AccessKey, SecretAccessKey: srv.SecretKey, PartSize: s3.MinPartSize, Concurrency: 2,
	})
	if err != nil {
		t.Fatal(err)
	}
	return s, p
}

func isMethod(m string) func(*http.Request) bool {
	return func(r *http.Request) bool { return r.Method == m }
}

func isPutObject(r *http.Request) bool {
	return r.Method == http.MethodPut && !strings.Contains(r.URL.RawQuery, "partNumber")
}

func isComplete(r *http.Request) bool {
	return r.Method == http.MethodPost && strings.Contains(r.URL.RawQuery, "uploadId")
}

func randBytes(t *testing.T, n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// TestReadCutMidBodyResumes: a GET answer cut mid-body is resumed with a ranged GET pinned to the
// ETag (through the retry decorator, the stack every command uses); the reader gets the exact object.
func TestReadCutMidBodyResumes(t *testing.T) {
	ctx := context.Background()
	srv := s3server.Start(t)
	srv.CreateBucket(t, "cut", false)
	raw, p := proxied(t, srv, "cut")
	s := retry.New(raw, retry.Options{})
	data := randBytes(t, 300<<10)
	if err := s.Put(ctx, "segments/a.age", bytes.NewReader(data), store.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name           string
		offset, length int64
	}{{"whole", 0, -1}, {"range", 5000, 200 << 10}} {
		t.Run(c.name, func(t *testing.T) {
			p.Next(faultproxy.Cut, isMethod(http.MethodGet))
			p.Next(faultproxy.Cut, isMethod(http.MethodGet))
			rc, err := s.Open(ctx, "segments/a.age", c.offset, c.length)
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(rc)
			rc.Close()
			if err != nil {
				t.Fatalf("read: %v", err)
			}
			want := data[c.offset:]
			if c.length >= 0 {
				want = want[:c.length]
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("read %d bytes, want %d", len(got), len(want))
			}
			if p.Pending() != 0 {
				t.Fatalf("scripted cuts not used: %v", p.Log())
			}
		})
	}
}

// TestOpenPinned: a read pinned to a version fails with ErrChanged once the object is another one.
func TestOpenPinned(t *testing.T) {
	ctx := context.Background()
	srv := s3server.Start(t)
	srv.CreateBucket(t, "pin", false)
	s := newStore(t, srv, "pin", "p")
	if err := s.Put(ctx, "k", strings.NewReader("first version"), store.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	rc, v, err := s.OpenPinned(ctx, "k", 0, -1, "")
	if err != nil || v == "" {
		t.Fatalf("OpenPinned: %q %v", v, err)
	}
	rc.Close()
	rc, _, err = s.OpenPinned(ctx, "k", 6, -1, v)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(rc)
	rc.Close()
	if string(b) != "version" {
		t.Fatalf("pinned range read %q", b)
	}
	if err := s.Put(ctx, "k", strings.NewReader("other content"), store.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.OpenPinned(ctx, "k", 6, -1, v); !errors.Is(err, store.ErrChanged) {
		t.Fatalf("pinned read of a replaced object: %v, want ErrChanged", err)
	}
}

// TestConditionalCreateLostAnswer: the server stores a conditional create but its answer is lost; the
// SDK's retry then meets 412. Identical content there is our own write: success, not ErrExists.
// Different content is still ErrExists.
func TestConditionalCreateLostAnswer(t *testing.T) {
	ctx := context.Background()
	srv := s3server.Start(t)
	srv.CreateBucket(t, "lost", false)
	s, p := proxied(t, srv, "lost")
	t.Run("single", func(t *testing.T) {
		data := randBytes(t, 10<<10)
		p.Next(faultproxy.Lost, isPutObject)
		if err := s.Put(ctx, "audit/000001.seq", bytes.NewReader(data), store.PutOptions{IfNotExists: true}); err != nil {
			t.Fatalf("conditional create whose answer was lost: %v", err)
		}
		if p.Pending() != 0 {
			t.Fatal("the answer was not lost")
		}
		if err := s.Put(ctx, "audit/000001.seq", bytes.NewReader(randBytes(t, 10<<10)), store.PutOptions{IfNotExists: true}); !errors.Is(err, store.ErrExists) {
			t.Fatalf("conditional create over other content: %v, want ErrExists", err)
		}
		if err := s.Put(ctx, "audit/000001.seq", bytes.NewReader(data), store.PutOptions{IfNotExists: true}); !errors.Is(err, store.ErrExists) {
			t.Fatalf("a second create of the same content in a new call: %v, want ErrExists (only a retry of our own write is success)", err)
		}
	})
	t.Run("multipart", func(t *testing.T) {
		data := randBytes(t, 2*s3.MinPartSize+1000)
		p.Next(faultproxy.Lost, isComplete)
		if err := s.Put(ctx, "segments/big.age", bytes.NewReader(data), store.PutOptions{IfNotExists: true}); err != nil {
			t.Fatalf("conditional multipart create whose answer was lost: %v", err)
		}
		if p.Pending() != 0 {
			t.Fatal("the answer was not lost")
		}
		sameStored(t, s, "segments/big.age", data)
	})
}

// TestStreamedPutOutlastsFourFailures: a stream's upload cannot be replayed by the retry decorator
// (it has consumed the reader), so the SDK's own retries are all it gets. Four failures in a row
// must not fail it: CI once lost a backup to three 5xx answers in a row at a 10 % fault rate.
func TestStreamedPutOutlastsFourFailures(t *testing.T) {
	ctx := context.Background()
	srv := s3server.Start(t)
	srv.CreateBucket(t, "stream", false)
	s, p := proxied(t, srv, "stream")
	data := randBytes(t, 10<<10)
	for _, k := range []faultproxy.Kind{faultproxy.Status503, faultproxy.Status500, faultproxy.Drop, faultproxy.Status503} {
		p.Next(k, isPutObject)
	}
	if err := s.Put(ctx, "segments/s.age", io.MultiReader(bytes.NewReader(data)), store.PutOptions{}); err != nil {
		t.Fatalf("streamed put after four failed attempts: %v", err)
	}
	if p.Pending() != 0 {
		t.Fatalf("%d scripted failures did not happen", p.Pending())
	}
	sameStored(t, s, "segments/s.age", data)
}

// sameStored fails t unless key holds exactly want.
func sameStored(t *testing.T, s store.Store, key string, want []byte) {
	t.Helper()
	rc, err := s.Open(context.Background(), key, 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(rc)
	rc.Close()
	if !bytes.Equal(got, want) {
		t.Fatalf("%s: stored object differs", key)
	}
}

package s3api_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/cfbackup/cfbackup/internal/testutil/readers"
	"github.com/cfbackup/cfbackup/internal/testutil/s3server"
	"github.com/cfbackup/cfbackup/pkg/s3api"
)

// newClient reaches srv with MinPartSize parts, conc parts in flight and, when ct is set, through it.
func newClient(t testing.TB, srv *s3server.Server, conc int, ct *s3server.ChecksumTransport) *s3api.Client {
	t.Helper()
	cfg := s3api.Config{Endpoint: srv.Endpoint, Region: srv.Region, AccessKeyID: srv.AccessKey, SecretAccessKey: srv.SecretKey,
		PartSize: s3api.MinPartSize, Concurrency: conc}
	if ct != nil {
		cfg.HTTPClient = &http.Client{Transport: ct}
	}
	c, err := s3api.New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func randBytes(t testing.TB, n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// stored fails unless bucket/key holds want.
func stored(t *testing.T, srv *s3server.Server, bucket, key string, want []byte) *awss3.GetObjectOutput {
	t.Helper()
	out, err := srv.Client().GetObject(context.Background(), &awss3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
	if err != nil {
		t.Fatalf("%s: %v", key, err)
	}
	got, _ := io.ReadAll(out.Body)
	out.Body.Close()
	if !bytes.Equal(got, want) {
		t.Fatalf("%s: %d bytes stored, want %d", key, len(got), len(want))
	}
	return out
}

// absent fails if key exists or any multipart upload is left in bucket.
func absent(t *testing.T, srv *s3server.Server, bucket, key string) {
	t.Helper()
	ctx := context.Background()
	if _, err := srv.Client().HeadObject(ctx, &awss3.HeadObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)}); s3api.HTTPStatus(err) != http.StatusNotFound {
		t.Fatalf("%s after a failed upload: %v, want 404", key, err)
	}
	out, err := srv.Client().ListMultipartUploads(ctx, &awss3.ListMultipartUploadsInput{Bucket: aws.String(bucket)})
	if err != nil || len(out.Uploads) != 0 {
		t.Fatalf("multipart uploads left: %v %v", out, err)
	}
}

func TestConfig(t *testing.T) {
	ctx := context.Background()
	for _, c := range []struct {
		name string
		cfg  s3api.Config
		ok   bool
	}{
		{"half credentials", s3api.Config{AccessKeyID: "a"}, false},
		{"tiny parts", s3api.Config{AccessKeyID: "a", SecretAccessKey: "b", PartSize: 1 << 20}, false},
		{"huge parts", s3api.Config{AccessKeyID: "a", SecretAccessKey: "b", PartSize: 6 << 30}, false},
		{"bad endpoint", s3api.Config{AccessKeyID: "a", SecretAccessKey: "b", Endpoint: "r2.example"}, false},
		{"r2", s3api.Config{AccessKeyID: "a", SecretAccessKey: "b", Endpoint: "https://acct.r2.cloudflarestorage.com"}, true},
	} {
		cl, err := s3api.New(ctx, c.cfg)
		if (err == nil) != c.ok {
			t.Errorf("%s: New err = %v", c.name, err)
		}
		if err != nil && !errors.Is(err, s3api.ErrConfig) {
			t.Errorf("%s: error %v does not match ErrConfig", c.name, err)
		}
		if c.name == "r2" && cl.UploadBufferBytes() != s3api.DefaultPartSize*(s3api.R2Concurrency+1) {
			t.Errorf("r2: UploadBufferBytes = %d, want %d parts of the default size (R2 concurrency)", cl.UploadBufferBytes(), s3api.R2Concurrency+1)
		}
	}
	if !s3api.IsR2("https://0123.eu.r2.cloudflarestorage.com") || s3api.IsR2("https://s3.amazonaws.com") {
		t.Error("IsR2 misclassifies endpoints")
	}
}

// A failed multipart upload is aborted: no upload is left to accrue storage charges, and the
// reader's error comes back as it is.
func TestFailedMultipartIsAborted(t *testing.T) {
	srv := s3server.Start(t)
	srv.CreateBucket(t, "bkt", false)
	c := newClient(t, srv, 3, nil)
	boom := errors.New("boom")
	r := io.MultiReader(io.LimitReader(rand.Reader, 3*s3api.MinPartSize+7), readers.Err{E: boom})
	if err := c.Put(context.Background(), "bkt", "seg", r, s3api.PutOptions{}); !errors.Is(err, boom) {
		t.Fatalf("Put = %v", err)
	}
	absent(t, srv, "bkt", "seg")
}

// A conditional multipart create racing a plain Put that lands first is refused at Complete (412),
// and one whose key is taken before it starts is ErrExists without uploading anything.
func TestConditionalMultipartRefused(t *testing.T) {
	srv := s3server.Start(t)
	srv.CreateBucket(t, "bkt", false)
	c := newClient(t, srv, 3, nil)
	ctx := context.Background()
	// The plain Put lands while the last part is read: after the pre-check, before Complete.
	r := &readers.Hook{R: io.LimitReader(rand.Reader, 2*s3api.MinPartSize+1), At: 2*s3api.MinPartSize + 1, Fn: func() {
		if _, err := srv.Client().PutObject(ctx, &awss3.PutObjectInput{Bucket: aws.String("bkt"), Key: aws.String("m"), Body: strings.NewReader("first")}); err != nil {
			t.Error(err)
		}
	}}
	if err := c.Put(ctx, "bkt", "m", r, s3api.PutOptions{IfNotExists: true}); !s3api.IsPreconditionFailed(err) {
		t.Fatalf("Put = %v, want 412", err)
	}
	stored(t, srv, "bkt", "m", []byte("first"))
	err := c.Put(ctx, "bkt", "m", bytes.NewReader(randBytes(t, 2*s3api.MinPartSize+1)), s3api.PutOptions{IfNotExists: true})
	if !errors.Is(err, s3api.ErrExists) {
		t.Fatalf("Put over an existing key = %v, want ErrExists", err)
	}
	if err := c.Put(ctx, "bkt", "m", strings.NewReader("second"), s3api.PutOptions{IfNotExists: true}); !s3api.IsPreconditionFailed(err) {
		t.Fatalf("single-PUT create over an existing key = %v, want 412", err)
	}
	stored(t, srv, "bkt", "m", []byte("first"))
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) { clear(p); return len(p), nil }

// Put memory stays near PartSize × (Concurrency+1) whatever the object size.
func TestPutMemoryBounded(t *testing.T) {
	srv := s3server.Start(t)
	srv.CreateBucket(t, "mem", false)
	c := newClient(t, srv, 2, nil)
	const size = 100 << 20
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	if err := c.Put(context.Background(), "mem", "big", io.LimitReader(zeros{}, size), s3api.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	runtime.ReadMemStats(&after)
	allocated := after.TotalAlloc - before.TotalAlloc
	const limit = 3*s3api.MinPartSize + 12<<20 // three part buffers plus fixed SDK and HTTP overhead (~7 MiB measured)
	if allocated > limit {
		t.Fatalf("Put of %d MiB allocated %d MiB, want ≤ %d MiB", size>>20, allocated>>20, limit>>20)
	}
	t.Logf("Put of %d MiB allocated %.1f MiB", size>>20, float64(allocated)/(1<<20))
}

// Every upload carries a CRC32C the server verifies: a body or part damaged on its way is refused and
// leaves no object (nor a multipart upload); a server refusing CRC32C — with 501, or a 400 naming the
// header — gets Content-MD5 from then on, for single PUTs and parts alike.
func TestUploadChecksums(t *testing.T) {
	srv := s3server.Start(t)
	ctx := context.Background()
	small := bytes.Repeat([]byte("segment "), 1000)
	big := randBytes(t, 3*s3api.MinPartSize+7)
	for _, status := range []int{http.StatusNotImplemented, http.StatusBadRequest} {
		bkt := fmt.Sprintf("bkt-%d", status)
		srv.CreateBucket(t, bkt, false)
		ct := &s3server.ChecksumTransport{}
		c := newClient(t, srv, 2, ct)
		if err := c.Put(ctx, bkt, "small", bytes.NewReader(small), s3api.PutOptions{}); err != nil {
			t.Fatal(err)
		}
		if err := c.Put(ctx, bkt, "big", bytes.NewReader(big), s3api.PutOptions{IfNotExists: true}); err != nil {
			t.Fatal(err)
		}
		stored(t, srv, bkt, "small", small)
		stored(t, srv, bkt, "big", big)
		if got, want := ct.Seen(), "crc32c crc32c crc32c crc32c crc32c"; got != want {
			t.Fatalf("checksums sent %q, want %q", got, want)
		}
		ct.CorruptNext()
		if err := c.Put(ctx, bkt, "small-bad", bytes.NewReader(small), s3api.PutOptions{}); err == nil {
			t.Fatal("a damaged body was stored")
		}
		absent(t, srv, bkt, "small-bad")
		ct.CorruptNext()
		if err := c.Put(ctx, bkt, "big-bad", bytes.NewReader(big), s3api.PutOptions{}); err == nil {
			t.Fatal("a damaged part was stored")
		}
		absent(t, srv, bkt, "big-bad")
		ct.RefuseCRC32C(status, true)
		if err := c.Put(ctx, bkt, "small-md5", bytes.NewReader(small), s3api.PutOptions{IfNotExists: true}); err != nil {
			t.Fatalf("%d: %v", status, err)
		}
		if err := c.Put(ctx, bkt, "big-md5", bytes.NewReader(big), s3api.PutOptions{}); err != nil {
			t.Fatalf("%d: %v", status, err)
		}
		stored(t, srv, bkt, "small-md5", small)
		stored(t, srv, bkt, "big-md5", big)
		if seen := ct.Seen(); !strings.HasSuffix(seen, "md5 md5 md5 md5 md5") || ct.Refused() != 1 {
			t.Fatalf("%d: after the server refused CRC32C: sent %q, %d refused", status, seen, ct.Refused())
		}
		ct.CorruptNext()
		if err := c.Put(ctx, bkt, "small-md5-bad", bytes.NewReader(small), s3api.PutOptions{}); err == nil {
			t.Fatal("a damaged body with Content-MD5 was stored")
		}
		absent(t, srv, bkt, "small-md5-bad")
	}
}

// A server may take CRC32C when a multipart upload is created and refuse it on the parts: the first
// multipart upload of a client sends part 1 alone, and on that refusal starts the upload over with
// Content-MD5 instead of failing.
func TestUploadPartChecksumRefused(t *testing.T) {
	srv := s3server.Start(t)
	srv.CreateBucket(t, "bkt", false)
	ctx := context.Background()
	for _, status := range []int{http.StatusNotImplemented, http.StatusBadRequest} {
		ct := &s3server.ChecksumTransport{}
		ct.RefuseCRC32C(status, false)
		c := newClient(t, srv, 2, ct)
		big := randBytes(t, 3*s3api.MinPartSize+11)
		key := fmt.Sprintf("big-%d", status)
		if err := c.Put(ctx, "bkt", key, bytes.NewReader(big), s3api.PutOptions{IfNotExists: true}); err != nil {
			t.Fatalf("%d on parts: %v", status, err)
		}
		stored(t, srv, "bkt", key, big)
		if seen := ct.Seen(); seen != "md5 md5 md5 md5" || ct.Refused() != 1 {
			t.Fatalf("%d on parts: sent %q, %d refused", status, seen, ct.Refused())
		}
		absent(t, srv, "bkt", "none")
	}
}

// The headers and user metadata given are the object's, for one PUT and for a multipart upload (a
// restore gives an object back the ones it was backed up with).
func TestUploadHeaders(t *testing.T) {
	srv := s3server.Start(t)
	srv.CreateBucket(t, "bkt", false)
	c := newClient(t, srv, 2, nil)
	ctx := context.Background()
	exp := time.Date(2027, 1, 2, 3, 4, 5, 0, time.UTC)
	h := s3api.Headers{ContentType: "text/plain", CacheControl: "max-age=60", ContentDisposition: "inline",
		ContentLanguage: "fr", Expires: &exp, Metadata: map[string]string{"owner": "ops"}}
	for _, n := range []int{100, 2*s3api.MinPartSize + 5} {
		key := fmt.Sprintf("obj-%d", n)
		body := randBytes(t, n)
		if err := c.Put(ctx, "bkt", key, bytes.NewReader(body), s3api.PutOptions{Headers: h}); err != nil {
			t.Fatal(err)
		}
		out := stored(t, srv, "bkt", key, body)
		if aws.ToString(out.ContentType) != h.ContentType || aws.ToString(out.CacheControl) != h.CacheControl ||
			aws.ToString(out.ContentDisposition) != h.ContentDisposition || aws.ToString(out.ContentLanguage) != h.ContentLanguage ||
			out.Metadata["owner"] != "ops" {
			t.Fatalf("%s: headers %q %q %q %q %v", key, aws.ToString(out.ContentType), aws.ToString(out.CacheControl),
				aws.ToString(out.ContentDisposition), aws.ToString(out.ContentLanguage), out.Metadata)
		}
	}
}

// With PutOptions.Size the body must be exactly that long — one PUT, exactly one part, or multipart —
// and a longer or shorter one leaves nothing behind.
func TestSizedUpload(t *testing.T) {
	srv := s3server.Start(t)
	srv.CreateBucket(t, "bkt", false)
	ctx := context.Background()
	for _, conc := range []int{1, 3} {
		c := newClient(t, srv, conc, nil)
		for _, n := range []int{1000, s3api.MinPartSize, 2*s3api.MinPartSize + 3} {
			body := randBytes(t, n)
			key := fmt.Sprintf("c%d-%d", conc, n)
			if err := c.Put(ctx, "bkt", key, bytes.NewReader(body), s3api.PutOptions{Size: int64(n)}); err != nil {
				t.Fatalf("%s: %v", key, err)
			}
			stored(t, srv, "bkt", key, body)
			if err := c.Put(ctx, "bkt", key+"-longer", bytes.NewReader(body), s3api.PutOptions{Size: int64(n - 1)}); !errors.Is(err, s3api.ErrLength) {
				t.Fatalf("%s: body longer than Size: %v, want ErrLength", key, err)
			}
			absent(t, srv, "bkt", key+"-longer")
			if err := c.Put(ctx, "bkt", key+"-shorter", bytes.NewReader(body), s3api.PutOptions{Size: int64(n + 1)}); !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Fatalf("%s: body shorter than Size: %v, want io.ErrUnexpectedEOF", key, err)
			}
			absent(t, srv, "bkt", key+"-shorter")
		}
	}
}

// With Concurrency 1 and a known size, an upload holds one part buffer: parts go one after another.
func TestSequentialUploadMemory(t *testing.T) {
	srv := s3server.Start(t)
	srv.CreateBucket(t, "mem", false)
	c := newClient(t, srv, 1, nil)
	const size = 60 << 20
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	if err := c.Put(context.Background(), "mem", "big", io.LimitReader(zeros{}, size), s3api.PutOptions{Size: size}); err != nil {
		t.Fatal(err)
	}
	runtime.ReadMemStats(&after)
	allocated := after.TotalAlloc - before.TotalAlloc
	const limit = s3api.MinPartSize + 10<<20 // one part buffer plus fixed SDK and HTTP overhead
	if allocated > limit {
		t.Fatalf("Put of %d MiB allocated %d MiB, want ≤ %d MiB", size>>20, allocated>>20, limit>>20)
	}
	t.Logf("Put of %d MiB allocated %.1f MiB", size>>20, float64(allocated)/(1<<20))
}

package r2_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/cfbackup/cfbackup/internal/testutil/s3server"
	"github.com/cfbackup/cfbackup/pkg/manifest"
	"github.com/cfbackup/cfbackup/pkg/source/r2"
)

// The upload path itself (checksums, their fallback, aborting, conditional creates) is pkg/s3api's and
// tested there; these tests cover what the restore client adds: the recorded size and metadata.

func checksumClient(t *testing.T, e *env, partSize int64) (*r2.Client, *s3server.ChecksumTransport) {
	t.Helper()
	ct := &s3server.ChecksumTransport{}
	cl, err := r2.New(r2.Config{Endpoint: e.srv.Endpoint, Region: e.srv.Region, AccessKeyID: e.srv.AccessKey, SecretAccessKey: e.srv.SecretKey,
		PartSize: partSize, HTTPClient: &http.Client{Transport: ct}})
	if err != nil {
		t.Fatal(err)
	}
	return cl, ct
}

func (e *env) stored(t *testing.T, key string, body []byte) {
	t.Helper()
	out, err := e.admin.GetObject(context.Background(), &s3.GetObjectInput{Bucket: aws.String("dst"), Key: aws.String(key)})
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(out.Body)
	out.Body.Close()
	if !bytes.Equal(got, body) || aws.ToString(out.ContentType) != "text/plain" || out.Metadata["k"] != "v" {
		t.Fatalf("%s: stored %d bytes (%s, %v), want %d", key, len(got), aws.ToString(out.ContentType), out.Metadata, len(body))
	}
}

// errAtEOF is a body whose check fails at its end, as a restore's item reader does on a SHA-256
// mismatch.
type errAtEOF struct {
	r   io.Reader
	err error
}

func (e errAtEOF) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if err == io.EOF {
		return n, e.err
	}
	return n, err
}

// Put restores an object of its recorded size with its metadata, one PUT or multipart, with a CRC32C
// on every body; a body longer or shorter than recorded, or whose check fails at its end, leaves
// nothing (no object, no multipart upload).
func TestPutRecordedSize(t *testing.T) {
	e := newEnv(t, "dst")
	ctx := context.Background()
	m := manifest.ObjectMeta{ContentType: "text/plain", Metadata: map[string]string{"k": "v"}}
	bad := errors.New("sha-256 mismatch")
	for _, c := range []struct {
		name string
		n    int
		want string
	}{
		{"one-put", 100_000, "crc32c"},
		{"single-put", 12_000_000, "crc32c"},                            // 3 parts' worth, within 4 streams: one PUT
		{"multipart", 22_000_000, "crc32c crc32c crc32c crc32c crc32c"}, // 5 parts of 5 MiB
	} {
		cl, ct := checksumClient(t, e, 5<<20)
		body := bytes.Repeat([]byte("restored object body\n"), c.n/21)
		if err := cl.Put(ctx, "dst", c.name, bytes.NewReader(body), int64(len(body)), m); err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		e.stored(t, c.name, body)
		if got := ct.Seen(); got != c.want {
			t.Fatalf("%s: checksums sent %q, want %q", c.name, got, c.want)
		}
		for _, f := range []struct {
			name string
			r    io.Reader
			size int64
		}{
			{"longer", bytes.NewReader(body), int64(len(body)) - 1},
			{"shorter", bytes.NewReader(body), int64(len(body)) + 1},
			{"check", errAtEOF{bytes.NewReader(body), bad}, int64(len(body))},
		} {
			key := c.name + "-" + f.name
			if err := cl.Put(ctx, "dst", key, f.r, f.size, m); err == nil {
				t.Fatalf("%s: a body that is not what was recorded was restored", key)
			}
			if _, _, found, err := cl.Head(ctx, "dst", key); err != nil || found {
				t.Fatalf("%s: found=%v err=%v, want no object", key, found, err)
			}
		}
		out, err := e.admin.ListMultipartUploads(ctx, &s3.ListMultipartUploadsInput{Bucket: aws.String("dst")})
		if err != nil || len(out.Uploads) != 0 {
			t.Fatalf("%s: multipart uploads left: %v %v", c.name, out, err)
		}
	}
}

// A server refusing CRC32C gets Content-MD5 from the restore client too (the one upload path).
func TestPutChecksumRefused(t *testing.T) {
	e := newEnv(t, "dst")
	ctx := context.Background()
	body := bytes.Repeat([]byte("restored object body\n"), 5000)
	cl, ct := checksumClient(t, e, 0)
	ct.RefuseCRC32C(http.StatusNotImplemented, true)
	m := manifest.ObjectMeta{ContentType: "text/plain", Metadata: map[string]string{"k": "v"}}
	for _, k := range []string{"fallback-1", "fallback-2"} {
		if err := cl.PutBytes(ctx, "dst", k, body, m); err != nil {
			t.Fatal(err)
		}
		e.stored(t, k, body)
	}
	if got, want := ct.Seen(), "md5 md5"; got != want || ct.Refused() != 1 {
		t.Fatalf("checksums sent: %q with %d refused, want %q with 1 refused (the refusal is remembered)", got, ct.Refused(), want)
	}
}

package r2_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/cfbackup/cfbackup/internal/testutil/s3server"
	"github.com/cfbackup/cfbackup/pkg/manifest"
	"github.com/cfbackup/cfbackup/pkg/source/r2"
)

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
	if !bytes.Equal(got, body) || aws.ToString(out.ContentType) != "text/plain" {
		t.Fatalf("%s: stored %d bytes (%s), want %d", key, len(got), aws.ToString(out.ContentType), len(body))
	}
}

// Put sends a CRC32C of the body: the server stores a body that matches, refuses one damaged on its way
// (leaving no object), and a server refusing CRC32C (501, or a 400 naming the header) gets SHA-256
// instead, then and afterwards.
func TestPutChecksum(t *testing.T) {
	e := newEnv(t, "dst")
	ctx := context.Background()
	body := bytes.Repeat([]byte("restored object body\n"), 5000)
	for _, refuse := range []int{http.StatusNotImplemented, http.StatusBadRequest} {
		cl, ct := checksumClient(t, e, 0)
		put := func(key string) error {
			return cl.Put(ctx, "dst", key, bytes.NewReader(body), int64(len(body)), manifest.ObjectMeta{ContentType: "text/plain"}, nil)
		}
		if err := put("good"); err != nil {
			t.Fatalf("put: %v", err)
		}
		e.stored(t, "good", body)
		ct.CorruptNext()
		if err := put("bad"); err == nil {
			t.Fatal("put of a body damaged on its way succeeded: the server did not check the checksum")
		}
		if _, _, found, err := cl.Head(ctx, "dst", "bad"); err != nil || found {
			t.Fatalf("after a refused put: found=%v err=%v, want no object", found, err)
		}
		ct.RefuseCRC32C(refuse, true)
		for _, k := range []string{"fallback-1", "fallback-2"} {
			if err := put(k); err != nil {
				t.Fatalf("put to a server without CRC32C (%d): %v", refuse, err)
			}
			e.stored(t, k, body)
		}
		ct.CorruptNext()
		if err := put("bad-sha"); err == nil {
			t.Fatal("put of a damaged body with SHA-256 succeeded: the server did not check the checksum")
		}
		if got, want := ct.Seen(), "crc32c crc32c sha256 sha256 sha256"; got != want || ct.Refused() != 1 {
			t.Fatalf("checksums sent: %q with %d refused, want %q with 1 refused (the refusal is remembered)", got, ct.Refused(), want)
		}
	}
}

// Multipart restores send CRC32C with every part (the upload declares it): the object is stored whole,
// a part damaged on its way is refused and the upload aborted (no object), and a server refusing
// CRC32C on the first part gets the upload started over with Content-MD5 parts.
func TestPutMultipartChecksum(t *testing.T) {
	e := newEnv(t, "dst")
	ctx := context.Background()
	body := bytes.Repeat([]byte("multipart restored body\n"), 500_000) // 12 MB: 3 parts of 5 MiB
	for _, c := range []struct {
		name            string
		refuse          bool
		corrupt         bool
		want            string
		wantErr, stored bool
	}{
		{name: "crc", want: "crc32c crc32c crc32c", stored: true},
		{name: "damaged", corrupt: true, want: "crc32c", wantErr: true},
		{name: "no-crc", refuse: true, want: "md5 md5 md5", stored: true},
	} {
		cl, ct := checksumClient(t, e, 5<<20)
		if c.corrupt {
			ct.CorruptNext()
		}
		if c.refuse {
			ct.RefuseCRC32C(http.StatusNotImplemented, false) // the create passes, the first part is refused
		}
		err := cl.Put(ctx, "dst", c.name, bytes.NewReader(body), int64(len(body)), manifest.ObjectMeta{ContentType: "text/plain"}, nil)
		if (err != nil) != c.wantErr {
			t.Fatalf("%s: %v", c.name, err)
		}
		if got := ct.Seen(); got != c.want {
			t.Fatalf("%s: checksums sent %q, want %q", c.name, got, c.want)
		}
		size, _, found, err := cl.Head(ctx, "dst", c.name)
		if err != nil || found != c.stored {
			t.Fatalf("%s: found=%v err=%v", c.name, found, err)
		}
		if c.stored && size != int64(len(body)) {
			t.Fatalf("%s: stored %d bytes, want %d", c.name, size, len(body))
		}
		if c.stored {
			e.stored(t, c.name, body)
		}
	}
}

package r2_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/cfbackup/cfbackup/pkg/manifest"
	"github.com/cfbackup/cfbackup/pkg/source/r2"
)

// checksumTransport records the checksum header of every PUT and can damage a body on its way or
// answer 501 (or 400) to CRC32C the way R2 did before it supported CRC headers.
type checksumTransport struct {
	mu       sync.Mutex
	seen     []string // "crc32c" or "sha256" per PUT that reached the server
	corrupt  bool     // flip one byte of the next PUT body
	no32c    bool     // answer 501 NotImplemented to a CRC32C PUT
	bad32c   bool     // answer 400 InvalidArgument naming the header instead
	refused  int      // PUTs answered 501 here
	delegate http.RoundTripper
}

func (ct *checksumTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Method != http.MethodPut {
		return ct.delegate.RoundTrip(req)
	}
	ct.mu.Lock()
	defer ct.mu.Unlock()
	crc, sha := req.Header.Get("X-Amz-Checksum-Crc32c"), req.Header.Get("X-Amz-Checksum-Sha256")
	if crc != "" && (ct.no32c || ct.bad32c) {
		ct.refused++
		code, status, msg := "NotImplemented", http.StatusNotImplemented, "Header 'x-amz-checksum-crc32c' with value '"+crc+"' not implemented"
		if ct.bad32c {
			code, status, msg = "InvalidArgument", http.StatusBadRequest, "Unsupported header x-amz-checksum-crc32c"
		}
		body := `<?xml version="1.0" encoding="UTF-8"?><Error><Code>` + code + `</Code><Message>` + msg + `</Message></Error>`
		return &http.Response{StatusCode: status, Status: http.StatusText(status), Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
			Header: http.Header{"Content-Type": {"application/xml"}}, Body: io.NopCloser(strings.NewReader(body)), ContentLength: int64(len(body)), Request: req}, nil
	}
	switch {
	case crc != "":
		ct.seen = append(ct.seen, "crc32c")
	case sha != "":
		ct.seen = append(ct.seen, "sha256")
	case req.Header.Get("Content-Md5") != "":
		ct.seen = append(ct.seen, "md5")
	default:
		ct.seen = append(ct.seen, "none")
	}
	if ct.corrupt && req.Body != nil {
		ct.corrupt = false
		b, err := io.ReadAll(req.Body)
		if err != nil {
			return nil, err
		}
		b[len(b)/2] ^= 1
		req = req.Clone(req.Context())
		req.Body = io.NopCloser(bytes.NewReader(b))
		req.GetBody = nil
	}
	return ct.delegate.RoundTrip(req)
}

// Put sends a CRC32C of the body: the server stores a body that matches, refuses one damaged on its way
// (leaving no object), and a server answering 501 to CRC32C gets SHA-256 instead, then and afterwards.
func TestPutChecksum(t *testing.T) {
	e := newEnv(t, "dst")
	ctx := context.Background()
	ct := &checksumTransport{delegate: http.DefaultTransport}
	cl, err := r2.New(r2.Config{Endpoint: e.srv.Endpoint, Region: e.srv.Region, AccessKeyID: e.srv.AccessKey, SecretAccessKey: e.srv.SecretKey,
		HTTPClient: &http.Client{Transport: ct}})
	if err != nil {
		t.Fatal(err)
	}
	body := bytes.Repeat([]byte("restored object body\n"), 5000)
	put := func(key string) error {
		return cl.Put(ctx, "dst", key, bytes.NewReader(body), int64(len(body)), manifest.ObjectMeta{ContentType: "text/plain"}, nil)
	}
	stored := func(key string) {
		t.Helper()
		out, err := e.admin.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("dst"), Key: aws.String(key)})
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(out.Body)
		out.Body.Close()
		if !bytes.Equal(got, body) || aws.ToString(out.ContentType) != "text/plain" {
			t.Fatalf("%s: stored %d bytes (%s), want %d", key, len(got), aws.ToString(out.ContentType), len(body))
		}
	}
	if err := put("good"); err != nil {
		t.Fatalf("put: %v", err)
	}
	stored("good")
	ct.corrupt = true
	if err := put("bad"); err != nil {
		t.Logf("refused as it should be: %v", err)
	} else {
		t.Fatal("put of a body damaged on its way succeeded: the server did not check the checksum")
	}
	if _, _, found, err := cl.Head(ctx, "dst", "bad"); err != nil || found {
		t.Fatalf("after a refused put: found=%v err=%v, want no object", found, err)
	}
	ct.no32c = true
	for _, k := range []string{"fallback-1", "fallback-2"} {
		if err := put(k); err != nil {
			t.Fatalf("put to a server without CRC32C: %v", err)
		}
		stored(k)
	}
	ct.corrupt = true
	if err := put("bad-sha"); err == nil {
		t.Fatal("put of a damaged body with SHA-256 succeeded: the server did not check the checksum")
	}
	want := []string{"crc32c", "crc32c", "sha256", "sha256", "sha256"}
	if strings.Join(ct.seen, " ") != strings.Join(want, " ") || ct.refused != 1 {
		t.Fatalf("checksums sent: %v with %d refused, want %v with 1 refused (the 501 is remembered)", ct.seen, ct.refused, want)
	}
	// A 400 that names the header is a refusal of CRC32C too; a BadDigest (above) is not.
	ct2 := &checksumTransport{delegate: http.DefaultTransport, bad32c: true}
	cl2, err := r2.New(r2.Config{Endpoint: e.srv.Endpoint, Region: e.srv.Region, AccessKeyID: e.srv.AccessKey, SecretAccessKey: e.srv.SecretKey,
		HTTPClient: &http.Client{Transport: ct2}})
	if err != nil {
		t.Fatal(err)
	}
	if err := cl2.Put(ctx, "dst", "fallback-400", bytes.NewReader(body), int64(len(body)), manifest.ObjectMeta{ContentType: "text/plain"}, nil); err != nil {
		t.Fatalf("put to a server that refuses CRC32C with 400: %v", err)
	}
	stored("fallback-400")
	if strings.Join(ct2.seen, " ") != "sha256" || ct2.refused != 1 {
		t.Fatalf("checksums sent: %v with %d refused", ct2.seen, ct2.refused)
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
		no32c, corrupt  bool
		want            string
		wantErr, stored bool
	}{
		{name: "crc", want: "crc32c crc32c crc32c", stored: true},
		{name: "damaged", corrupt: true, want: "crc32c", wantErr: true},
		{name: "no-crc", no32c: true, want: "md5 md5 md5", stored: true},
	} {
		ct := &checksumTransport{delegate: http.DefaultTransport, no32c: c.no32c, corrupt: c.corrupt}
		cl, err := r2.New(r2.Config{Endpoint: e.srv.Endpoint, Region: e.srv.Region, AccessKeyID: e.srv.AccessKey, SecretAccessKey: e.srv.SecretKey,
			PartSize: 5 << 20, HTTPClient: &http.Client{Transport: ct}})
		if err != nil {
			t.Fatal(err)
		}
		err = cl.Put(ctx, "dst", c.name, bytes.NewReader(body), int64(len(body)), manifest.ObjectMeta{ContentType: "text/plain"}, nil)
		if (err != nil) != c.wantErr {
			t.Fatalf("%s: %v", c.name, err)
		}
		if got := strings.Join(ct.seen, " "); got != c.want {
			t.Fatalf("%s: checksums sent %q, want %q", c.name, got, c.want)
		}
		size, _, found, err := cl.Head(ctx, "dst", c.name)
		if err != nil || found != c.stored {
			t.Fatalf("%s: found=%v err=%v", c.name, found, err)
		}
		if c.stored {
			if size != int64(len(body)) || !bytes.Equal(e.get(t, "dst", c.name), body) {
				t.Fatalf("%s: stored %d bytes, want %d", c.name, size, len(body))
			}
		}
	}
}

package r2_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"io"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/cfbackup/cfbackup/pkg/manifest"
)

// Put sends the body's SHA-256 as x-amz-checksum-sha256 instead of hashing it again: the server must
// store a body that matches and refuse one that does not (leaving no object), so a body damaged on its
// way is never restored. Without a sum Put falls back to Content-MD5.
func TestPutChecksum(t *testing.T) {
	e := newEnv(t, "dst")
	ctx := context.Background()
	body := bytes.Repeat([]byte("restored object body\n"), 5000)
	sum := sha256.Sum256(body)
	put := func(key string, sum []byte) error {
		return e.cl.Put(ctx, "dst", key, bytes.NewReader(body), int64(len(body)), sum, manifest.ObjectMeta{ContentType: "text/plain"}, nil)
	}
	if err := put("good", sum[:]); err != nil {
		t.Fatalf("put with the right SHA-256: %v", err)
	}
	if err := put("md5", nil); err != nil {
		t.Fatalf("put with Content-MD5: %v", err)
	}
	for _, k := range []string{"good", "md5"} {
		out, err := e.admin.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("dst"), Key: aws.String(k)})
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(out.Body)
		out.Body.Close()
		if !bytes.Equal(got, body) || aws.ToString(out.ContentType) != "text/plain" {
			t.Fatalf("%s: stored %d bytes (%s), want %d", k, len(got), aws.ToString(out.ContentType), len(body))
		}
	}
	bad := sum
	bad[0] ^= 1
	if err := put("bad", bad[:]); err != nil {
		t.Logf("refused as it should be: %v", err)
	} else {
		t.Fatal("put with a wrong SHA-256 succeeded: the server did not check the checksum")
	}
	if _, _, found, err := e.cl.Head(ctx, "dst", "bad"); err != nil || found {
		t.Fatalf("after a refused put: found=%v err=%v, want no object", found, err)
	}
}

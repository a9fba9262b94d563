package r2_test

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/hex"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/cfbackup/cfbackup/pkg/manifest"
	"github.com/cfbackup/cfbackup/pkg/source/r2"
)

// An object over the part size but within PartSize × PartStreams is restored with one PUT from its
// part buffers (no UploadPart; its ETag is its MD5, as for an object PUT whole), beside one over it
// that goes in parts; one that fails its SHA-256 check leaves nothing behind.
func TestRestoreSinglePutUpToStreams(t *testing.T) {
	e := newEnv(t, "src", "dst")
	ctx := context.Background()
	mid := bigObject(50, 3*r2.DefaultPartSize-5) // 3 parts' worth: one PUT
	big := bigObject(51, 4*r2.DefaultPartSize+1) // over PartSize × 4 streams: in parts
	m, items := largeSnapshot(t, e, map[string]obj{"media/mid.bin": mid, "media/big.bin": big})
	open := r2.Opener(e.eng.Opener(m, e.ids))
	w := &partWatch{}
	cl := watchedClient(t, e, 0, 0, w)
	plan, err := r2.PlanRestore(ctx, cl, items, r2.Target{Bucket: "dst"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r2.Restore(ctx, cl, open, plan, 4); err != nil {
		t.Fatal(err)
	}
	for k, o := range map[string]obj{"media/mid.bin": mid, "media/big.bin": big} {
		if !bytes.Equal(e.get(t, "dst", k), o.data) {
			t.Fatalf("%s restored with other bytes", k)
		}
	}
	out, err := e.admin.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String("dst"), Key: aws.String("media/mid.bin")})
	if err != nil {
		t.Fatal(err)
	}
	sum := md5.Sum(mid.data)
	if got := strings.Trim(aws.ToString(out.ETag), `"`); got != hex.EncodeToString(sum[:]) {
		t.Fatalf("ETag %s of the 3-part object, want its MD5 (one PUT)", got)
	}
	if _, _, total := w.stats(); total != 5 {
		t.Fatalf("%d parts uploaded, want the 5 of the large object only", total)
	}
	noUploadsLeft(t, e, "dst")

	var one []manifest.Item
	for _, it := range items {
		if it.Size == int64(len(mid.data)) {
			it.SHA256 = strings.Repeat("0", 64)
			one = append(one, it)
		}
	}
	if len(one) != 1 {
		t.Fatalf("%d items of the 3-part object's size", len(one))
	}
	plan, err = r2.PlanRestore(ctx, cl, one, r2.Target{Bucket: "dst", Prefix: "bad/"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r2.Restore(ctx, cl, open, plan, 4); err == nil || !strings.Contains(err.Error(), "mid.bin") {
		t.Fatalf("restore of an item with the wrong SHA-256: %v, want an error naming it", err)
	}
	if _, _, found, err := cl.Head(ctx, "dst", "bad/media/mid.bin"); err != nil || found {
		t.Fatalf("found=%v err=%v: an object that failed its check was committed", found, err)
	}
	noUploadsLeft(t, e, "dst")
}

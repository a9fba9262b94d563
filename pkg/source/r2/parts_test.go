package r2_test

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/cfbackup/cfbackup/pkg/archive"
	"github.com/cfbackup/cfbackup/pkg/manifest"
	"github.com/cfbackup/cfbackup/pkg/source/r2"
)

// partWatch is the restore client's transport: it counts the UploadPart requests in flight (in all
// and per key), optionally holds each one for delay, and calls onPart as each starts.
type partWatch struct {
	delay  time.Duration
	onPart func(n int)

	mu              sync.Mutex
	now, max, total int
	perKey, maxKey  map[string]int
}

func (w *partWatch) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Method != http.MethodPut || !req.URL.Query().Has("partNumber") {
		return http.DefaultTransport.RoundTrip(req)
	}
	key := req.URL.Path
	w.mu.Lock()
	if w.perKey == nil {
		w.perKey, w.maxKey = map[string]int{}, map[string]int{}
	}
	w.now++
	w.total++
	w.perKey[key]++
	w.max = max(w.max, w.now)
	w.maxKey[key] = max(w.maxKey[key], w.perKey[key])
	n := w.total
	w.mu.Unlock()
	if w.onPart != nil {
		w.onPart(n)
	}
	if w.delay > 0 {
		time.Sleep(w.delay)
	}
	resp, err := http.DefaultTransport.RoundTrip(req)
	w.mu.Lock()
	w.now--
	w.perKey[key]--
	w.mu.Unlock()
	return resp, err
}

// stats are the most parts in flight at once, in all and for any one object, and the parts sent.
func (w *partWatch) stats() (all, oneObject, total int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, n := range w.maxKey {
		oneObject = max(oneObject, n)
	}
	return w.max, oneObject, w.total
}

func watchedClient(t *testing.T, e *env, partSize int64, streams int, w *partWatch) *r2.Client {
	t.Helper()
	cl, err := r2.New(r2.Config{Endpoint: e.srv.Endpoint, Region: e.srv.Region, AccessKeyID: e.srv.AccessKey, SecretAccessKey: e.srv.SecretKey,
		PartSize: partSize, PartStreams: streams, HTTPClient: &http.Client{Transport: w}})
	if err != nil {
		t.Fatal(err)
	}
	return cl
}

// multipartETag is S3's ETag of data uploaded in parts of partSize: the MD5 of the parts' MD5s, "-N".
func multipartETag(data []byte, partSize int) string {
	var sums []byte
	n := 0
	for off := 0; off < len(data); off += partSize {
		s := md5.Sum(data[off:min(off+partSize, len(data))])
		sums = append(sums, s[:]...)
		n++
	}
	s := md5.Sum(sums)
	return fmt.Sprintf("%q", hex.EncodeToString(s[:])+fmt.Sprintf("-%d", n))
}

// largeSnapshot backs up bucket src holding the given large objects and returns the restore's items.
func largeSnapshot(t *testing.T, e *env, objs map[string]obj) (*manifest.Manifest, []manifest.Item) {
	t.Helper()
	for k, o := range objs {
		e.put(t, "src", k, o)
	}
	m, _, err := e.backup(context.Background(), r2.BackupOptions{Bucket: "src"})
	if err != nil {
		t.Fatal(err)
	}
	cat, err := m.OpenCatalogue(e.ids)
	if err != nil {
		t.Fatal(err)
	}
	items, err := r2.Select(cat, "src", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	return m, items
}

func noUploadsLeft(t *testing.T, e *env, bucket string) {
	t.Helper()
	out, err := e.admin.ListMultipartUploads(context.Background(), &s3.ListMultipartUploadsInput{Bucket: aws.String(bucket)})
	if err != nil || len(out.Uploads) != 0 {
		t.Fatalf("multipart uploads left in %s: %v %v", bucket, out.Uploads, err)
	}
}

// A 40 MiB object restores through parts sent in parallel (more than one, at most RestorePartStreams
// at once) against the real S3 server: its bytes, metadata and multipart ETag are those of the
// snapshot's object cut into 8 MiB parts.
func TestRestoreLargeObjectParallelParts(t *testing.T) {
	e := newEnv(t, "src", "dst")
	ctx := context.Background()
	big := bigObject(40, 40<<20)
	m, items := largeSnapshot(t, e, map[string]obj{"media/big.bin": big})
	w := &partWatch{delay: 300 * time.Millisecond}
	cl := watchedClient(t, e, 0, 0, w)
	plan, err := r2.PlanRestore(ctx, cl, items, r2.Target{Bucket: "dst"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r2.Restore(ctx, cl, r2.Opener(e.eng.Opener(m, e.ids)), plan, 4); err != nil {
		t.Fatal(err)
	}
	if got := e.get(t, "dst", "media/big.bin"); !bytes.Equal(got, big.data) {
		t.Fatalf("restored %d bytes, not the object's %d", len(got), len(big.data))
	}
	out, err := e.admin.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String("dst"), Key: aws.String("media/big.bin")})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := aws.ToString(out.ETag), multipartETag(big.data, r2.DefaultPartSize); got != want {
		t.Fatalf("ETag %s, want %s (5 parts of 8 MiB)", got, want)
	}
	if aws.ToString(out.ContentType) != "video/mp4" || out.Metadata["seed"] != "40" {
		t.Fatalf("metadata %s %v not restored", aws.ToString(out.ContentType), out.Metadata)
	}
	all, one, total := w.stats()
	if total != 5 || one < 2 || one > r2.RestorePartStreams || all > 4+r2.RestorePartStreams {
		t.Fatalf("%d parts, at most %d at once for the object (%d in all): want 5 parts, 2 to %d at once", total, one, all, r2.RestorePartStreams)
	}
	t.Logf("5 parts, up to %d in flight at once", one)
	noUploadsLeft(t, e, "dst")
}

// Several large objects restored at once share one budget of part buffers: parts in flight never
// exceed one per worker plus RestorePartStreams (the buffers a part holds until it is sent), nor
// PartStreams for one object, and with slow parts the budget is actually used (more parts in flight
// than workers).
func TestRestorePartBudgetBound(t *testing.T) {
	e := newEnv(t, "src", "dst")
	ctx := context.Background()
	objs := map[string]obj{}
	for i := 0; i < 4; i++ {
		objs[fmt.Sprintf("big/%d", i)] = bigObject(int64(i), 21<<20) // 5 parts of 5 MiB
	}
	m, items := largeSnapshot(t, e, objs)
	const workers, streams = 2, 3
	w := &partWatch{delay: 150 * time.Millisecond}
	cl := watchedClient(t, e, 5<<20, streams, w)
	plan, err := r2.PlanRestore(ctx, cl, items, r2.Target{Bucket: "dst"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r2.Restore(ctx, cl, r2.Opener(e.eng.Opener(m, e.ids)), plan, workers); err != nil {
		t.Fatal(err)
	}
	for k, o := range objs {
		if !bytes.Equal(e.get(t, "dst", k), o.data) {
			t.Fatalf("%s restored with other bytes", k)
		}
	}
	all, one, total := w.stats()
	t.Logf("%d parts; at most %d in flight at once (%d for one object); bound %d buffers = %d MiB", total, all, one, workers+streams, (workers+streams)*5)
	if total != 20 || all > workers+streams || one > streams || all <= workers {
		t.Fatalf("%d parts, %d in flight at once (%d for one object): want 20 parts, %d < in flight <= %d, <= %d per object",
			total, all, one, workers, workers+streams, streams)
	}
	if want := int64(workers+streams) * 5 << 20; cl.PartBufferBytes(workers) != want {
		t.Fatalf("PartBufferBytes %d, want %d", cl.PartBufferBytes(workers), want)
	}
	noUploadsLeft(t, e, "dst")
}

// An item whose bytes do not match the catalogue's SHA-256 (checked at EOF, after its parts were
// sent in parallel) leaves no object and no multipart upload; a cancelled restore aborts the
// upload in progress the same way.
func TestRestoreLargeObjectAborts(t *testing.T) {
	e := newEnv(t, "src", "dst")
	big := bigObject(41, 40<<20)
	m, items := largeSnapshot(t, e, map[string]obj{"media/big.bin": big})
	open := r2.Opener(e.eng.Opener(m, e.ids))
	t.Run("sha-mismatch", func(t *testing.T) {
		ctx := context.Background()
		bad := append([]manifest.Item(nil), items...)
		bad[0].SHA256 = strings.Repeat("0", 64)
		w := &partWatch{}
		cl := watchedClient(t, e, 0, 0, w)
		plan, err := r2.PlanRestore(ctx, cl, bad, r2.Target{Bucket: "dst"})
		if err != nil {
			t.Fatal(err)
		}
		_, err = r2.Restore(ctx, cl, open, plan, 4)
		if err == nil || !strings.Contains(err.Error(), "media/big.bin") {
			t.Fatalf("restore of an item with the wrong SHA-256: %v, want an error", err)
		}
		_, _, sent := w.stats()
		if sent < 1 {
			t.Fatalf("no part sent: the upload failed before it reached the check at the item's end")
		}
		if _, _, found, err := cl.Head(ctx, "dst", "media/big.bin"); err != nil || found {
			t.Fatalf("found=%v err=%v: an object that failed its check was committed", found, err)
		}
		noUploadsLeft(t, e, "dst")
		t.Logf("%d part(s) sent, then the restore failed as it should: %v", sent, err)
	})
	t.Run("cancelled", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		w := &partWatch{delay: 100 * time.Millisecond, onPart: func(n int) {
			if n == 2 {
				cancel()
			}
		}}
		cl := watchedClient(t, e, 0, 0, w)
		plan, err := r2.PlanRestore(ctx, cl, items, r2.Target{Bucket: "dst"})
		if err != nil {
			t.Fatal(err)
		}
		_, err = r2.Restore(ctx, cl, open, plan, 4)
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("cancelled restore: %v, want context.Canceled", err)
		}
		if _, _, total := w.stats(); total >= 5 {
			t.Fatalf("%d parts sent after the cancel at the 2nd", total)
		}
		if _, _, found, err := cl.Head(context.Background(), "dst", "media/big.bin"); err != nil || found {
			t.Fatalf("found=%v err=%v: a cancelled upload was committed", found, err)
		}
		noUploadsLeft(t, e, "dst")
	})
}

// The engine's opener (what the CLI's restore passes) hands out readers that decode large objects
// straight into part buffers (archive.PartReader), and their bytes are the object's.
func TestRestoreOpenerReadsInParts(t *testing.T) {
	e := newEnv(t, "src")
	big := bigObject(43, 20<<20)
	m, items := largeSnapshot(t, e, map[string]obj{"media/big.bin": big})
	rc, err := e.eng.Opener(m, e.ids)(context.Background(), items[0].ItemRef)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	pr, ok := rc.(archive.PartReader)
	if !ok {
		t.Fatalf("%T is not an archive.PartReader: large objects would stream through an LZ4 reader", rc)
	}
	got, err := io.ReadAll(pr.Parts(&archive.Buffers{}))
	if err != nil || !bytes.Equal(got, big.data) {
		t.Fatalf("%v, %d bytes, want %d", err, len(got), len(big.data))
	}
}

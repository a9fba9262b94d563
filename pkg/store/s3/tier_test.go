package s3_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/cfbackup/cfbackup/internal/testutil/s3server"
	"github.com/cfbackup/cfbackup/pkg/errclass"
	"github.com/cfbackup/cfbackup/pkg/store"
	"github.com/cfbackup/cfbackup/pkg/store/retry"
	"github.com/cfbackup/cfbackup/pkg/store/s3"
)

// classRecorder records the x-amz-storage-class of every object PUT and multipart create that
// reaches the server ("" when the request carries none), by key.
type classRecorder struct {
	mu   sync.Mutex
	seen map[string][]string
}

func (c *classRecorder) RoundTrip(req *http.Request) (*http.Response, error) {
	q := req.URL.Query()
	if (req.Method == http.MethodPut && !q.Has("partNumber")) || (req.Method == http.MethodPost && q.Has("uploads")) {
		key := req.URL.Path[strings.LastIndex(req.URL.Path, "/")+1:]
		c.mu.Lock()
		c.seen[key] = append(c.seen[key], req.Method+" "+req.Header.Get("X-Amz-Storage-Class"))
		c.mu.Unlock()
	}
	return http.DefaultTransport.RoundTrip(req)
}

func (c *classRecorder) get(key string) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return strings.Join(c.seen[key], ",")
}

// A Put with a StorageClass sends it on the single PUT and on the multipart create (versitygw
// accepts the header and stores no class, so the wire is where it shows); a Put without one sends
// no header (the bucket's default). SetStorageClass copies in place and StorageClass reads back what
// it recorded, through the retry decorator as the CLI stacks it.
func TestStorageClassSentAndTiered(t *testing.T) {
	srv := s3server.Start(t)
	srv.CreateBucket(t, "classes", false)
	rec := &classRecorder{seen: map[string][]string{}}
	st, err := s3.New(context.Background(), s3.Config{
		Bucket: "classes", Prefix: "p", Endpoint: srv.Endpoint, Region: srv.Region,
		AccessKeyID: srv.AccessKey, SecretAccessKey: srv.SecretKey, PartSize: s3.MinPartSize, Concurrency: 2,
		HTTPClient: &http.Client{Transport: rec},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	s := retry.New(st, retry.Options{})
	big := bytes.Repeat([]byte("x"), int(s3.MinPartSize)+100) // two parts: multipart upload
	for _, p := range []struct {
		key, class string
		body       []byte
		want       string
	}{
		{"small.age", store.ClassStandardIA, []byte("small"), "PUT STANDARD_IA"},
		{"big.age", store.ClassOneZoneIA, big, "POST ONEZONE_IA"},
		{"hot.json", "", []byte("{}"), "PUT "},
	} {
		if err := s.Put(ctx, p.key, bytes.NewReader(p.body), store.PutOptions{IfNotExists: true, StorageClass: p.class}); err != nil {
			t.Fatalf("put %s: %v", p.key, err)
		}
		if got := rec.get(p.key); got != p.want {
			t.Errorf("%s: requests %q, want %q", p.key, got, p.want)
		}
	}
	tr, ok := store.AsTierer(s)
	if !ok {
		t.Fatal("the S3 store under retry has no Tierer")
	}
	server, recorded, err := tr.StorageClass(ctx, "big.age")
	if err != nil || server != store.ClassStandard || recorded != "" {
		t.Fatalf("before: %q %q %v", server, recorded, err)
	}
	if err := tr.SetStorageClass(ctx, "big.age", store.ClassGlacierIR); err != nil {
		t.Fatal(err)
	}
	if _, recorded, err = tr.StorageClass(ctx, "big.age"); err != nil || recorded != store.ClassGlacierIR {
		t.Fatalf("after: recorded %q, %v", recorded, err)
	}
	rc, err := s.Open(ctx, "big.age", 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(rc)
	rc.Close()
	if err != nil || !bytes.Equal(got, big) {
		t.Fatalf("content after the copy in place: %d bytes, %v", len(got), err)
	}
	if _, _, err := tr.StorageClass(ctx, "missing.age"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("missing: %v", err)
	}
}

// A GET of an object in GLACIER or DEEP_ARCHIVE that was not restored is S3's 403 InvalidObjectState.
// No server the tests can run (versitygw stores no classes; it answers RestoreObject with 501) produces
// it, so this serves AWS's documented error body from a local HTTP server.
func TestArchivedObjectIsAClearRefusal(t *testing.T) {
	var gets int
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gets++
		w.Header().Set("Content-Type", "application/xml")
		w.WriteHeader(http.StatusForbidden)
		_, _ = io.WriteString(w, `<?xml version="1.0" encoding="UTF-8"?>
<Error><Code>InvalidObjectState</Code><Message>The operation is not valid for the object's storage class</Message><StorageClass>DEEP_ARCHIVE</StorageClass><RequestId>R</RequestId><HostId>H</HostId></Error>`)
	}))
	defer hs.Close()
	st, err := s3.New(context.Background(), s3.Config{Bucket: "cold", Prefix: "repo", Endpoint: hs.URL, Region: "us-east-1",
		AccessKeyID: "AK", SecretAccessKey: "SK"})
	if err != nil {
		t.Fatal(err)
	}
	s := retry.New(st, retry.Options{})
	_, err = s.Open(context.Background(), "segments/abc.age", 0, -1)
	if !errors.Is(err, store.ErrArchived) || !errors.Is(err, errclass.Refused) {
		t.Fatalf("err = %v, want ErrArchived (class refused)", err)
	}
	for _, want := range []string{"DEEP_ARCHIVE", "aws s3api restore-object --bucket cold --key repo/segments/abc.age", "docs/STORAGE_CLASSES.md"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	if gets != 1 {
		t.Errorf("%d GETs: an archived object is a definite answer, never retried", gets)
	}
}

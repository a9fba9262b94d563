package s3api_test

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/hex"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cfbackup/cfbackup/internal/testutil/s3server"
	"github.com/cfbackup/cfbackup/pkg/s3api"
)

// requests records the method and query of every request (UploadPart carries partNumber, a
// multipart create "uploads").
type requests struct {
	mu   sync.Mutex
	seen []string
}

func (q *requests) RoundTrip(req *http.Request) (*http.Response, error) {
	q.mu.Lock()
	q.seen = append(q.seen, req.Method+" "+req.URL.RawQuery)
	q.mu.Unlock()
	return http.DefaultTransport.RoundTrip(req)
}

func (q *requests) take() []string {
	q.mu.Lock()
	defer q.mu.Unlock()
	s := q.seen
	q.seen = nil
	return s
}

// An object of known size over the part size but within SinglePutMax (default PartSize ×
// Concurrency) goes with one PUT, whose ETag is its MD5; one over it, or any over the part size
// with SinglePutMax below it, in parts.
func TestSinglePutUpToMax(t *testing.T) {
	srv := s3server.Start(t)
	srv.CreateBucket(t, "one", false)
	ctx := context.Background()
	for _, tc := range []struct {
		name   string
		max    int64
		size   int
		single bool
	}{
		{"within", 0, 3 * s3api.MinPartSize, true},
		{"over", 0, 3*s3api.MinPartSize + 1, false},
		{"off", -1, s3api.MinPartSize + 1, false},
		{"raised", 4 * s3api.MinPartSize, 4 * s3api.MinPartSize, true},
	} {
		q := &requests{}
		c, err := s3api.New(ctx, s3api.Config{Endpoint: srv.Endpoint, Region: srv.Region, AccessKeyID: srv.AccessKey,
			SecretAccessKey: srv.SecretKey, PartSize: s3api.MinPartSize, Concurrency: 3, SinglePutMax: tc.max, HTTPClient: &http.Client{Transport: q}})
		if err != nil {
			t.Fatal(err)
		}
		body := randBytes(t, tc.size)
		if err := c.Put(ctx, "one", tc.name, bytes.NewReader(body), s3api.PutOptions{Size: int64(tc.size), IfNotExists: true}); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		reqs := q.take()
		out := stored(t, srv, "one", tc.name, body)
		sum := md5.Sum(body)
		etag := strings.Trim(*out.ETag, `"`)
		puts := 0
		for _, r := range reqs {
			if strings.HasPrefix(r, "PUT") {
				puts++
			}
		}
		if tc.single && (puts != 1 || etag != hex.EncodeToString(sum[:])) {
			t.Fatalf("%s: %d bytes: requests %q, ETag %s: want one PUT and the body's MD5", tc.name, tc.size, reqs, etag)
		}
		if !tc.single && (puts < 2 || !strings.Contains(etag, "-")) {
			t.Fatalf("%s: %d bytes: requests %q, ETag %s: want a multipart upload", tc.name, tc.size, reqs, etag)
		}
		// A conditional create of a taken key fails whichever way it goes (with other content: a
		// retried create that meets 412 takes identical content for its own).
		other := bytes.Clone(body)
		other[0]++
		if err := c.Put(ctx, "one", tc.name, bytes.NewReader(other), s3api.PutOptions{Size: int64(tc.size), IfNotExists: true}); err == nil {
			t.Fatalf("%s: a conditional create over an existing key succeeded: %q", tc.name, q.take())
		}
	}
}

// A single PUT over the part size takes the budget slots its buffer stands for while it runs (so a
// restore holds no more than in parts), gives them back after, and goes in parts when the budget
// has too few slots at all.
func TestSinglePutTakesBudget(t *testing.T) {
	srv := s3server.Start(t)
	srv.CreateBucket(t, "bud", false)
	ctx := context.Background()
	budget := s3api.NewBudgetPool(2, s3api.NewPool(64<<20))
	held := make(chan int, 1)
	gate := &gated{budget: budget, held: held}
	c, err := s3api.New(ctx, s3api.Config{Endpoint: srv.Endpoint, Region: srv.Region, AccessKeyID: srv.AccessKey,
		SecretAccessKey: srv.SecretKey, PartSize: s3api.MinPartSize, Concurrency: 4, HTTPClient: &http.Client{Transport: gate}})
	if err != nil {
		t.Fatal(err)
	}
	if got := c.SinglePutSlots(3 * s3api.MinPartSize); got != 2 {
		t.Fatalf("SinglePutSlots(3 parts) = %d, want 2", got)
	}
	body := randBytes(t, 3*s3api.MinPartSize)
	if err := c.Put(ctx, "bud", "k", bytes.NewReader(body), s3api.PutOptions{Size: int64(len(body)), Budget: budget}); err != nil {
		t.Fatal(err)
	}
	stored(t, srv, "bud", "k", body)
	if n := <-held; n != 2 {
		t.Fatalf("%d budget slots taken during the PUT, want 2", n)
	}
	if n := budget.InUse(); n != 0 {
		t.Fatalf("%d budget slots still taken after the PUT", n)
	}
	// Four parts need 3 slots of a budget of 2: in parts instead.
	body = randBytes(t, 4*s3api.MinPartSize)
	if err := c.Put(ctx, "bud", "k4", bytes.NewReader(body), s3api.PutOptions{Size: int64(len(body)), Budget: budget}); err != nil {
		t.Fatal(err)
	}
	out := stored(t, srv, "bud", "k4", body)
	if !strings.Contains(*out.ETag, "-") {
		t.Fatalf("ETag %s: want a multipart upload", *out.ETag)
	}
	// A reservation waiting for slots gives up with its context, taking none.
	release, ok, _ := budget.Reserve(ctx, 2)
	if !ok {
		t.Fatal("Reserve(2) of a free budget of 2 failed")
	}
	wctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if _, ok, err := budget.Reserve(wctx, 1); ok || err == nil {
		t.Fatalf("Reserve on a full budget: ok %v, err %v; want the context's error", ok, err)
	}
	release()
	release() // once only
	if n := budget.InUse(); n != 0 {
		t.Fatalf("%d slots taken after release", n)
	}
}

// gated reports the budget's slots in use when the first single PUT (no partNumber) arrives.
type gated struct {
	budget *s3api.Budget
	held   chan int
}

func (g *gated) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Method == http.MethodPut && req.URL.RawQuery == "" || strings.HasPrefix(req.URL.RawQuery, "x-id=PutObject") {
		select {
		case g.held <- g.budget.InUse():
		default:
		}
	}
	return http.DefaultTransport.RoundTrip(req)
}

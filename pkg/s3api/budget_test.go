package s3api_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/cfbackup/cfbackup/internal/testutil/s3server"
	"github.com/cfbackup/cfbackup/pkg/s3api"
)

// inFlight counts the UploadPart requests in flight and holds each for delay — and, until want
// parts have been in flight at once, for up to 5 s more, so that on a loaded machine the parts that
// could overlap do (CI saw the lower bound missed when a 100 ms hold was not enough to overlap).
type inFlight struct {
	delay           time.Duration
	mu              sync.Mutex
	now, most, want int
}

func (f *inFlight) RoundTrip(req *http.Request) (*http.Response, error) {
	part := req.Method == http.MethodPut && req.URL.Query().Has("partNumber")
	if part {
		f.mu.Lock()
		f.now++
		f.most = max(f.most, f.now)
		f.mu.Unlock()
		time.Sleep(f.delay)
		for end := time.Now().Add(5 * time.Second); time.Now().Before(end); time.Sleep(5 * time.Millisecond) {
			f.mu.Lock()
			reached := f.most >= f.want
			f.mu.Unlock()
			if reached {
				break
			}
		}
		defer func() {
			f.mu.Lock()
			f.now--
			f.mu.Unlock()
		}()
	}
	return http.DefaultTransport.RoundTrip(req)
}

// Uploads sharing a Budget of k slots hold at most one buffer each plus k between them (so at most
// that many parts in flight), use the slots when they are free (more parts in flight than
// uploads), and give every slot back, after a failed upload too.
func TestBudgetBoundsUploads(t *testing.T) {
	srv := s3server.Start(t)
	srv.CreateBucket(t, "bud", false)
	f := &inFlight{delay: 100 * time.Millisecond}
	c, err := s3api.New(context.Background(), s3api.Config{Endpoint: srv.Endpoint, Region: srv.Region, AccessKeyID: srv.AccessKey,
		SecretAccessKey: srv.SecretKey, PartSize: s3api.MinPartSize, Concurrency: 4, HTTPClient: &http.Client{Transport: f}})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	// One upload alone first: part 1 goes alone until the server has taken a CRC32C part.
	warm := randBytes(t, 2*s3api.MinPartSize)
	if err := c.Put(ctx, "bud", "warm", bytes.NewReader(warm), s3api.PutOptions{Size: int64(len(warm))}); err != nil {
		t.Fatal(err)
	}
	const uploads, slots = 3, 2
	f.mu.Lock()
	f.most, f.want = 0, uploads+2
	f.mu.Unlock()
	budget := s3api.NewBudget(slots)
	bodies := make([][]byte, uploads)
	errs := make([]error, uploads+1)
	var wg sync.WaitGroup
	for i := range bodies {
		bodies[i] = randBytes(t, 5*s3api.MinPartSize+1)
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = c.Put(ctx, "bud", fmt.Sprint("k", i), bytes.NewReader(bodies[i]), s3api.PutOptions{Size: int64(len(bodies[i])), Budget: budget})
		}()
	}
	bad := errors.New("check failed at the end")
	wg.Add(1)
	go func() { // a body failing its check: its upload is aborted and its slots come back
		defer wg.Done()
		body := randBytes(t, 4*s3api.MinPartSize)
		errs[uploads] = c.Put(ctx, "bud", "bad", errAt{bytes.NewReader(body), bad}, s3api.PutOptions{Size: int64(len(body)), Budget: budget})
	}()
	wg.Wait()
	for i := range bodies {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		stored(t, srv, "bud", fmt.Sprint("k", i), bodies[i])
	}
	if !errors.Is(errs[uploads], bad) {
		t.Fatalf("failing body: %v, want its error", errs[uploads])
	}
	if f.most > uploads+1+slots || f.most <= uploads+1 {
		t.Fatalf("%d parts in flight at once; want more than the %d uploads and at most %d", f.most, uploads+1, uploads+1+slots)
	}
	if n := budget.InUse(); n != 0 {
		t.Fatalf("%d budget slots still taken after every upload ended", n)
	}
	out, err := srv.Client().ListMultipartUploads(ctx, &awss3.ListMultipartUploadsInput{Bucket: aws.String("bud")})
	if err != nil || len(out.Uploads) != 0 {
		t.Fatalf("uploads left: %v %v", out, err)
	}
	t.Logf("%d parts in flight at most for %d uploads and %d slots", f.most, uploads+1, slots)
}

// errAt returns err instead of io.EOF at the end of r.
type errAt struct {
	r io.Reader
	e error
}

func (x errAt) Read(p []byte) (int, error) {
	n, err := x.r.Read(p)
	if err == io.EOF {
		return n, x.e
	}
	return n, err
}

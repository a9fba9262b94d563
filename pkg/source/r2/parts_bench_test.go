package r2_test

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"runtime"
	"runtime/metrics"
	"testing"
	"time"

	"filippo.io/age"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/cfbackup/cfbackup/internal/testutil/s3server"
	"github.com/cfbackup/cfbackup/pkg/engine"
	"github.com/cfbackup/cfbackup/pkg/repo"
	"github.com/cfbackup/cfbackup/pkg/source/r2"
	"github.com/cfbackup/cfbackup/pkg/store/local"
)

// slowUpload makes every request wait latency and sends its body at no more than perStream bytes
// per second: an upload link where one connection cannot fill the pipe (R2 far away).
type slowUpload struct {
	latency   time.Duration
	perStream float64
}

func (s slowUpload) RoundTrip(req *http.Request) (*http.Response, error) {
	time.Sleep(s.latency)
	if req.Body != nil && req.Body != http.NoBody {
		req = req.Clone(req.Context())
		req.Body = &paced{ReadCloser: req.Body, rate: s.perStream, start: time.Now()}
	}
	return http.DefaultTransport.RoundTrip(req)
}

// peakHeap samples the heap every 5 ms until stop and reports its peaks: live-MiB is the heap
// marked live by a GC (what the part buffers hold), heap-MiB every heap object, garbage included.
func peakHeap(b *testing.B) (stop func()) {
	samples := []metrics.Sample{{Name: "/gc/heap/live:bytes"}, {Name: "/memory/classes/heap/objects:bytes"}}
	var live, all uint64
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(5 * time.Millisecond)
		defer t.Stop()
		for {
			metrics.Read(samples)
			live, all = max(live, samples[0].Value.Uint64()), max(all, samples[1].Value.Uint64())
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	}()
	runtime.GC()
	return func() {
		close(done)
		<-finished
		b.ReportMetric(float64(live)/(1<<20), "live-MiB")
		b.ReportMetric(float64(all)/(1<<20), "heap-MiB")
	}
}

// BenchmarkRestoreLargeObjects: 8 objects of 50 MiB (half text) restored into a bucket by W workers
// (8, the default, or 2), parts one at a time per object (K=1, as before) or RestorePartStreams at
// once (K=4), over loopback and over a link of 20 ms latency and 40 MB/s per upload stream. Run:
// go test -run '^$' -bench RestoreLargeObjects -benchtime 1x -count 3 ./pkg/source/r2/
func BenchmarkRestoreLargeObjects(b *testing.B) {
	ctx := context.Background()
	srv := s3server.Start(b)
	srv.CreateBucket(b, "src", false)
	srv.CreateBucket(b, "dst", false)
	var total int64
	for i := 0; i < 8; i++ {
		o := bigObject(int64(i), 50<<20)
		if _, err := srv.Client().PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("src"), Key: aws.String(fmt.Sprintf("media/%d.mp4", i)), Body: bytes.NewReader(o.data)}); err != nil {
			b.Fatal(err)
		}
		total += int64(len(o.data))
	}
	st, err := local.New(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	id, _ := age.GenerateX25519Identity()
	ids := []age.Identity{id}
	rp, _, err := repo.Init(ctx, st, repo.InitOptions{Recipients: []string{id.Recipient().String()}})
	if err != nil {
		b.Fatal(err)
	}
	base := r2.Config{Endpoint: srv.Endpoint, Region: srv.Region, AccessKeyID: srv.AccessKey, SecretAccessKey: srv.SecretKey}
	cl, err := r2.New(base)
	if err != nil {
		b.Fatal(err)
	}
	eng := &engine.Engine{Repo: rp}
	m := benchBackup(b, cl, eng)
	cat, _ := m.OpenCatalogue(ids)
	items, _ := r2.Select(cat, "src", "", nil)
	for _, sub := range []struct {
		link    string
		workers int
	}{{"loopback", r2.DefaultConcurrency}, {"wan", r2.DefaultConcurrency}, {"loopback", 2}, {"wan", 2}} {
		link := sub.link
		for _, k := range []int{1, r2.RestorePartStreams} {
			b.Run(fmt.Sprintf("%s/W=%d/K=%d", link, sub.workers, k), func(b *testing.B) {
				cfg := base
				cfg.PartStreams = k
				if link == "wan" {
					cfg.HTTPClient = &http.Client{Transport: slowUpload{latency: 20 * time.Millisecond, perStream: 40e6}}
				}
				rc, err := r2.New(cfg)
				if err != nil {
					b.Fatal(err)
				}
				b.SetBytes(total)
				stop := peakHeap(b)
				defer stop()
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					plan, err := r2.PlanRestore(ctx, rc, items, r2.Target{Bucket: "dst", Overwrite: r2.OverwriteOverwrite})
					if err != nil {
						b.Fatal(err)
					}
					if _, err := r2.Restore(ctx, rc, r2.Opener(eng.Opener(m, ids)), plan, sub.workers); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

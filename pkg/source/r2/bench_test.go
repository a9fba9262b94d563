package r2_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand"
	"net/http"
	"sync"
	"testing"
	"time"

	"filippo.io/age"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/cfbackup/cfbackup/internal/testutil/s3server"
	"github.com/cfbackup/cfbackup/pkg/engine"
	"github.com/cfbackup/cfbackup/pkg/manifest"
	"github.com/cfbackup/cfbackup/pkg/repo"
	"github.com/cfbackup/cfbackup/pkg/source/r2"
	"github.com/cfbackup/cfbackup/pkg/store/local"
)

// benchEnv is a versitygw bucket of 400 objects (~200 MiB, 63 % text) and a local repository.
func benchEnv(b *testing.B) (*r2.Client, *engine.Engine, []age.Identity, *s3server.Server, int64) {
	b.Helper()
	srv := s3server.Start(b)
	srv.CreateBucket(b, "src", false)
	srv.CreateBucket(b, "dst", false)
	var total int64
	var mu sync.Mutex
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	for i := 0; i < 400; i++ {
		wg.Add(1)
		sem <- struct{}{}
		go func(i int) {
			defer wg.Done()
			defer func() { <-sem }()
			rng := rand.New(rand.NewSource(int64(i)))
			n := rng.Intn(1 << 20)
			var data []byte
			if i%100 < 63 {
				var buf bytes.Buffer
				for buf.Len() < n {
					fmt.Fprintf(&buf, `{"id":%d,"user":"user%d@example.com","score":%.3f}`+"\n", rng.Intn(1e7), rng.Intn(1e5), rng.Float64()*1000)
				}
				data = buf.Bytes()
			} else {
				data = make([]byte, n)
				rng.Read(data)
			}
			if _, err := srv.Client().PutObject(context.Background(), &s3.PutObjectInput{Bucket: aws.String("src"), Key: aws.String(fmt.Sprintf("o/%04d", i)), Body: bytes.NewReader(data)}); err != nil {
				b.Error(err)
			}
			mu.Lock()
			total += int64(len(data))
			mu.Unlock()
		}(i)
	}
	wg.Wait()
	st, err := local.New(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	id, _ := age.GenerateX25519Identity()
	rp, _, err := repo.Init(context.Background(), st, repo.InitOptions{Recipients: []string{id.Recipient().String()}})
	if err != nil {
		b.Fatal(err)
	}
	cl, err := r2.New(r2.Config{Endpoint: srv.Endpoint, Region: srv.Region, AccessKeyID: srv.AccessKey, SecretAccessKey: srv.SecretKey})
	if err != nil {
		b.Fatal(err)
	}
	return cl, &engine.Engine{Repo: rp}, []age.Identity{id}, srv, total
}

func benchBackup(b *testing.B, cl *r2.Client, eng *engine.Engine) *manifest.Manifest {
	plan := &engine.BackupPlan{Components: []string{r2.Component}}
	plan.AddCapture(engine.Capture{Component: r2.Component, Name: "src", Run: func(ctx context.Context, s *engine.Session) error {
		_, err := r2.Backup(ctx, cl, s, r2.BackupOptions{Bucket: "src"})
		return err
	}})
	m, err := eng.Backup(context.Background(), plan, engine.BackupOptions{})
	if err != nil {
		b.Fatal(err)
	}
	return m
}

// BenchmarkBackup: a full backup of the bucket (no writer secret: every object is fetched).
func BenchmarkBackup(b *testing.B) {
	cl, eng, _, _, total := benchEnv(b)
	b.SetBytes(total)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		benchBackup(b, cl, eng)
	}
}

// BenchmarkRestore: the whole bucket restored into another bucket (overwrite, so every run writes).
func BenchmarkRestore(b *testing.B) {
	cl, eng, ids, _, total := benchEnv(b)
	m := benchBackup(b, cl, eng)
	cat, _ := m.OpenCatalogue(ids)
	items, _ := r2.Select(cat, "src", "", nil)
	b.SetBytes(total)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		plan, err := r2.PlanRestore(context.Background(), cl, items, r2.Target{Bucket: "dst", Overwrite: r2.OverwriteOverwrite})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := r2.Restore(context.Background(), cl, r2.Opener(eng.Opener(m, ids)), plan, 4); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRestoreNew: the whole bucket restored into a new, empty bucket each time (the server
// creates every key, which costs it more than an overwrite).
func BenchmarkRestoreNew(b *testing.B) {
	cl, eng, ids, srv, total := benchEnv(b)
	m := benchBackup(b, cl, eng)
	cat, _ := m.OpenCatalogue(ids)
	items, _ := r2.Select(cat, "src", "", nil)
	b.SetBytes(total)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		bucket := fmt.Sprintf("new%d", i)
		srv.CreateBucket(b, bucket, false)
		b.StartTimer()
		plan, err := r2.PlanRestore(context.Background(), cl, items, r2.Target{Bucket: bucket})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := r2.Restore(context.Background(), cl, r2.Opener(eng.Opener(m, ids)), plan, 8); err != nil {
			b.Fatal(err)
		}
	}
}

// slowLink makes every response wait latency before its headers and then arrive at no more than
// perStream bytes per second: a long-distance link where one connection cannot fill the pipe.
type slowLink struct {
	latency   time.Duration
	perStream float64
}

func (s slowLink) RoundTrip(req *http.Request) (*http.Response, error) {
	time.Sleep(s.latency)
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err == nil {
		resp.Body = &paced{ReadCloser: resp.Body, rate: s.perStream, start: time.Now()}
	}
	return resp, err
}

type paced struct {
	io.ReadCloser
	rate  float64
	start time.Time
	n     int64
}

func (p *paced) Read(b []byte) (int, error) {
	n, err := p.ReadCloser.Read(b[:min(len(b), 256<<10)])
	p.n += int64(n)
	if d := time.Duration(float64(p.n)/p.rate*float64(time.Second)) - time.Since(p.start); d > 0 {
		time.Sleep(d)
	}
	return n, err
}

// BenchmarkLargeObjectsSlowLink: 8 objects of 32 MiB (half text) over a link of 20 ms latency and
// 25 MB/s per connection. One GET stream per object would take about 11 s; ranged GETs in parallel
// should take about a quarter of that. Run:
// go test -run '^$' -bench LargeObjectsSlowLink -benchtime 1x ./pkg/source/r2/
func BenchmarkLargeObjectsSlowLink(b *testing.B) {
	srv := s3server.Start(b)
	srv.CreateBucket(b, "src", false)
	var total int64
	for i := 0; i < 8; i++ {
		o := bigObject(int64(i), 32<<20)
		if _, err := srv.Client().PutObject(context.Background(), &s3.PutObjectInput{Bucket: aws.String("src"), Key: aws.String(fmt.Sprintf("media/%d.mp4", i)), Body: bytes.NewReader(o.data)}); err != nil {
			b.Fatal(err)
		}
		total += int64(len(o.data))
	}
	st, err := local.New(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	id, _ := age.GenerateX25519Identity()
	rp, _, err := repo.Init(context.Background(), st, repo.InitOptions{Recipients: []string{id.Recipient().String()}})
	if err != nil {
		b.Fatal(err)
	}
	cl, err := r2.New(r2.Config{Endpoint: srv.Endpoint, Region: srv.Region, AccessKeyID: srv.AccessKey, SecretAccessKey: srv.SecretKey,
		HTTPClient: &http.Client{Transport: slowLink{latency: 20 * time.Millisecond, perStream: 25e6}}})
	if err != nil {
		b.Fatal(err)
	}
	eng := &engine.Engine{Repo: rp}
	b.SetBytes(total)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		benchBackup(b, cl, eng)
	}
}

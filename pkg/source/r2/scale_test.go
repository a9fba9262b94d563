package r2_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"filippo.io/age"

	"github.com/cfbackup/cfbackup/pkg/archive"
	"github.com/cfbackup/cfbackup/pkg/engine"
	"github.com/cfbackup/cfbackup/pkg/manifest"
	"github.com/cfbackup/cfbackup/pkg/repo"
	"github.com/cfbackup/cfbackup/pkg/retention"
	"github.com/cfbackup/cfbackup/pkg/source/r2"
	"github.com/cfbackup/cfbackup/pkg/store"
	"github.com/cfbackup/cfbackup/pkg/store/local"
)

// The scale benchmark (make bench-scale, scripts/bench-scale.sh) measures incrementals of a bucket
// of N objects: a no-change one and one where 5 % of the objects changed. Each phase runs in its own
// process so that /usr/bin/time reports that phase's peak RSS:
//
//	CFBACKUP_SCALE_PHASE=setup|nochange|changed|verify|prune CFBACKUP_SCALE_N=1000000 CFBACKUP_SCALE_DIR=/tmp/x \
//	  r2.test -test.run '^TestScale$'
//
// The bucket is scaleBucket, served by an in-process S3 listing server on loopback that generates
// the sorted listing of N keys deterministically (and the bodies of changed objects); real object
// bodies are not needed for a no-change incremental. The setup phase writes a parent snapshot whose
// N catalogue items and index entries all point at one real stored item (each with its listed size
// and ETag), in the index format of the tree under test (WriteSyntheticIndexFunc). The verify phase
// reads the newest snapshot back (verify --read-data); the prune phase keeps only it and sweeps.
func TestScale(t *testing.T) {
	phase := os.Getenv("CFBACKUP_SCALE_PHASE")
	if phase == "" {
		t.Skip("set CFBACKUP_SCALE_PHASE (scripts/bench-scale.sh)")
	}
	n, err := strconv.Atoi(os.Getenv("CFBACKUP_SCALE_N"))
	dir := os.Getenv("CFBACKUP_SCALE_DIR")
	if err != nil || n < 1 || dir == "" {
		t.Fatal("set CFBACKUP_SCALE_N and CFBACKUP_SCALE_DIR")
	}
	fb := &fakeBucket{n: n, changed: phase == "changed"}
	if path := os.Getenv("CFBACKUP_SCALE_HEAPPROFILE"); path != "" {
		defer peakHeapProfile(t, path)()
	}
	start := time.Now()
	var res scaleResult
	switch phase {
	case "setup":
		res = scaleSetup(t, fb, dir)
	case "verify":
		res = scaleVerify(t, dir)
	case "prune":
		res = scalePrune(t, dir)
	case "restore1":
		res = scaleRestoreOne(t, fb, dir)
	default:
		res = scaleIncremental(t, fb, dir)
	}
	res.Phase, res.N, res.Seconds = phase, n, time.Since(start).Seconds()
	res.ListRequests, res.GetRequests = fb.lists.Load(), fb.gets.Load()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	res.HeapSysMiB = ms.HeapSys >> 20
	b, _ := json.Marshal(res)
	fmt.Printf("SCALE %s\n", b)
}

// peakHeapProfile samples the heap every 100 ms and keeps, in path, the in-use profile taken when the
// live heap was largest (where the per-object state of a phase sits). The returned func stops it.
func peakHeapProfile(t *testing.T, path string) func() {
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		var peak uint64
		for {
			select {
			case <-stop:
				return
			case <-time.After(100 * time.Millisecond):
			}
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			if ms.HeapAlloc <= peak+peak/20 {
				continue
			}
			peak = ms.HeapAlloc
			var buf bytes.Buffer
			if err := pprof.Lookup("heap").WriteTo(&buf, 0); err == nil {
				_ = os.WriteFile(path, buf.Bytes(), 0o644)
			}
		}
	}()
	return func() { close(stop); <-done }
}

type scaleResult struct {
	Phase        string  `json:"phase"`
	N            int     `json:"n"`
	Seconds      float64 `json:"seconds"`
	Objects      int64   `json:"objects"`
	Reused       int64   `json:"reused"`
	Fetched      int64   `json:"fetched"`
	ListRequests int64   `json:"list_requests"`
	GetRequests  int64   `json:"get_requests"`
	HeapSysMiB   uint64  `json:"heap_sys_mib"`
}

const scaleBucket = "bench"

var scaleTime = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

// fakeBucket serves ListObjectsV2 (1000 keys a page) and GetObject of its N generated objects.
type fakeBucket struct {
	n          int
	changed    bool // objects i%20 == 0 changed (another ETag and size)
	lists      atomic.Int64
	gets       atomic.Int64
	url        string
	stopServer func()
}

func scaleKey(i int) string { return fmt.Sprintf("assets/%02d/%08d.webp", i%100, i) }

func (f *fakeBucket) object(i int) (int64, string) {
	gen := 0
	if f.changed && i%20 == 0 {
		gen = 1
	}
	return 16 + int64(i%64) + int64(gen), fmt.Sprintf(`"%016x%016x"`, uint64(i)*0x9E3779B97F4A7C15, gen)
}

func (f *fakeBucket) start(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: f}
	go srv.Serve(ln)
	f.url = "http://" + ln.Addr().String()
	f.stopServer = func() { srv.Close() }
}

func (f *fakeBucket) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	path := strings.TrimPrefix(r.URL.Path, "/")
	switch {
	case path == scaleBucket && r.URL.Query().Get("list-type") == "2":
		f.list(w, r)
	case strings.HasPrefix(path, scaleBucket+"/") && r.Method == http.MethodGet:
		f.get(w, strings.TrimPrefix(path, scaleBucket+"/"))
	default:
		http.Error(w, "not supported by the scale benchmark's server", http.StatusNotImplemented)
	}
}

// list serves one page of the listing from the continuation token (a listing position).
func (f *fakeBucket) list(w http.ResponseWriter, r *http.Request) {
	f.lists.Add(1)
	pos := 0
	if tok := r.URL.Query().Get("continuation-token"); tok != "" {
		pos, _ = strconv.Atoi(tok)
	}
	end := min(pos+1000, f.n)
	bw := bufio.NewWriterSize(w, 64<<10)
	w.Header().Set("Content-Type", "application/xml")
	fmt.Fprintf(bw, `<?xml version="1.0" encoding="UTF-8"?><ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>%s</Name><Prefix></Prefix><KeyCount>%d</KeyCount><MaxKeys>1000</MaxKeys><IsTruncated>%v</IsTruncated>`, scaleBucket, end-pos, end < f.n)
	if end < f.n {
		fmt.Fprintf(bw, "<NextContinuationToken>%d</NextContinuationToken>", end)
	}
	lm := scaleTime.Format("2006-01-02T15:04:05.000Z")
	for p := pos; p < end; p++ {
		i := f.byPos(p)
		size, etag := f.object(i)
		fmt.Fprintf(bw, "<Contents><Key>%s</Key><LastModified>%s</LastModified><ETag>%s</ETag><Size>%d</Size><StorageClass>STANDARD</StorageClass></Contents>",
			scaleKey(i), lm, strings.ReplaceAll(etag, `"`, "&quot;"), size)
	}
	bw.WriteString("</ListBucketResult>")
	bw.Flush()
}

// byPos is the object at listing position p: keys sort by (i%100, i).
func (f *fakeBucket) byPos(p int) int {
	for m := 0; m < 100; m++ {
		cnt := f.n / 100
		if m < f.n%100 {
			cnt++
		}
		if p < cnt {
			return p*100 + m
		}
		p -= cnt
	}
	return -1
}

func (f *fakeBucket) get(w http.ResponseWriter, key string) {
	f.gets.Add(1)
	var i int
	if _, err := fmt.Sscanf(key[len("assets/00/"):], "%08d.webp", &i); err != nil || i >= f.n || scaleKey(i) != key {
		w.WriteHeader(http.StatusNotFound)
		return
	}
	size, etag := f.object(i)
	w.Header().Set("ETag", etag)
	w.Header().Set("Content-Length", strconv.FormatInt(size, 10))
	w.Header().Set("Last-Modified", scaleTime.Format(http.TimeFormat))
	w.Header().Set("Content-Type", "image/webp")
	w.Write(bytes.Repeat([]byte{byte(i)}, int(size)))
}

// streamingSession is a session that takes items as they come (the streamed catalogue); a tree
// before it (--old) gets the setup's items as one slice.
type streamingSession interface {
	AddItems(items ...manifest.Item)
	AddSource(src manifest.Source)
}

func scaleSetup(t *testing.T, fb *fakeBucket, dir string) scaleResult {
	ctx := context.Background()
	st, err := local.New(filepath.Join(dir, "repo"))
	if err != nil {
		t.Fatal(err)
	}
	id, _ := age.GenerateX25519Identity()
	rp, secret, err := repo.Init(ctx, st, repo.InitOptions{Recipients: []string{id.Recipient().String()}})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "secret"), []byte(hex.EncodeToString(secret)), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "identity"), []byte(id.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	plan := &engine.BackupPlan{Components: []string{r2.Component}}
	plan.AddCapture(engine.Capture{Component: r2.Component, Name: scaleBucket, Run: func(ctx context.Context, s *engine.Session) error {
		// One stored item per object size (16 … 80 bytes): every synthetic item points at the one of
		// its size, so verify --read-data finds each item's bytes as its catalogue entry says.
		refs := map[int64]archive.ItemRef{}
		for size := int64(16); size <= 80; size++ {
			p, err := s.Writer.WriteItemAsync(r2.ItemName(scaleBucket, fmt.Sprintf("shared-%d", size)), bytes.NewReader(make([]byte, size)))
			if err != nil {
				return err
			}
			if refs[size], err = p.Wait(); err != nil {
				return err
			}
		}
		var total int64
		item := func(pos int) manifest.Item {
			i := fb.byPos(pos)
			size, etag := fb.object(i)
			k := scaleKey(i)
			total += size
			return manifest.Item{Component: r2.Component, Source: scaleBucket, Kind: "object",
				Object:  &manifest.ObjectMeta{Key: k, ETag: etag, LastModified: scaleTime, ContentType: "image/webp"},
				ItemRef: archive.ItemRef{Name: refs[size].Name, Size: size, SHA256: refs[size].SHA256, Chunks: refs[size].Chunks}}
		}
		f, err := os.CreateTemp(dir, "index-*")
		if err != nil {
			return err
		}
		defer os.Remove(f.Name())
		defer f.Close()
		bw := bufio.NewWriterSize(f, 256<<10)
		if err := r2.WriteSyntheticIndexFunc(secret, bw, scaleBucket, fb.n, item); err != nil {
			return err
		}
		if err := bw.Flush(); err != nil {
			return err
		}
		key := r2.IndexKey(s.SnapshotID, scaleBucket)
		if err := s.PutObjectFile(ctx, key, f); err != nil {
			return err
		}
		src := manifest.Source{Component: r2.Component, ID: scaleBucket, Name: scaleBucket, Items: int64(fb.n), Size: total, Index: key}
		if ss, ok := any(s).(streamingSession); ok {
			batch := make([]manifest.Item, 0, 4096)
			for pos := 0; pos < fb.n; pos++ {
				if batch = append(batch, item(pos)); len(batch) == cap(batch) {
					ss.AddItems(batch...)
					batch = batch[:0]
				}
			}
			ss.AddItems(batch...)
			ss.AddSource(src)
			return nil
		}
		items := make([]manifest.Item, 0, fb.n)
		for pos := 0; pos < fb.n; pos++ {
			items = append(items, item(pos))
		}
		s.Add(src, items...)
		return nil
	}})
	if _, err := (&engine.Engine{Repo: rp, Tool: "bench"}).Backup(ctx, plan, engine.BackupOptions{Components: plan.Components}); err != nil {
		t.Fatal(err)
	}
	return scaleResult{Objects: int64(fb.n)}
}

// openScale opens the benchmark's repository with its writer secret.
func openScale(t *testing.T, dir string) (*repo.Repo, []byte) {
	ctx := context.Background()
	st, err := local.New(filepath.Join(dir, "repo"))
	if err != nil {
		t.Fatal(err)
	}
	h, err := os.ReadFile(filepath.Join(dir, "secret"))
	if err != nil {
		t.Fatal(err)
	}
	secret, _ := hex.DecodeString(string(h))
	rp, err := repo.Open(ctx, st)
	if err != nil {
		t.Fatal(err)
	}
	if err := rp.Authenticate(secret, repo.AuthOptions{}); err != nil {
		t.Fatal(err)
	}
	return rp, secret
}

// openScaleNewest opens the scale repository with its identity and returns its newest snapshot.
func openScaleNewest(t *testing.T, dir string) (*repo.Repo, []age.Identity, *manifest.Manifest) {
	rp, _ := openScale(t, dir)
	b, err := os.ReadFile(filepath.Join(dir, "identity"))
	if err != nil {
		t.Fatal(err)
	}
	ids, err := age.ParseIdentities(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	snaps, _, err := rp.ListSnapshots(context.Background())
	if err != nil || len(snaps) == 0 {
		t.Fatalf("no snapshot in the scale repository: %v", err)
	}
	return rp, ids, snaps[0]
}

// scaleVerify runs verify --read-data on the newest snapshot (the 5 %-changed one): every catalogue
// item is hashed.
func scaleVerify(t *testing.T, dir string) scaleResult {
	ctx := context.Background()
	rp, ids, newest := openScaleNewest(t, dir)
	res, err := (&engine.Engine{Repo: rp, Tool: "bench"}).Verify(ctx, newest, engine.VerifyOptions{ReadData: true, Identities: ids})
	if err != nil {
		t.Fatal(err)
	}
	return scaleResult{Objects: int64(res.Items)}
}

// catCountingStore counts the catalogue objects opened (the restore1 phase's "gets").
type catCountingStore struct {
	store.Store
	opens atomic.Int64
}

func (c *catCountingStore) Open(ctx context.Context, key string, off, n int64) (io.ReadCloser, error) {
	if strings.HasPrefix(key, "catalogue/") {
		c.opens.Add(1)
	}
	return c.Store.Open(ctx, key, off, n)
}

// scaleRestoreOne plans the restore of one key (the object in the middle of the listing) from the
// newest snapshot: what restore --key does before it reads any data, the catalogue lookup.
// Its "gets" are the catalogue objects opened.
func scaleRestoreOne(t *testing.T, fb *fakeBucket, dir string) scaleResult {
	ctx := context.Background()
	rp, ids, newest := openScaleNewest(t, dir)
	m, err := rp.LoadManifest(ctx, newest)
	if err != nil {
		t.Fatal(err)
	}
	cs := &catCountingStore{Store: rp.Store}
	key := scaleKey(fb.byPos(fb.n / 2))
	items, err := r2.Select(m.Stream(ctx, cs, ids), scaleBucket, "", []string{key})
	if err != nil || len(items) != 1 || items[0].Object.Key != key {
		t.Fatalf("select %q: %d item(s), %v", key, len(items), err)
	}
	fb.gets.Store(cs.opens.Load())
	return scaleResult{Objects: 1}
}

// scalePrune keeps only the newest snapshot: the two older manifests go, and the sweep (no grace)
// deletes what only they referenced.
func scalePrune(t *testing.T, dir string) scaleResult {
	ctx := context.Background()
	rp, _ := openScale(t, dir)
	res, err := (&engine.Engine{Repo: rp, Tool: "bench"}).Prune(ctx, engine.PruneOptions{Policies: retention.Policies{Default: retention.Policy{Last: 1}}, Grace: -1})
	if err != nil {
		t.Fatal(err)
	}
	return scaleResult{Objects: int64(len(res.Removed)), Fetched: int64(res.SegmentsDeleted + res.ObjectsDeleted)}
}

func scaleIncremental(t *testing.T, fb *fakeBucket, dir string) scaleResult {
	ctx := context.Background()
	fb.start(t)
	defer fb.stopServer()
	rp, secret := openScale(t, dir)
	cl, err := r2.New(r2.Config{Endpoint: fb.url, Region: "auto", AccessKeyID: "bench", SecretAccessKey: "bench"})
	if err != nil {
		t.Fatal(err)
	}
	var bst r2.Stats
	plan := &engine.BackupPlan{Components: []string{r2.Component}}
	plan.AddCapture(engine.Capture{Component: r2.Component, Name: scaleBucket, Run: func(ctx context.Context, s *engine.Session) error {
		bst, err = r2.Backup(ctx, cl, s, r2.BackupOptions{Bucket: scaleBucket, WriterSecret: secret})
		return err
	}})
	if _, err := (&engine.Engine{Repo: rp, Tool: "bench"}).Backup(ctx, plan, engine.BackupOptions{Components: plan.Components}); err != nil {
		t.Fatal(err)
	}
	want := int64(0)
	if fb.changed {
		want = int64((fb.n + 19) / 20)
	}
	if bst.Objects != int64(fb.n) || bst.Fetched != want || bst.Reused != int64(fb.n)-want {
		t.Fatalf("incremental: %+v, want %d objects, %d fetched", bst, fb.n, want)
	}
	return scaleResult{Objects: bst.Objects, Reused: bst.Reused, Fetched: bst.Fetched}
}

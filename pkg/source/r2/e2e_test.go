package r2_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"filippo.io/age"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/cfbackup/cfbackup/internal/testutil/s3server"
	"github.com/cfbackup/cfbackup/pkg/engine"
	"github.com/cfbackup/cfbackup/pkg/manifest"
	"github.com/cfbackup/cfbackup/pkg/repo"
	"github.com/cfbackup/cfbackup/pkg/source/r2"
	"github.com/cfbackup/cfbackup/pkg/store"
	s3store "github.com/cfbackup/cfbackup/pkg/store/s3"
)

// countingStore counts the bytes read from the repository (ranged reads included).
type countingStore struct {
	store.Store
	read atomic.Int64
}

func (c *countingStore) Open(ctx context.Context, key string, off, n int64) (io.ReadCloser, error) {
	rc, err := c.Store.Open(ctx, key, off, n)
	if err != nil {
		return nil, err
	}
	return &countingRC{rc, &c.read}, nil
}

type countingRC struct {
	io.ReadCloser
	n *atomic.Int64
}

func (c *countingRC) Read(p []byte) (int, error) {
	n, err := c.ReadCloser.Read(p)
	c.n.Add(int64(n))
	return n, err
}

type env struct {
	srv    *s3server.Server
	admin  *s3.Client
	cl     *r2.Client
	st     *countingStore
	rp     *repo.Repo
	eng    *engine.Engine
	ids    []age.Identity
	secret []byte
}

func newEnv(t *testing.T, buckets ...string) *env {
	t.Helper()
	ctx := context.Background()
	srv := s3server.Start(t)
	srv.CreateBucket(t, "repo", false)
	for _, b := range buckets {
		srv.CreateBucket(t, b, false)
	}
	st, err := s3store.New(ctx, s3store.Config{Bucket: "repo", Endpoint: srv.Endpoint, Region: srv.Region, AccessKeyID: srv.AccessKey, SecretAccessKey: srv.SecretKey})
	if err != nil {
		t.Fatal(err)
	}
	cs := &countingStore{Store: st}
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	rp, secret, err := repo.Init(ctx, cs, repo.InitOptions{Recipients: []string{id.Recipient().String()}, SegmentSize: 64 << 20})
	if err != nil {
		t.Fatal(err)
	}
	cl, err := r2.New(r2.Config{Endpoint: srv.Endpoint, Region: srv.Region, AccessKeyID: srv.AccessKey, SecretAccessKey: srv.SecretKey})
	if err != nil {
		t.Fatal(err)
	}
	return &env{srv: srv, admin: srv.Client(), cl: cl, st: cs, rp: rp, eng: &engine.Engine{Repo: rp, Tool: "test"}, ids: []age.Identity{id}, secret: secret}
}

func (e *env) backup(ctx context.Context, o r2.BackupOptions) (*manifest.Manifest, r2.Stats, error) {
	var st r2.Stats
	if o.WriterSecret == nil {
		o.WriterSecret = e.secret
	}
	plan := &engine.BackupPlan{Components: []string{r2.Component}}
	plan.AddCapture(engine.Capture{Component: r2.Component, Name: o.Bucket, Run: func(ctx context.Context, s *engine.Session) error {
		var err error
		st, err = r2.Backup(ctx, e.cl, s, o)
		return err
	}})
	m, err := e.eng.Backup(ctx, plan, engine.BackupOptions{Components: plan.Components})
	return m, st, err
}

// obj is the model of one object: what every restore must reproduce.
type obj struct {
	data []byte
	meta manifest.ObjectMeta
}

func (e *env) put(t *testing.T, bucket, key string, o obj) {
	t.Helper()
	ctx := context.Background()
	in := &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String(key), Body: bytes.NewReader(o.data)}
	if o.meta.ContentType != "" {
		in.ContentType = aws.String(o.meta.ContentType)
	}
	if o.meta.CacheControl != "" {
		in.CacheControl = aws.String(o.meta.CacheControl)
	}
	if o.meta.ContentEncoding != "" {
		in.ContentEncoding = aws.String(o.meta.ContentEncoding)
	}
	if o.meta.ContentDisposition != "" {
		in.ContentDisposition = aws.String(o.meta.ContentDisposition)
	}
	in.Metadata = o.meta.Metadata
	if _, err := e.admin.PutObject(ctx, in); err != nil {
		t.Fatalf("put %q: %v", key, err)
	}
}

// putMultipart uploads a large object in 3 parts (its ETag is then not an MD5, as on R2).
func (e *env) putMultipart(t *testing.T, bucket, key string, o obj) {
	t.Helper()
	ctx := context.Background()
	cr, err := e.admin.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: aws.String(bucket), Key: aws.String(key),
		ContentType: aws.String(o.meta.ContentType), Metadata: o.meta.Metadata})
	if err != nil {
		t.Fatal(err)
	}
	ps := (len(o.data)/3 + 1) &^ 0xfffff
	ps = max(ps+1<<20, 5<<20)
	var parts []types.CompletedPart
	for i, off := int32(1), 0; off < len(o.data); i, off = i+1, off+ps {
		end := min(off+ps, len(o.data))
		up, err := e.admin.UploadPart(ctx, &s3.UploadPartInput{Bucket: aws.String(bucket), Key: aws.String(key), UploadId: cr.UploadId, PartNumber: aws.Int32(i), Body: bytes.NewReader(o.data[off:end])})
		if err != nil {
			t.Fatal(err)
		}
		parts = append(parts, types.CompletedPart{ETag: up.ETag, PartNumber: aws.Int32(i)})
	}
	if _, err := e.admin.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{Bucket: aws.String(bucket), Key: aws.String(key), UploadId: cr.UploadId,
		MultipartUpload: &types.CompletedMultipartUpload{Parts: parts}}); err != nil {
		t.Fatal(err)
	}
}

func (e *env) del(t *testing.T, bucket, key string) {
	t.Helper()
	if _, err := e.admin.DeleteObject(context.Background(), &s3.DeleteObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)}); err != nil {
		t.Fatal(err)
	}
}

func content(rng *rand.Rand, i int) obj {
	var data []byte
	switch {
	case i%10 == 0:
		data = nil // zero-byte
	case i%3 == 0:
		data = make([]byte, rng.Intn(64<<10))
		rng.Read(data)
	default:
		var b bytes.Buffer
		for b.Len() < rng.Intn(16<<10)+10 {
			fmt.Fprintf(&b, `{"id":%d,"name":"user %d","score":%.2f,"tags":["a","b"]}`+"\n", rng.Intn(1e6), rng.Intn(1e4), rng.Float64()*100)
		}
		data = b.Bytes()
	}
	o := obj{data: data}
	switch i % 4 {
	case 0:
		o.meta.ContentType = "application/json"
	case 1:
		o.meta = manifest.ObjectMeta{ContentType: "text/plain; charset=utf-8", CacheControl: "max-age=60", ContentDisposition: `attachment; filename="x.txt"`,
			Metadata: map[string]string{"owner": fmt.Sprintf("team-%d", i%7), "sha": "abc"}}
	case 2:
		o.meta = manifest.ObjectMeta{ContentType: "application/octet-stream", ContentEncoding: "identity", Metadata: map[string]string{"n": fmt.Sprint(i)}}
	}
	return o
}

// awkwardKeys are the unusual keys the test server (versitygw, posix backend) can hold; keys it
// cannot ("a" beside "a/", "..", one 1024-byte path element) are covered by TestDirRestoreAwkwardKeys.
func awkwardKeys() []string {
	long := strings.Repeat("k/", 511) + "z" // 1024 bytes
	return []string{"ünïcødé/ファイル 1.txt", "with space/and more spaces.txt", "100% done.json", "%41%2F", "..a", "a..b/..c",
		"tab\tkey", "q?uery#hash&x=1", "star*[x]", long, "dirmarker/", "dirmarker/child", "emoji/🙂.json"}
}

func TestEndToEndBucketStory(t *testing.T) {
	defer r2.SetBackupWindow(4)() // items, names and the index cross window boundaries
	e := newEnv(t, "src", "empty1", "empty2", "conflict")
	ctx := context.Background()
	rng := rand.New(rand.NewSource(1))
	model := map[string]obj{}
	var keys []string
	for i, k := range awkwardKeys() {
		o := content(rng, i+1)
		if strings.HasSuffix(k, "/") {
			o.data = nil
		}
		model[k] = o
		keys = append(keys, k)
	}
	for i := len(keys); i < 2000-1; i++ {
		k := fmt.Sprintf("data/%02d/obj-%05d.json", i%37, i)
		model[k] = content(rng, i)
		keys = append(keys, k)
	}
	bigSize := 100 << 20
	if testing.Short() {
		bigSize = 12 << 20
	}
	big := obj{data: make([]byte, bigSize), meta: manifest.ObjectMeta{ContentType: "application/x-tar", Metadata: map[string]string{"kind": "big"}}}
	rng.Read(big.data[:bigSize/2])
	copy(big.data[bigSize/2:], bytes.Repeat([]byte("INSERT INTO t VALUES(1,'text');\n"), bigSize/64+1))
	model["big/archive.tar"] = big
	keys = append(keys, "big/archive.tar")
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	for _, k := range keys {
		if k == "big/archive.tar" {
			e.putMultipart(t, "src", k, model[k])
			continue
		}
		wg.Add(1)
		sem <- struct{}{}
		go func(k string) {
			defer wg.Done()
			defer func() { <-sem }()
			e.put(t, "src", k, model[k])
		}(k)
	}
	wg.Wait()
	snap1 := cloneModel(model)

	m1, st1, err := e.backup(ctx, r2.BackupOptions{Bucket: "src"})
	if err != nil {
		t.Fatal(err)
	}
	if st1.Objects != 2000 || st1.Reused != 0 || st1.Skipped != 0 {
		t.Fatalf("first backup stats %+v", st1)
	}
	src1, _ := m1.SourceByName(r2.Component, "src")
	if src1.Items != 2000 || src1.Index == "" {
		t.Fatalf("source summary %+v", src1)
	}

	// No change: nothing is downloaded.
	m0, st0, err := e.backup(ctx, r2.BackupOptions{Bucket: "src"})
	if err != nil {
		t.Fatal(err)
	}
	if st0.GETs != 0 || st0.Reused != 2000 || st0.Fetched != 0 {
		t.Fatalf("no-change incremental: %+v", st0)
	}
	if m0.StoredSize != 0 || len(m0.Segments) == 0 {
		t.Fatalf("no-change incremental wrote %d bytes, references %d segments", m0.StoredSize, len(m0.Segments))
	}

	// Change 5 %, delete 3 %, add 2 %.
	var changed, deleted int
	for i, k := range keys {
		if k == "big/archive.tar" {
			continue
		}
		switch {
		case i%20 == 7 && changed < 100:
			o := content(rng, i+1)
			o.data = append(o.data, []byte(" changed")...)
			model[k] = o
			e.put(t, "src", k, o)
			changed++
		case i%33 == 5 && deleted < 60 && !strings.HasSuffix(k, "/") && k != "dirmarker/child":
			delete(model, k)
			e.del(t, "src", k)
			deleted++
		}
	}
	for i := 0; i < 40; i++ {
		k := fmt.Sprintf("added/%03d.bin", i)
		model[k] = content(rng, i)
		e.put(t, "src", k, model[k])
	}
	m2, st2, err := e.backup(ctx, r2.BackupOptions{Bucket: "src"})
	if err != nil {
		t.Fatal(err)
	}
	if st2.Fetched != int64(changed+40) || st2.Objects != int64(len(model)) || st2.Reused != int64(len(model)-changed-40) {
		t.Fatalf("incremental after changes: %+v (changed %d, deleted %d, model %d)", st2, changed, deleted, len(model))
	}

	// Restore each snapshot into an empty bucket and into a directory; compare everything.
	for _, c := range []struct {
		m      *manifest.Manifest
		model  map[string]obj
		bucket string
	}{{m1, snap1, "empty1"}, {m2, model, "empty2"}} {
		cat, err := c.m.OpenCatalogue(e.ids)
		if err != nil {
			t.Fatal(err)
		}
		items, err := r2.Select(cat, "src", "", nil)
		if err != nil {
			t.Fatal(err)
		}
		plan, err := r2.PlanRestore(ctx, e.cl, items, r2.Target{Bucket: c.bucket})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := r2.Restore(ctx, e.cl, r2.Opener(e.eng.Opener(c.m, e.ids)), plan, 4); err != nil {
			t.Fatal(err)
		}
		e.compareBucket(t, c.bucket, "", c.model)
		dir := t.TempDir()
		plan, err = r2.PlanRestore(ctx, nil, items, r2.Target{Dir: dir})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := r2.Restore(ctx, nil, r2.Opener(e.eng.Opener(c.m, e.ids)), plan, 4); err != nil {
			t.Fatal(err)
		}
		compareDir(t, dir, c.model)
	}

	// A deleted object is absent from the new snapshot and restorable from the old one.
	for k := range snap1 {
		if _, ok := model[k]; !ok {
			cat2, _ := m2.OpenCatalogue(e.ids)
			if _, err := r2.Select(cat2, "src", "", []string{k}); !errors.Is(err, r2.ErrNotInSnapshot) {
				t.Fatalf("deleted %q still in the new snapshot: %v", k, err)
			}
			break
		}
	}

	// One object: only its byte ranges are read from the repository.
	cat, _ := m2.OpenCatalogue(e.ids)
	one, err := r2.Select(cat, "src", "", []string{"100% done.json"})
	if err != nil {
		t.Fatal(err)
	}
	plan, err := r2.PlanRestore(ctx, e.cl, one, r2.Target{Bucket: "src", Prefix: "restored/"})
	if err != nil {
		t.Fatal(err)
	}
	before := e.st.read.Load()
	if _, err := r2.Restore(ctx, e.cl, r2.Opener(e.eng.Opener(m2, e.ids)), plan, 4); err != nil {
		t.Fatal(err)
	}
	read := e.st.read.Load() - before
	var frames int64
	for _, c := range one[0].Chunks {
		frames += c.Length
	}
	if read > frames+3*(64<<10)+4096 || read*50 > m1.StoredSize {
		t.Fatalf("one-object restore read %d bytes (frames %d, repository %d)", read, frames, m1.StoredSize)
	}
	t.Logf("one-object restore read %d bytes of %d stored", read, m1.StoredSize)
	e.compareBucket(t, "src", "restored/", map[string]obj{"restored/100% done.json": model["100% done.json"]})

	// One prefix, to another bucket under another prefix.
	sub, err := r2.Select(cat, "src", "data/03/", nil)
	if err != nil {
		t.Fatal(err)
	}
	plan, err = r2.PlanRestore(ctx, e.cl, sub, r2.Target{Bucket: "conflict", Prefix: "p/", StripPrefix: "data/03/"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r2.Restore(ctx, e.cl, r2.Opener(e.eng.Opener(m2, e.ids)), plan, 4); err != nil {
		t.Fatal(err)
	}
	want := map[string]obj{}
	for k, o := range model {
		if strings.HasPrefix(k, "data/03/") {
			want["p/"+strings.TrimPrefix(k, "data/03/")] = o
		}
	}
	e.compareBucket(t, "conflict", "p/", want)

	// Overwrite policy: a target holding different data refuses the whole restore under fail.
	var victim string
	for _, it := range sub {
		if it.Size > 0 {
			victim = "p/" + strings.TrimPrefix(it.Object.Key, "data/03/")
			break
		}
	}
	e.put(t, "conflict", victim, obj{data: []byte("local edit")})
	e.del(t, "conflict", "p/"+strings.TrimPrefix(sub[len(sub)-1].Object.Key, "data/03/"))
	plan, err = r2.PlanRestore(ctx, e.cl, sub, r2.Target{Bucket: "conflict", Prefix: "p/", StripPrefix: "data/03/"})
	if err != nil {
		t.Fatal(err)
	}
	if plan.Conflicts != 1 || plan.Puts < 1 {
		t.Fatalf("plan: %d conflicts, %d puts", plan.Conflicts, plan.Puts)
	}
	if _, err := r2.Restore(ctx, e.cl, r2.Opener(e.eng.Opener(m2, e.ids)), plan, 4); !errors.Is(err, r2.ErrConflict) {
		t.Fatalf("restore over different data: %v, want ErrConflict", err)
	}
	if got := e.get(t, "conflict", victim); string(got) != "local edit" {
		t.Fatal("conflicting object was changed")
	}
	plan, _ = r2.PlanRestore(ctx, e.cl, sub, r2.Target{Bucket: "conflict", Prefix: "p/", StripPrefix: "data/03/", Overwrite: r2.OverwriteSkip})
	res, err := r2.Restore(ctx, e.cl, r2.Opener(e.eng.Opener(m2, e.ids)), plan, 4)
	if err != nil || res.Restored != 1 || res.Skipped != 1 {
		t.Fatalf("skip: %+v %v", res, err)
	}
	if got := e.get(t, "conflict", victim); string(got) != "local edit" {
		t.Fatal("skip replaced the object")
	}
	plan, _ = r2.PlanRestore(ctx, e.cl, sub, r2.Target{Bucket: "conflict", Prefix: "p/", StripPrefix: "data/03/", Overwrite: r2.OverwriteOverwrite})
	if _, err := r2.Restore(ctx, e.cl, r2.Opener(e.eng.Opener(m2, e.ids)), plan, 4); err != nil {
		t.Fatal(err)
	}
	e.compareBucket(t, "conflict", "p/", want)

	// verify reads every segment, old ones included.
	if _, err := e.eng.Verify(ctx, m2, engine.VerifyOptions{ReadData: true, Identities: e.ids}); err != nil {
		t.Fatal(err)
	}
}

func cloneModel(m map[string]obj) map[string]obj {
	out := make(map[string]obj, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

func (e *env) get(t *testing.T, bucket, key string) []byte {
	t.Helper()
	out, err := e.admin.GetObject(context.Background(), &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
	if err != nil {
		t.Fatalf("get %s/%q: %v", bucket, key, err)
	}
	defer out.Body.Close()
	b, err := io.ReadAll(out.Body)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func (e *env) compareBucket(t *testing.T, bucket, prefix string, model map[string]obj) {
	t.Helper()
	ctx := context.Background()
	var got []string
	if err := e.cl.List(ctx, bucket, prefix, func(o r2.Object) error { got = append(got, o.Key); return nil }); err != nil {
		t.Fatal(err)
	}
	var want []string
	for k := range model {
		want = append(want, k)
	}
	sort.Strings(want)
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("bucket %s has %d keys, want %d", bucket, len(got), len(want))
	}
	sem := make(chan struct{}, 8)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var bad []string
	for _, k := range want {
		wg.Add(1)
		sem <- struct{}{}
		go func(k string) {
			defer wg.Done()
			defer func() { <-sem }()
			body, _, meta, err := e.cl.Get(ctx, bucket, k)
			if err != nil {
				mu.Lock()
				bad = append(bad, fmt.Sprintf("%q: %v", k, err))
				mu.Unlock()
				return
			}
			b, err := io.ReadAll(body)
			body.Close()
			if msg := diffObject(model[k], b, meta); err != nil || msg != "" {
				mu.Lock()
				bad = append(bad, fmt.Sprintf("%q: %v %s", k, err, msg))
				mu.Unlock()
			}
		}(k)
	}
	wg.Wait()
	if len(bad) > 0 {
		t.Fatalf("bucket %s: %d object(s) differ: %s", bucket, len(bad), strings.Join(bad[:min(5, len(bad))], "; "))
	}
}

func diffObject(o obj, data []byte, m manifest.ObjectMeta) string {
	var d []string
	if !bytes.Equal(o.data, data) {
		d = append(d, fmt.Sprintf("bytes differ (%d vs %d)", len(data), len(o.data)))
	}
	ct := o.meta.ContentType
	if ct == "" {
		ct = m.ContentType // the server's default type is whatever it is on both sides
	}
	if m.ContentType != ct || m.CacheControl != o.meta.CacheControl || m.ContentEncoding != o.meta.ContentEncoding || m.ContentDisposition != o.meta.ContentDisposition {
		d = append(d, fmt.Sprintf("headers %+v", m))
	}
	if len(m.Metadata) != len(o.meta.Metadata) {
		d = append(d, fmt.Sprintf("metadata %v, want %v", m.Metadata, o.meta.Metadata))
	}
	for k, v := range o.meta.Metadata {
		if m.Metadata[k] != v {
			d = append(d, fmt.Sprintf("metadata %s=%q, want %q", k, m.Metadata[k], v))
		}
	}
	return strings.Join(d, ", ")
}

func compareDir(t *testing.T, dir string, model map[string]obj) {
	t.Helper()
	f, err := os.Open(filepath.Join(dir, r2.DirIndexName))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	seen := map[string]bool{}
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var de r2.DirEntry
		if err := json.Unmarshal(sc.Bytes(), &de); err != nil {
			t.Fatal(err)
		}
		o, ok := model[de.Key]
		if !ok {
			t.Fatalf("directory restore has unexpected key %q", de.Key)
		}
		seen[de.Key] = true
		b, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(de.Path)))
		if err != nil {
			t.Fatal(err)
		}
		if msg := diffObject(o, b, de.ObjectMeta); msg != "" {
			t.Fatalf("%q in %s: %s", de.Key, de.Path, msg)
		}
	}
	if len(seen) != len(model) {
		t.Fatalf("directory has %d objects, want %d", len(seen), len(model))
	}
}

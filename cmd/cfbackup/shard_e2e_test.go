package main_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"math/rand"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/cfbackup/cfbackup/internal/testutil/s3server"
	"github.com/cfbackup/cfbackup/pkg/engine"
)

// shardBed is one S3 server holding the R2 bucket "src" and the repositories (one per prefix of
// bucket "repo"), and the identity every repository encrypts to.
type shardBed struct {
	t   *testing.T
	srv *s3server.Server
	e   *env
	key string
	rcp string
}

func newShardBed(t *testing.T) *shardBed {
	srv := s3server.Start(t)
	srv.CreateBucket(t, "src", false)
	srv.CreateBucket(t, "repo", false)
	// 360 objects of 1 KiB to 160 KiB, some with metadata, some keys sharing prefixes.
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	for i := 0; i < 360; i++ {
		wg.Add(1)
		sem <- struct{}{}
		go func(i int) {
			defer wg.Done()
			defer func() { <-sem }()
			r := rand.New(rand.NewSource(int64(i)))
			b := make([]byte, 1<<10+r.Intn(160<<10))
			r.Read(b)
			in := &s3.PutObjectInput{Bucket: aws.String("src"), Key: aws.String(fmt.Sprintf("d%d/obj-%04d.bin", i%7, i)), Body: bytes.NewReader(b)}
			if i%3 == 0 {
				in.Metadata = map[string]string{"owner": fmt.Sprint("team-", i%5)}
				in.ContentType = aws.String("application/octet-stream")
			}
			if _, err := srv.Client().PutObject(context.Background(), in); err != nil {
				t.Error(err)
			}
		}(i)
	}
	wg.Wait()
	e := newEnv(t, &emu{}, "CFBACKUP_SEGMENT_SIZE=1048576", "CFBACKUP_R2_ENDPOINT="+srv.Endpoint,
		"CFBACKUP_R2_ACCESS_KEY_ID="+srv.AccessKey, "CFBACKUP_R2_SECRET_ACCESS_KEY="+srv.SecretKey,
		"CFBACKUP_S3_ENDPOINT="+srv.Endpoint, "AWS_ACCESS_KEY_ID="+srv.AccessKey, "AWS_SECRET_ACCESS_KEY="+srv.SecretKey, "AWS_REGION="+srv.Region)
	key := filepath.Join(e.dir, "key.txt")
	rcp := strings.TrimSpace(e.must("key", "generate", "-o", key))
	return &shardBed{t: t, srv: srv, e: e, key: key, rcp: rcp}
}

// repo initialises the repository s3://repo/<prefix> and returns the variables that select it.
func (b *shardBed) repo(prefix string) []string {
	vars := []string{"CFBACKUP_REPOSITORY=s3://repo/" + prefix, "CFBACKUP_WRITER_KEY_FILE=" + filepath.Join(b.e.dir, prefix+".writer.key"), "CFBACKUP_IDENTITY_FILE=" + b.key}
	b.must(vars, "init", "--recipient", b.rcp)
	return vars
}

func (b *shardBed) must(vars []string, args ...string) string {
	b.t.Helper()
	out, errs, code := b.e.runEnv(vars, args...)
	if code != 0 {
		b.t.Fatalf("cfbackup %v: exit %d\nstdout: %s\nstderr: %s", args, code, out, errs)
	}
	return out
}

func shardArgs(i, n int, run string) []string {
	return []string{"backup", "--component", "r2", "--r2-bucket", "src", "--no-progress", "--shard", fmt.Sprintf("%d/%d", i, n), "--run", run}
}

// shards runs shards of a run as parallel processes and fails unless each exits 0.
func (b *shardBed) shards(vars []string, n int, run string, which ...int) {
	b.t.Helper()
	var wg sync.WaitGroup
	errs := make([]string, n+1)
	for _, i := range which {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			out, stderr, code := b.e.runEnv(vars, shardArgs(i, n, run)...)
			if code != 0 {
				errs[i] = fmt.Sprintf("shard %d/%d of %s: exit %d\n%s%s", i, n, run, code, out, stderr)
			}
		}(i)
	}
	wg.Wait()
	for _, e := range errs {
		if e != "" {
			b.t.Fatal(e)
		}
	}
}

func all(n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = i + 1
	}
	return out
}

// restored restores a snapshot of the repository into a fresh directory and returns every file's
// SHA-256 by path, after verify --read-data passed on it.
func (b *shardBed) restored(vars []string, snapshot string) map[string]string {
	b.t.Helper()
	if out := b.must(vars, "verify", snapshot, "--read-data", "--no-progress"); !strings.Contains(out, "OK (read-data)") {
		b.t.Fatalf("verify %s: %s", snapshot, out)
	}
	dir := b.t.TempDir()
	b.must(vars, "restore", snapshot, "--component", "r2", "--r2-bucket", "src", "--to-dir", dir, "--no-progress")
	return hashTree(b.t, dir)
}

func hashTree(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if rel == "%cfbackup-objects.jsonl" { // one line per object, in catalogue order: compare as a set
			lines := strings.Split(strings.TrimSpace(string(data)), "\n")
			slices.Sort(lines)
			data = []byte(strings.Join(lines, "\n"))
		}
		h := sha256.Sum256(data)
		out[rel] = hex.EncodeToString(h[:])
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func sameTree(t *testing.T, what string, got, want map[string]string) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d objects, the single-process backup has %d", what, len(got), len(want))
	}
	for k, v := range want {
		if got[k] != v {
			t.Fatalf("%s: object %s differs from the single-process backup's", what, k)
		}
	}
}

// snapshotIDs lists the repository's snapshot ids.
func (b *shardBed) snapshotIDs(vars []string) []string {
	b.t.Helper()
	var l []listEntry
	if err := json.Unmarshal([]byte(b.must(vars, "list", "--json")), &l); err != nil {
		b.t.Fatalf("list --json: %v", err)
	}
	ids := make([]string, len(l))
	for i, e := range l {
		ids[i] = e.ID
	}
	return ids
}

func (b *shardBed) count(prefix string) int {
	b.t.Helper()
	out, err := b.srv.Client().ListObjectsV2(context.Background(), &s3.ListObjectsV2Input{Bucket: aws.String("repo"), Prefix: aws.String(prefix)})
	if err != nil {
		b.t.Fatal(err)
	}
	return len(out.Contents)
}

// TestShardedBackupProcesses runs sharded R2 backups as real processes against one S3 repository and
// compares each merged snapshot with a single-process backup of the same bucket: same objects, same
// bytes (by restore), verify --read-data passing. Also with a shard killed and rerun, with two whole
// runs racing, and with incomplete, mixed and forged sets.
func TestShardedBackupProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("builds binaries and runs an S3 server")
	}
	b := newShardBed(t)
	single := b.repo("single")
	start := time.Now()
	b.must(single, "backup", "--component", "r2", "--r2-bucket", "src", "--no-progress")
	singleTook := time.Since(start)
	want := b.restored(single, "latest")
	if len(want) != 361 { // and the metadata file
		t.Fatalf("single-process backup restored %d files, want 360 objects and their metadata", len(want))
	}

	t.Run("parallel", func(t *testing.T) {
		vars := b.repo("parallel")
		start := time.Now()
		b.shards(vars, 3, "run-1", all(3)...)
		t.Logf("3 shard processes took %v; one process took %v (ratio %.2f; 2 shared cores)", time.Since(start), singleTook, float64(time.Since(start))/float64(singleTook))
		ids := b.snapshotIDs(vars)
		if len(ids) != 1 || ids[0] != engine.RunSnapshotID("run-1") {
			t.Fatalf("snapshots %v, want exactly %s", ids, engine.RunSnapshotID("run-1"))
		}
		if n := b.count("parallel/shards/"); n != 0 {
			t.Fatalf("%d partial manifest(s) left after the merge", n)
		}
		sameTree(t, "merged snapshot", b.restored(vars, "latest"), want)
		// restore --shard I/3 by 3 processes at once, each into its own directory: together they
		// restore every object once (and the metadata file's lines between them).
		union := map[string]string{}
		var lines []string
		var wg sync.WaitGroup
		dirs := make([]string, 4)
		for i := 1; i <= 3; i++ {
			dirs[i] = t.TempDir()
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				if out, errs, code := b.e.runEnv(vars, "restore", "latest", "--component", "r2", "--r2-bucket", "src", "--to-dir", dirs[i], "--shard", fmt.Sprintf("%d/3", i), "--no-progress"); code != 0 {
					t.Errorf("restore --shard %d/3: exit %d\n%s%s", i, code, out, errs)
				}
			}(i)
		}
		wg.Wait()
		for i := 1; i <= 3; i++ {
			for k, v := range hashTree(t, dirs[i]) {
				if k == "%cfbackup-objects.jsonl" {
					continue
				}
				if _, dup := union[k]; dup || engine.ShardOf(filepath.ToSlash(k), 3) != i {
					t.Fatalf("restore --shard %d/3 wrote %s (dup %v, its shard %d)", i, k, dup, engine.ShardOf(filepath.ToSlash(k), 3))
				}
				union[k] = v
			}
			raw, err := os.ReadFile(filepath.Join(dirs[i], "%cfbackup-objects.jsonl"))
			if err != nil {
				t.Fatal(err)
			}
			lines = append(lines, strings.Split(strings.TrimSpace(string(raw)), "\n")...)
		}
		slices.Sort(lines)
		sum := sha256.Sum256([]byte(strings.Join(lines, "\n")))
		union["%cfbackup-objects.jsonl"] = hex.EncodeToString(sum[:])
		sameTree(t, "restore --shard 1/3 + 2/3 + 3/3", union, want)
	})

	t.Run("killed shard rerun", func(t *testing.T) {
		vars := b.repo("killed")
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		var stderr syncBuffer
		cmd := b.e.command(ctx, shardArgs(2, 3, "run-k"), vars...)
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan struct{})
		go func() { _ = cmd.Wait(); close(exited) }()
		for b.count("killed/segments/") < 2 {
			select {
			case <-exited:
				t.Fatalf("shard 2 finished before it could be killed:\n%s", stderr.String())
			case <-time.After(10 * time.Millisecond):
			}
		}
		if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		<-exited
		if n := b.count("killed/shards/"); n != 0 {
			t.Fatalf("a killed shard left %d partial(s)", n)
		}
		b.shards(vars, 3, "run-k", 1, 3)
		if ids := b.snapshotIDs(vars); len(ids) != 0 {
			t.Fatalf("snapshots %v before shard 2 reran", ids)
		}
		b.shards(vars, 3, "run-k", 2)
		ids := b.snapshotIDs(vars)
		if len(ids) != 1 {
			t.Fatalf("snapshots %v after the rerun", ids)
		}
		sameTree(t, "merged after a killed shard", b.restored(vars, "latest"), want)
	})

	t.Run("two runs racing", func(t *testing.T) {
		same := b.repo("race-same")
		var wg sync.WaitGroup
		for range 2 {
			wg.Add(1)
			go func() { defer wg.Done(); b.shards(same, 3, "run-r", all(3)...) }()
		}
		wg.Wait()
		if ids := b.snapshotIDs(same); len(ids) != 1 || ids[0] != engine.RunSnapshotID("run-r") {
			t.Fatalf("two racing runs of one id: snapshots %v, want one", ids)
		}
		sameTree(t, "merged by racing runs", b.restored(same, "latest"), want)

		diff := b.repo("race-diff")
		for _, run := range []string{"run-a", "run-b"} {
			wg.Add(1)
			go func() { defer wg.Done(); b.shards(diff, 2, run, all(2)...) }()
		}
		wg.Wait()
		ids := b.snapshotIDs(diff)
		if len(ids) != 2 {
			t.Fatalf("two racing runs of different ids: snapshots %v, want two", ids)
		}
		for _, id := range ids {
			sameTree(t, "snapshot "+id, b.restored(diff, id), want)
		}
	})

	t.Run("refused sets", func(t *testing.T) {
		vars := b.repo("refused")
		noID := append(append([]string{}, vars...), "CFBACKUP_IDENTITY_FILE=")
		b.shards(noID, 3, "run-x", 1, 2)
		_, errs, code := b.e.runEnv(vars, "shard", "merge", "--run", "run-x", "--shards", "3")
		if code != 13 || !strings.Contains(errs, "missing: 3") {
			t.Fatalf("incomplete set: exit %d, want 13\n%s", code, errs)
		}
		_, errs, code = b.e.runEnv(vars, shardArgs(1, 2, "run-x")...)
		if code != 8 || !strings.Contains(errs, "partials of 3 shard") {
			t.Fatalf("mixed shard counts: exit %d, want 8\n%s", code, errs)
		}
		// A forged partial: shard 1's, claiming to be shard 3 (its MAC no longer matches).
		c := b.srv.Client()
		got, err := c.GetObject(context.Background(), &s3.GetObjectInput{Bucket: aws.String("repo"), Key: aws.String("refused/shards/run-x/1-of-3.json")})
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := io.ReadAll(got.Body)
		got.Body.Close()
		forged := bytes.Replace(raw, []byte(`"shard": 1,`), []byte(`"shard": 3,`), 1)
		if bytes.Equal(forged, raw) {
			t.Fatalf("partial has no shard field to forge: %.200s", raw)
		}
		if _, err := c.PutObject(context.Background(), &s3.PutObjectInput{Bucket: aws.String("repo"), Key: aws.String("refused/shards/run-x/3-of-3.json"), Body: bytes.NewReader(forged)}); err != nil {
			t.Fatal(err)
		}
		_, errs, code = b.e.runEnv(vars, "shard", "merge", "--run", "run-x", "--shards", "3")
		if code != 6 || !strings.Contains(errs, "does not authenticate") {
			t.Fatalf("forged partial: exit %d, want 6\n%s", code, errs)
		}
		if ids := b.snapshotIDs(vars); len(ids) != 0 {
			t.Fatalf("a refused merge wrote snapshots %v", ids)
		}
	})
}

// TestShardedBackupBenchmark times a single-process backup of the bucket against 3 shard processes
// (merge included), alternating, each into a fresh repository, CFBACKUP_BENCH_SHARDS rounds:
//
//	CFBACKUP_BENCH_SHARDS=3 go test ./cmd/cfbackup -run TestShardedBackupBenchmark -v
func TestShardedBackupBenchmark(t *testing.T) {
	rounds, _ := strconv.Atoi(os.Getenv("CFBACKUP_BENCH_SHARDS"))
	if testing.Short() || rounds < 1 {
		t.Skip("set CFBACKUP_BENCH_SHARDS=ROUNDS")
	}
	b := newShardBed(t)
	var ratios []float64
	for r := range rounds {
		vars := b.repo(fmt.Sprintf("bench-single-%d", r))
		start := time.Now()
		b.must(vars, "backup", "--component", "r2", "--r2-bucket", "src", "--no-progress")
		single := time.Since(start)
		vars = b.repo(fmt.Sprintf("bench-sharded-%d", r))
		start = time.Now()
		b.shards(vars, 3, "bench", all(3)...)
		sharded := time.Since(start)
		ratios = append(ratios, float64(sharded)/float64(single))
		t.Logf("round %d: one process %v, 3 shards %v, ratio %.2f", r+1, single.Round(time.Millisecond), sharded.Round(time.Millisecond), ratios[r])
	}
	slices.Sort(ratios)
	t.Logf("median ratio sharded/single over %d rounds: %.2f", rounds, ratios[len(ratios)/2])
}

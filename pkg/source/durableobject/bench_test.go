package durableobject_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"filippo.io/age"

	"github.com/cfbackup/cfbackup/internal/testutil/workerd"
	"github.com/cfbackup/cfbackup/pkg/archive"
	"github.com/cfbackup/cfbackup/pkg/cloudflare"
	"github.com/cfbackup/cfbackup/pkg/manifest"
	"github.com/cfbackup/cfbackup/pkg/source/durableobject"
	"github.com/cfbackup/cfbackup/pkg/store/mem"
)

// benchConcurrency is the objects-at-once setting measured (CFBACKUP_BENCH_DO_CONCURRENCY, default 8).
func benchConcurrency() int {
	if n, err := strconv.Atoi(os.Getenv("CFBACKUP_BENCH_DO_CONCURRENCY")); err == nil && n > 0 {
		return n
	}
	return 8
}

func mustGet(b testing.TB, url string) []byte {
	resp, err := http.Get(url)
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		b.Fatalf("GET %s: %d %s", url, resp.StatusCode, body)
	}
	return body
}

// roundTrip backs the objects up into a real encrypted archive (in-memory store) and restores them,
// reporting both rates.
func roundTrip(b *testing.B, w *workerd.Worker, ids []string, conc int, batch bool) {
	c, err := durableobject.NewClient(w.URL, secret)
	if err != nil {
		b.Fatal(err)
	}
	c.NoBatch = !batch
	id, _ := age.GenerateX25519Identity()
	st := mem.New()
	ns := cloudflare.Namespace{ID: "bench", Class: "SessionStore", Name: "sessions"}
	for i := 0; i < b.N; i++ {
		aw, err := archive.NewWriter(context.Background(), archive.WriterOptions{Store: st, Recipients: []age.Recipient{id.Recipient()}})
		if err != nil {
			b.Fatal(err)
		}
		t0, r0, g0 := time.Now(), w.Stat(), goCPU()
		src, items, err := durableobject.Backup(context.Background(), c, aw, ns, ids, durableobject.BackupOptions{Concurrency: conc})
		if err != nil {
			b.Fatal(err)
		}
		segs, err := aw.Close()
		if err != nil {
			b.Fatal(err)
		}
		backup, r1, g1 := time.Since(t0), w.Stat(), goCPU()
		m := &manifest.Manifest{Segments: segs}
		// As the engine opens items (engine.Opener): archive.NewOpener remembers segment heads and
		// unwrapped file keys across items.
		op := archive.NewOpener(st, m.SegmentMap(), []age.Identity{id})
		open := op.Open
		t1 := time.Now()
		chunk, _ := strconv.Atoi(os.Getenv("CFBACKUP_BENCH_DO_CHUNK_BYTES")) // import chunk size (default DefaultChunkBytes)
		if _, err := durableobject.Restore(context.Background(), c, "SessionStore", items, open, durableobject.RestoreOptions{Concurrency: conc, ChunkBytes: chunk}); err != nil {
			b.Fatal(err)
		}
		restore, r2, g2 := time.Since(t1), w.Stat(), goCPU()
		mb := float64(src.Size) / (1 << 20)
		b.ReportMetric(float64(len(ids))/backup.Seconds(), "backup-objects/s")
		b.ReportMetric(mb/backup.Seconds(), "backup-MB/s")
		b.ReportMetric(float64(len(ids))/restore.Seconds(), "restore-objects/s")
		b.ReportMetric(mb/restore.Seconds(), "restore-MB/s")
		b.ReportMetric(float64(conc), "concurrency")
		// Where the time went: CPU seconds of the runtime (node+workerd) and of this process per phase.
		b.ReportMetric((r1.CPU - r0.CPU).Seconds(), "backup-runtime-cpu-s")
		b.ReportMetric((g1 - g0).Seconds(), "backup-go-cpu-s")
		b.ReportMetric((r2.CPU - r1.CPU).Seconds(), "restore-runtime-cpu-s")
		b.ReportMetric((g2 - g1).Seconds(), "restore-go-cpu-s")
		b.ReportMetric(float64(r2.WorkerdHWM)/(1<<20), "workerd-hwm-MiB")
		b.ReportMetric(float64(goHWM())/(1<<20), "go-hwm-MiB")
		b.ReportMetric(mb, "item-MB")
	}
}

// goCPU is this process's user+system CPU time.
func goCPU() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// goHWM is this process's peak resident set (bytes).
func goHWM() int64 {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return ru.Maxrss << 10
}

// BenchmarkSmallObjects: sub-benchmarks single (one request per object) and batch (MaxBatchItems
// objects per request), alternating CFBACKUP_BENCH_DO_ROUNDS times (default 1) on the same
// 10,000 small SQLite-backed objects (KV values of mixed types, a table, an
// alarm; about 2 KB of NDJSON each). Run: go test -run '^$' -bench SmallObjects -benchtime 1x ./pkg/source/durableobject/
func BenchmarkSmallObjects(b *testing.B) {
	w := workerd.Start(b, workerd.Options{Secret: secret})
	n := 10000
	if v, err := strconv.Atoi(os.Getenv("CFBACKUP_BENCH_DO_OBJECTS")); err == nil && v > 0 {
		n = v
	}
	ids := make([]string, n)
	var wg sync.WaitGroup
	next := make(chan int)
	for k := 0; k < 8; k++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				mustGet(b, fmt.Sprintf("%s/sessions/name:bench-%d/__test/seed?i=%d", w.URL, i, i))
				ids[i] = string(mustGet(b, fmt.Sprintf("%s/sessions/name:bench-%d/__test/inspect", w.URL, i))[7:71])
			}
		}()
	}
	for i := 0; i < n; i++ {
		next <- i
	}
	close(next)
	wg.Wait()
	b.ResetTimer()
	// single (one request per object, as before batches) and batch alternate, on the same objects.
	rounds := 1
	if v, err := strconv.Atoi(os.Getenv("CFBACKUP_BENCH_DO_ROUNDS")); err == nil && v > 0 {
		rounds = v
	}
	for r := 0; r < rounds; r++ {
		for _, batch := range []bool{false, true} {
			if m := os.Getenv("CFBACKUP_BENCH_DO_MODE"); m != "" && m != map[bool]string{false: "single", true: "batch"}[batch] {
				continue
			}
			b.Run(map[bool]string{false: "single", true: "batch"}[batch], func(b *testing.B) { roundTrip(b, w, ids, benchConcurrency(), batch) })
		}
	}
}

// BenchmarkLargeObject: one object holding 50 MiB of SQL rows (1 MiB BLOBs), exported in 4 MiB pages
// and imported in 4 MiB chunks; the restored object's digest must match.
func BenchmarkLargeObject(b *testing.B) {
	w := workerd.Start(b, workerd.Options{Secret: secret})
	id := string(mustGet(b, w.URL+"/sessions/name:big/__test/fill?mb=50")) // its ID
	before := mustGet(b, w.URL+"/sessions/"+id+"/__test/digest")
	b.ResetTimer()
	roundTrip(b, w, []string{id}, 1, true)
	b.StopTimer()
	if after := mustGet(b, w.URL+"/sessions/"+id+"/__test/digest"); string(after) != string(before) {
		b.Fatalf("digest after restore %s, before %s", after, before)
	}
}

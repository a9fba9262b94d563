package archive

import (
	"context"
	"fmt"
	"io"
	"math/rand"
	"os"
	"runtime"
	"runtime/metrics"
	"strconv"
	"sync"
	"testing"
	"time"

	"filippo.io/age"

	"github.com/cfbackup/cfbackup/pkg/store/local"
)

// rowReader streams n bytes of SQL INSERT lines generated from a seed (a table dump as a D1 backup
// sees it: compressible, no two rows alike), never holding more than one line.
type rowReader struct {
	rng  *rand.Rand
	left int64
	line []byte
	id   int64
}

func newRowReader(n, seed int64) *rowReader {
	return &rowReader{rng: rand.New(rand.NewSource(seed)), left: n}
}

func (r *rowReader) Read(p []byte) (int, error) {
	if r.left == 0 {
		return 0, io.EOF
	}
	p = p[:min(int64(len(p)), r.left)]
	n := 0
	for n < len(p) {
		if len(r.line) == 0 {
			r.id++
			r.line = fmt.Appendf(r.line[:0], "INSERT INTO \"users\" VALUES(%d,'user%d','u%x@example.test',%d.%02d,'2024-%02d-%02dT%02d:%02d:00Z');\n",
				r.id, r.rng.Int63n(1e9), r.rng.Int63(), r.rng.Intn(1000), r.rng.Intn(100), 1+r.rng.Intn(12), 1+r.rng.Intn(28), r.rng.Intn(24), r.rng.Intn(60))
		}
		k := copy(p[n:], r.line)
		r.line = r.line[k:]
		n += k
	}
	r.left -= int64(n)
	return n, nil
}

// heapPeak samples the heap every few milliseconds until stop, which returns the largest samples
// of HeapAlloc (runtime.ReadMemStats: live objects and garbage not yet collected, so it depends on
// when the collector ran) and of the live heap the last collection found (runtime/metrics
// /gc/heap/live:bytes: what the code holds).
func heapPeak() (stop func() (alloc, live uint64)) {
	runtime.GC()
	var peak, peakLive uint64
	sample := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	var mu sync.Mutex
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		var ms runtime.MemStats
		t := time.NewTicker(5 * time.Millisecond)
		defer t.Stop()
		for {
			runtime.ReadMemStats(&ms)
			metrics.Read(sample)
			mu.Lock()
			peak = max(peak, ms.HeapAlloc)
			peakLive = max(peakLive, sample[0].Value.Uint64())
			mu.Unlock()
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	}()
	return func() (uint64, uint64) {
		close(done)
		wg.Wait()
		return peak, peakLive
	}
}

// BenchmarkChunkedItemHeap writes one synthetic table dump of each size (CFBACKUP_BENCH_HEAP_MIB,
// comma-separated MiB; default 64,256) as a chunked item with chunk lists (cdc.Default, as D1
// backups do) into a local-directory repository, then reads it back through OpenItem, and reports
// the peak heap of each: with list chunks cut as chunks are placed and read as the read reaches
// them, both stay flat as the item grows.
//
//	CFBACKUP_BENCH_HEAP_MIB=256,1024 go test ./pkg/archive -run '^$' -bench ChunkedItemHeap -benchtime 1x
func BenchmarkChunkedItemHeap(b *testing.B) {
	sizes := []int64{64, 256}
	if s := os.Getenv("CFBACKUP_BENCH_HEAP_MIB"); s != "" {
		sizes = nil
		for _, f := range splitComma(s) {
			n, err := strconv.ParseInt(f, 10, 64)
			if err != nil {
				b.Fatal(err)
			}
			sizes = append(sizes, n)
		}
	}
	id, recs := newKey(b)
	for _, mib := range sizes {
		b.Run(fmt.Sprintf("MiB=%d", mib), func(b *testing.B) {
			size := mib << 20
			b.SetBytes(size)
			for b.Loop() {
				p := chunkedHeapRound(b, recs, []age.Identity{id}, size)
				b.ReportMetric(float64(p[0])/(1<<20), "backup-peak-heap-MiB")
				b.ReportMetric(float64(p[1])/(1<<20), "backup-peak-live-MiB")
				b.ReportMetric(float64(p[2])/(1<<20), "restore-peak-heap-MiB")
				b.ReportMetric(float64(p[3])/(1<<20), "restore-peak-live-MiB")
			}
		})
	}
}

func splitComma(s string) []string {
	var out []string
	start := 0
	for i := 0; i <= len(s); i++ {
		if i == len(s) || s[i] == ',' {
			out = append(out, s[start:i])
			start = i + 1
		}
	}
	return out
}

// chunkedHeapRound writes and reads back one item of size bytes, returning each phase's peak heap
// and peak live heap.
func chunkedHeapRound(b *testing.B, recs []age.Recipient, ids []age.Identity, size int64) (p [4]uint64) {
	ctx := context.Background()
	st, err := local.New(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	stop := heapPeak()
	w, err := NewWriter(ctx, WriterOptions{Store: st, Recipients: recs})
	if err != nil {
		b.Fatal(err)
	}
	ref, _, err := w.WriteChunked("t/big.sql", newRowReader(size, 7), chunkedHeapOptions())
	if err != nil {
		b.Fatal(err)
	}
	segs, err := w.Close()
	if err != nil {
		b.Fatal(err)
	}
	p[0], p[1] = stop()
	sm := map[string]SegmentInfo{}
	for _, s := range segs {
		sm[s.ID] = s
	}
	ref = ref.Catalogued()
	stop = heapPeak()
	rc, err := OpenItem(ctx, st, sm, ids, ref)
	if err != nil {
		b.Fatal(err)
	}
	n, err := io.Copy(io.Discard, rc)
	if err != nil || n != size {
		b.Fatalf("read back %d of %d bytes: %v", n, size, err)
	}
	rc.Close()
	p[2], p[3] = stop()
	return p
}

// chunkedHeapOptions: chunk lists, every chunk stored (no index: the caller's index is measured
// apart, pkg/source/d1), placed chunks handed on and dropped.
func chunkedHeapOptions() ChunkedOptions {
	return ChunkedOptions{Key: testChunkKey, Lists: true, Known: func(string) (Chunk, bool) { return Chunk{}, false }, Placed: func(Chunk) {}}
}

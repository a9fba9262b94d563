package d1

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"runtime"
	"testing"

	"github.com/cfbackup/cfbackup/pkg/archive"
	"github.com/cfbackup/cfbackup/pkg/repo"
	"github.com/cfbackup/cfbackup/pkg/source"
)

// BenchmarkChunkIndexHeap measures the D1 chunk index of a table of n chunks (cdc.Default: ~4 KiB
// each, so 262,144 chunks is a 1 GiB dump) as an incremental backup with nothing changed holds it:
// the parent's index decoded, every chunk used again by this backup (add), and the whole index
// encoded as save writes it; and as a full backup holds it (every chunk added new). It reports the
// heap the index holds per chunk and in all, and the encoded entries' size.
//
//	go test ./pkg/source/d1 -run '^$' -bench ChunkIndexHeap -benchtime 1x
func BenchmarkChunkIndexHeap(b *testing.B) {
	for _, c := range []struct {
		n    int
		full bool
	}{{262144, false}, {1048576, false}, {262144, true}, {1048576, true}} {
		kind := map[bool]string{false: "incremental", true: "full"}[c.full]
		b.Run(fmt.Sprintf("%s/chunks=%d", kind, c.n), func(b *testing.B) {
			n := c.n
			for b.Loop() {
				held, entries := chunkIndexRound(b, n, c.full)
				b.ReportMetric(float64(held)/float64(n), "heap-B/chunk")
				b.ReportMetric(float64(held)/(1<<20), "heap-MiB")
				b.ReportMetric(float64(entries)/float64(n), "encoded-B/chunk")
			}
		})
	}
}

func chunkIndexRound(b *testing.B, n int, full bool) (held uint64, entries int) {
	segs := map[string]archive.SegmentInfo{}
	doc := chunkIndexDoc{Version: chunkIndexVersion, Database: "db"}
	live := map[string]bool{}
	for s := range n/4096 + 1 {
		id := fmt.Sprintf("%032x", s)
		segs[id] = archive.SegmentInfo{ID: id}
		live[id] = true
		doc.Segments = append(doc.Segments, id)
	}
	chunks := make([]archive.Chunk, 0, n)
	for i := range n {
		k := sha256.Sum256(binary.BigEndian.AppendUint64(nil, uint64(i)))
		c := archive.Chunk{Segment: doc.Segments[i/4096], Offset: int64(i%4096) * 1500, Length: 1500, Size: 4096, ID: fmt.Sprintf("%x", k[:16])}
		chunks = append(chunks, c)
		doc.Entries = append(doc.Entries, k[:16]...)
		for _, x := range []uint64{uint64(i / 4096), uint64(c.Offset), uint64(c.Length), uint64(c.Size)} {
			doc.Entries = binary.AppendUvarint(doc.Entries, x)
		}
		doc.Count++
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	ix := newChunkIndex(&source.Session{Repo: &repo.Repo{}})
	if !full {
		if err := ix.decode(context.Background(), nil, doc, segs, live); err != nil {
			b.Fatal(err)
		}
		ix.sortParent()
	}
	for _, c := range chunks {
		ix.add(c)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	runtime.KeepAlive(chunks) // what the index holds, not what the test frees
	runtime.KeepAlive(doc.Entries)
	out := ix.encode("db", func(loc) bool { return true })
	if out.Count != n || (ix.reused == int64(n)) == full {
		b.Fatalf("encoded %d of %d chunks, reused %d", out.Count, n, ix.reused)
	}
	runtime.KeepAlive(ix)
	return after.HeapAlloc - before.HeapAlloc, len(out.Entries)
}

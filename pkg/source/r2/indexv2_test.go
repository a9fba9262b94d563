package r2

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/cfbackup/cfbackup/pkg/archive"
	"github.com/cfbackup/cfbackup/pkg/manifest"
)

var testSecret = []byte("index v2 test secret of 32 bytes")

func testItems(n int) []manifest.Item {
	out := make([]manifest.Item, n)
	for i := range out {
		k := fmt.Sprintf("k/%06d", i)
		out[i] = manifest.Item{Component: Component, Source: "b", Kind: "object", Object: &manifest.ObjectMeta{Key: k, ETag: fmt.Sprintf(`"%x"`, i), LastModified: time.Unix(int64(i), 0).UTC()},
			ItemRef: archive.ItemRef{Name: "r2/b/" + k, Size: int64(i), Chunks: []archive.Chunk{{Segment: "seg", Offset: int64(i)}}}}
	}
	return out
}

func writeV2(t *testing.T, k indexKeys, bucket string, items []manifest.Item) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, err := k.newIndexWriter(&buf, bucket)
	if err != nil {
		t.Fatal(err)
	}
	for _, it := range items {
		if err := w.Add(it); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func readAll(k indexKeys, b []byte, bucket string) ([]manifest.Item, error) {
	s, err := k.openIndexStream(bytes.NewReader(b), bucket)
	if err != nil {
		return nil, err
	}
	var out []manifest.Item
	for {
		it, more, err := s.Next()
		if err != nil {
			return out, err
		}
		if !more {
			return out, nil
		}
		out = append(out, it)
	}
}

func TestIndexV2RoundTrip(t *testing.T) {
	defer func(n int) { pageEntries = n }(pageEntries)
	pageEntries = 10
	k := deriveKeys(testSecret)
	for _, n := range []int{0, 1, 9, 10, 11, 20, 35} {
		items := testItems(n)
		b := writeV2(t, k, "b", items)
		got, err := readAll(k, b, "b")
		if err != nil {
			t.Fatalf("%d entries: %v", n, err)
		}
		if len(got) != n {
			t.Fatalf("%d entries: read %d", n, len(got))
		}
		for i := range got {
			if got[i].Object.Key != items[i].Object.Key || got[i].Size != items[i].Size || got[i].Chunks[0].Offset != items[i].Chunks[0].Offset || !got[i].Object.LastModified.Equal(items[i].Object.LastModified) {
				t.Fatalf("%d entries: entry %d = %+v, want %+v", n, i, got[i], items[i])
			}
		}
		if bytes.Contains(b, []byte("k/00000")) {
			t.Fatal("keys in the clear")
		}
		// The bucket is checked, and another secret opens nothing.
		if _, err := readAll(k, b, "other"); !errors.Is(err, ErrIndex) {
			t.Fatalf("%d entries, other bucket: %v", n, err)
		}
		if _, err := readAll(deriveKeys([]byte("another secret")), b, "b"); !errors.Is(err, ErrIndex) {
			t.Fatalf("%d entries, other secret: %v", n, err)
		}
	}
}

func TestIndexV2KeysMustAscend(t *testing.T) {
	w, err := deriveKeys(testSecret).newIndexWriter(&bytes.Buffer{}, "b")
	if err != nil {
		t.Fatal(err)
	}
	items := testItems(2)
	if err := w.Add(items[1]); err != nil {
		t.Fatal(err)
	}
	if err := w.Add(items[0]); !errors.Is(err, ErrIndex) {
		t.Fatalf("descending key accepted: %v", err)
	}
	if err := w.Add(items[1]); !errors.Is(err, ErrIndex) {
		t.Fatalf("repeated key accepted: %v", err)
	}
}

// records splits a v2 index into its header, records (kind+length+sealed) and trailer.
func records(t *testing.T, b []byte) (hdr []byte, recs [][]byte, trailer []byte) {
	t.Helper()
	off := len(indexMagicV2) + indexIDLen
	hdr = b[:off]
	for off < len(b)-8 {
		n := int(binary.BigEndian.Uint32(b[off+1 : off+5]))
		recs = append(recs, b[off:off+5+n])
		off += 5 + n
	}
	return hdr, recs, b[off:]
}

func join(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

func TestIndexV2Tampering(t *testing.T) {
	defer func(n int) { pageEntries = n }(pageEntries)
	pageEntries = 4
	k := deriveKeys(testSecret)
	b := writeV2(t, k, "b", testItems(12)) // 3 pages and the footer
	hdr, recs, tr := records(t, b)
	if len(recs) != 4 || recs[3][0] != recordFooter {
		t.Fatalf("%d records", len(recs))
	}
	other := writeV2(t, k, "b", testItems(12)) // same entries, same secret, another index id
	_, orecs, otr := records(t, other)
	flipped := bytes.Clone(b)
	flipped[len(hdr)+40] ^= 1
	cases := map[string][]byte{
		"pages swapped":            join(hdr, recs[1], recs[0], recs[2], recs[3], tr),
		"page repeated":            join(hdr, recs[0], recs[0], recs[2], recs[3], tr),
		"page dropped":             join(hdr, recs[0], recs[2], recs[3], tr),
		"page from another index":  join(hdr, recs[0], orecs[1], recs[2], recs[3], tr),
		"footer of another index":  join(hdr, recs[0], recs[1], recs[2], orecs[3], otr),
		"truncated after a page":   join(hdr, recs[0], recs[1]),
		"truncated in a page":      b[:len(hdr)+len(recs[0])+10],
		"no footer":                join(hdr, recs[0], recs[1], recs[2], tr),
		"no trailer":               join(hdr, recs[0], recs[1], recs[2], recs[3]),
		"data after the trailer":   join(b, []byte{0}),
		"a bit flipped":            flipped,
		"page passed as footer":    join(hdr, recs[0], recs[1], recs[2], append([]byte{recordFooter}, recs[2][1:]...), tr),
		"footer passed as a page":  join(hdr, recs[0], recs[1], recs[2], append([]byte{recordPage}, recs[3][1:]...), tr),
		"header only":              hdr,
		"magic only":               []byte(indexMagicV2),
		"impossible record length": join(hdr, []byte{recordPage, 0xff, 0xff, 0xff, 0xff}),
	}
	for name, c := range cases {
		got, err := readAll(k, c, "b")
		if !errors.Is(err, ErrIndex) {
			t.Errorf("%s: read %d entries, err %v; want ErrIndex", name, len(got), err)
		}
	}
	if got, err := readAll(k, b, "b"); err != nil || len(got) != 12 {
		t.Fatalf("untouched: %d %v", len(got), err)
	}
}

// testdata/index-v1.idx was written by main's code before format 2 (commit 118b8b2, index.go's
// seal) with testSecret, bucket "b" and testItems(5), by TestWriteV1Fixture run in that tree.
func TestIndexV1Readable(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("testdata", "index-v1.idx"))
	if err != nil {
		t.Fatal(err)
	}
	if string(b[:8]) != indexMagic {
		t.Fatal("fixture is not format 1")
	}
	k := deriveKeys(testSecret)
	got, err := readAll(k, b, "b")
	if err != nil || len(got) != 5 {
		t.Fatalf("v1: %d %v", len(got), err)
	}
	for i, it := range got {
		if it.Object.Key != fmt.Sprintf("k/%06d", i) || it.Size != int64(i) {
			t.Fatalf("v1 entry %d: %+v", i, it)
		}
	}
	if _, err := readAll(k, b, "other"); !errors.Is(err, ErrIndex) {
		t.Fatalf("v1 of another bucket: %v", err)
	}
	// Re-keying turns it into format 2 under the new secret.
	nb, err := RekeyIndex(testSecret, []byte("new secret"), b)
	if err != nil {
		t.Fatal(err)
	}
	if string(nb[:8]) != indexMagicV2 {
		t.Fatal("rekeyed index is not format 2")
	}
	got, err = readAll(deriveKeys([]byte("new secret")), nb, "b")
	if err != nil || len(got) != 5 || got[4].Object.Key != "k/000004" {
		t.Fatalf("rekeyed: %d %v", len(got), err)
	}
	if _, err := readAll(k, nb, "b"); !errors.Is(err, ErrIndex) {
		t.Fatalf("old secret opens the rekeyed index: %v", err)
	}
}

func TestWriteV1Fixture(t *testing.T) {
	if os.Getenv("CFBACKUP_WRITE_FIXTURES") == "" {
		t.Skip("set CFBACKUP_WRITE_FIXTURES=1 to re-create testdata/index-v1.idx")
	}
	k := deriveKeys(testSecret)
	ix := &Index{Version: IndexVersion, Bucket: "b", Entries: map[string]manifest.Item{}}
	for _, it := range testItems(5) {
		ix.Entries[k.entryID("b", it.Object.Key)] = it
	}
	b, err := k.seal(ix)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join("testdata", "index-v1.idx"), b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// BenchmarkIndexRead reads an index of CFBACKUP_BENCH_INDEX_N entries (default 200000) as a backup's
// merge-join does, in format 1 (loaded whole, then sorted) and format 2 (page by page), and reports
// the live heap sampled after every 1000 entries: format 2 stays at about one page whatever N is.
//
//	go test -run '^$' -bench IndexRead -benchtime 1x ./pkg/source/r2/
func BenchmarkIndexRead(b *testing.B) {
	n := 200000
	if v, err := strconv.Atoi(os.Getenv("CFBACKUP_BENCH_INDEX_N")); err == nil && v > 0 {
		n = v
	}
	k := deriveKeys(testSecret)
	dir := b.TempDir()
	v1, v2 := filepath.Join(dir, "v1"), filepath.Join(dir, "v2")
	func() {
		items := testItems(n)
		ix := &Index{Version: IndexVersion, Bucket: "b", Entries: make(map[string]manifest.Item, n)}
		for _, it := range items {
			ix.Entries[k.entryID("b", it.Object.Key)] = it
		}
		sealed, err := k.seal(ix)
		if err != nil {
			b.Fatal(err)
		}
		if err := os.WriteFile(v1, sealed, 0o644); err != nil {
			b.Fatal(err)
		}
		f, err := os.Create(v2)
		if err != nil {
			b.Fatal(err)
		}
		defer f.Close()
		w, err := k.newIndexWriter(f, "b")
		if err != nil {
			b.Fatal(err)
		}
		for _, it := range items {
			if err := w.Add(it); err != nil {
				b.Fatal(err)
			}
		}
		if err := w.Close(); err != nil {
			b.Fatal(err)
		}
	}()
	for _, c := range []struct{ name, path string }{{"format1", v1}, {"format2", v2}} {
		b.Run(c.name, func(b *testing.B) {
			var peak uint64
			for i := 0; i < b.N; i++ {
				runtime.GC()
				var base runtime.MemStats
				runtime.ReadMemStats(&base)
				f, err := os.Open(c.path)
				if err != nil {
					b.Fatal(err)
				}
				s, err := k.openIndexStream(f, "b")
				if err != nil {
					b.Fatal(err)
				}
				for j := 0; ; j++ {
					_, more, err := s.Next()
					if err != nil {
						b.Fatal(err)
					}
					if !more {
						break
					}
					if j%1000 == 0 {
						runtime.GC()
						var ms runtime.MemStats
						runtime.ReadMemStats(&ms)
						peak = max(peak, ms.HeapAlloc-min(ms.HeapAlloc, base.HeapAlloc))
					}
				}
				f.Close()
			}
			b.ReportMetric(float64(peak)/(1<<20), "peak-live-MiB")
			b.ReportMetric(float64(n), "entries")
		})
	}
}

package archive

import (
	"bytes"
	"context"
	"crypto/sha256"
	"io"
	"runtime"
	"sync"
	"testing"
	"time"

	"filippo.io/age"
	"github.com/pierrec/lz4/v4"

	"github.com/cfbackup/cfbackup/pkg/store"
	"github.com/cfbackup/cfbackup/pkg/store/mem"
)

const benchSize = 64 << 20

var (
	benchOnce sync.Once
	benchData []byte
)

func benchInput() []byte {
	benchOnce.Do(func() { benchData = sqlText(benchSize, 42) })
	return benchData
}

// discardStore consumes uploads without keeping them, so the benchmark measures the pipeline.
type discardStore struct {
	mu    sync.Mutex
	sizes map[string]int64
}

func (d *discardStore) Put(ctx context.Context, key string, r io.Reader, _ store.PutOptions) error {
	n, err := io.Copy(io.Discard, r)
	if err != nil {
		return err
	}
	d.mu.Lock()
	d.sizes[key] = n
	d.mu.Unlock()
	return nil
}
func (d *discardStore) Open(context.Context, string, int64, int64) (io.ReadCloser, error) {
	return nil, store.ErrNotFound
}
func (d *discardStore) Stat(_ context.Context, key string) (store.ObjectInfo, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	n, ok := d.sizes[key]
	if !ok {
		return store.ObjectInfo{}, store.ErrNotFound
	}
	return store.ObjectInfo{Key: key, Size: n, ModTime: time.Now()}, nil
}
func (d *discardStore) List(context.Context, string, func(store.ObjectInfo) error) error { return nil }
func (d *discardStore) Delete(context.Context, string) error                             { return nil }
func (d *discardStore) Location() string                                                 { return "discard://" }

func BenchmarkSegmentWriter(b *testing.B) {
	data := benchInput()
	_, recs := newKey(b)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	b.ResetTimer()
	var plain, cipher int64
	for i := 0; i < b.N; i++ {
		w, err := NewWriter(context.Background(), WriterOptions{Store: &discardStore{sizes: map[string]int64{}}, Recipients: recs})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := w.WriteItem("d1/db/tables/users.sql", bytes.NewReader(data)); err != nil {
			b.Fatal(err)
		}
		segs, err := w.Close()
		if err != nil {
			b.Fatal(err)
		}
		plain, cipher = segs[0].PlainSize, segs[0].Size
	}
	b.ReportMetric(float64(plain)/float64(len(data)), "ratio")
	_ = cipher
}

func BenchmarkLZ4Raw(b *testing.B) {
	data := benchInput()
	for _, conc := range []int{1, runtime.NumCPU()} {
		b.Run("concurrency="+itoa(conc), func(b *testing.B) {
			b.SetBytes(int64(len(data)))
			b.ResetTimer()
			zw := lz4.NewWriter(io.Discard)
			for i := 0; i < b.N; i++ {
				zw.Reset(io.Discard)
				_ = zw.Apply(lz4.BlockSizeOption(lz4.Block4Mb), lz4.ConcurrencyOption(conc), lz4.ChecksumOption(false))
				if _, err := zw.Write(data); err != nil {
					b.Fatal(err)
				}
				if err := zw.Close(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkAgeRaw(b *testing.B) {
	data := benchInput()
	_, recs := newKey(b)
	b.SetBytes(int64(len(data)))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		w, err := age.Encrypt(io.Discard, recs...)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := w.Write(data); err != nil {
			b.Fatal(err)
		}
		if err := w.Close(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSHA256Raw is the third per-byte cost of a backup next to LZ4Raw and AgeRaw: every item's
// plaintext and every segment's ciphertext are hashed once (docs/BENCHMARKS.md "What bounds the
// rest").
func BenchmarkSHA256Raw(b *testing.B) {
	data := benchInput()
	b.SetBytes(int64(len(data)))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		sum := sha256.Sum256(data)
		if sum == [32]byte{} {
			b.Fatal("zero digest")
		}
	}
}

func BenchmarkOpenItem(b *testing.B) {
	data := benchInput()[:32<<20]
	id, recs := newKey(b)
	st := mem.New()
	refs, segs := writeAll(b, st, recs, WriterOptions{}, []item{{"big.sql", data}})
	b.SetBytes(int64(len(data)))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		rc, err := OpenItem(context.Background(), st, segMap(segs), []age.Identity{id}, refs[0])
		if err != nil {
			b.Fatal(err)
		}
		if n, err := io.Copy(io.Discard, rc); err != nil || n != int64(len(data)) {
			b.Fatal(n, err)
		}
	}
}

func itoa(n int) string {
	return string(rune('0' + n))
}

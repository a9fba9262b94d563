package archive

import (
	"bytes"
	"context"
	"io"
	"testing"

	"filippo.io/age"

	"github.com/cfbackup/cfbackup/pkg/store"
	"github.com/cfbackup/cfbackup/pkg/store/mem"
)

// fuzzKey is a fixed test-only identity so committed corpora stay meaningful.
const fuzzKey = "AGE-SECRET-KEY-1UFFYQ6L6JRH7CNEYWGDH4DJM8F8E4NCMDCXUJD6L0M06LWC8K4NSNK9QRP"

func fuzzIdentity(t testing.TB) *age.X25519Identity {
	id, err := age.ParseX25519Identity(fuzzKey)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// fuzzSeed writes a small real segment and returns its bytes and catalogue entries.
func fuzzSeed(t testing.TB) ([]byte, []ItemRef) {
	id := fuzzIdentity(t)
	st := mem.New()
	refs, segs := writeAll(t, st, []age.Recipient{id.Recipient()}, WriterOptions{ChunkSize: 1024, NewID: func() string { return "seed" }},
		[]item{{"a.sql", sqlText(3000, 1)}, {"b", nil}, {"c", []byte("hello")}})
	rc, err := st.Open(context.Background(), segs[0].Key, 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	b, _ := io.ReadAll(rc)
	return b, refs
}

func putSegment(t testing.TB, data []byte) (store.Store, SegmentInfo) {
	st := mem.New()
	seg := SegmentInfo{ID: "fuzz", Key: SegmentKey("fuzz"), Size: int64(len(data)), SHA256: sum(data)}
	if err := st.Put(context.Background(), seg.Key, bytes.NewReader(data), store.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	return st, seg
}

func FuzzReadSegment(f *testing.F) {
	seed, _ := fuzzSeed(f)
	f.Add(seed)
	f.Add(seed[:len(seed)/2])
	f.Add([]byte("age-encryption.org/v1\n-> X25519 AAAA\n--- AAAA\n"))
	id := fuzzIdentity(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		st, seg := putSegment(t, data)
		_ = ReadSegment(context.Background(), st, seg, []age.Identity{id}, func(name string, r io.Reader) error {
			_, err := io.Copy(io.Discard, r)
			return err
		})
		_ = VerifySegment(context.Background(), st, seg)
	})
}

func FuzzOpenItem(f *testing.F) {
	seed, refs := fuzzSeed(f)
	for _, r := range refs {
		c := r.Chunks[0]
		f.Add(seed, r.Name, c.Offset, c.Length, c.Size, len(r.Chunks))
	}
	f.Add(seed, "a.sql", int64(0), int64(1<<40), int64(5), 1)
	id := fuzzIdentity(f)
	f.Fuzz(func(t *testing.T, data []byte, name string, off, length, size int64, parts int) {
		st, seg := putSegment(t, data)
		parts = 1 + (parts&0x7fffffff)%4
		ref := ItemRef{Name: name, SHA256: sum(nil)}
		for i := 0; i < parts; i++ {
			ref.Chunks = append(ref.Chunks, Chunk{Segment: seg.ID, Offset: off, Length: length, Size: size})
			ref.Size += size
		}
		rc, err := OpenItem(context.Background(), st, map[string]SegmentInfo{seg.ID: seg}, []age.Identity{id}, ref)
		if err != nil {
			return
		}
		_, _ = io.Copy(io.Discard, io.LimitReader(rc, 1<<22))
		rc.Close()
	})
}

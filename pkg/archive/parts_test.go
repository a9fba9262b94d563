package archive

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"testing"

	"filippo.io/age"

	"github.com/cfbackup/cfbackup/pkg/store/mem"
)

// readParts reads r the way a multipart upload fills its part buffers: each buffer of partSize
// bytes filled by repeated Reads, until EOF or an error.
func readParts(r io.Reader, partSize int) ([]byte, error) {
	var out []byte
	buf := make([]byte, partSize)
	for {
		n := 0
		for n < len(buf) {
			k, err := r.Read(buf[n:])
			n += k
			if err == io.EOF {
				return append(out, buf[:n]...), nil
			}
			if err != nil {
				return nil, err
			}
		}
		out = append(out, buf...)
	}
}

// Parts gives each item's exact bytes for part buffers that hold a whole number of chunks (every
// chunk decoded straight into the buffer, none through b.data), that cut chunks (some copied) and
// that are smaller than a chunk, for short and long names (a PAX header) and incompressible data.
func TestPartsDecodesIntoTheCallersBuffer(t *testing.T) {
	id, recs := newKey(t)
	st := mem.New()
	const chunk = 64 << 10
	long := strings.Repeat("k", 200)
	items := []item{{"text", sqlText(10*chunk, 1)}, {"rand", randomBytes(6*chunk+777, 2)}, {long, sqlText(4*chunk, 3)},
		{"one", sqlText(1000, 4)}, {"empty", nil}}
	refs, segs := writeAll(t, st, recs, WriterOptions{ChunkSize: chunk, SegmentSize: 300 << 10}, items)
	op := NewOpener(st, segMap(segs), []age.Identity{id})
	var b Buffers
	for _, part := range []int{2 * chunk, 3*chunk + 100, chunk / 2, 16 * chunk} {
		for i, ref := range refs {
			rc, err := op.Open(context.Background(), ref)
			if err != nil {
				t.Fatal(err)
			}
			pr := rc.(PartReader).Parts(&b)
			got, err := readParts(pr, part)
			rc.Close()
			if err != nil || !bytes.Equal(got, items[i].data) {
				t.Fatalf("part %d, %s: %v, %d bytes, want %d", part, ref.Name, err, len(got), len(items[i].data))
			}
			r := pr.(*partReader)
			if r.placed+r.copied != len(ref.Chunks) {
				t.Fatalf("part %d, %s: %d placed + %d copied, want %d chunks", part, ref.Name, r.placed, r.copied, len(ref.Chunks))
			}
			// Part buffers of whole chunks: nothing goes through b.data.
			if (part == 2*chunk || part == 16*chunk) && r.copied != 0 {
				t.Errorf("part %d, %s: %d of %d chunks copied, want none", part, ref.Name, r.copied, len(ref.Chunks))
			}
			if part == chunk/2 && len(items[i].data) > part && r.placed != 0 {
				t.Errorf("part %d, %s: %d chunks placed in a buffer smaller than a chunk", part, ref.Name, r.placed)
			}
		}
	}
}

// A recorded SHA-256 or size that does not match is the error at the end instead of io.EOF, a
// damaged frame is an error, and Parts refuses to follow Read.
func TestPartsChecks(t *testing.T) {
	id, recs := newKey(t)
	st := mem.New()
	const chunk = 64 << 10
	data := sqlText(5*chunk, 7)
	refs, segs := writeAll(t, st, recs, WriterOptions{ChunkSize: chunk}, []item{{"obj", data}})
	op := NewOpener(st, segMap(segs), []age.Identity{id})
	var b Buffers
	read := func(ref ItemRef) error {
		rc, err := op.Open(context.Background(), ref)
		if err != nil {
			return err
		}
		defer rc.Close()
		_, err = readParts(rc.(PartReader).Parts(&b), 2*chunk)
		return err
	}
	if err := read(refs[0]); err != nil {
		t.Fatal(err)
	}
	bad := refs[0]
	bad.SHA256 = strings.Repeat("0", 64)
	if err := read(bad); !errors.Is(err, ErrIntegrity) {
		t.Fatalf("wrong SHA-256: %v, want ErrIntegrity", err)
	}
	short := refs[0]
	short.Size--
	if err := read(short); !errors.Is(err, ErrIntegrity) {
		t.Fatalf("wrong size: %v, want ErrIntegrity", err)
	}
	// A chunk that claims to be another entry (its frame is chunk 0's).
	swapped := refs[0]
	swapped.Chunks = append([]Chunk(nil), refs[0].Chunks...)
	swapped.Chunks[1].Offset, swapped.Chunks[1].Length = swapped.Chunks[0].Offset, swapped.Chunks[0].Length
	if err := read(swapped); !errors.Is(err, ErrIntegrity) {
		t.Fatalf("swapped chunk: %v, want ErrIntegrity", err)
	}
	// A frame cut short (its length one byte less): damage, reported.
	cut := refs[0]
	cut.Chunks = append([]Chunk(nil), refs[0].Chunks...)
	cut.Chunks[2].Length--
	if err := read(cut); err == nil {
		t.Fatal("cut frame: no error")
	}
	rc, _ := op.Open(context.Background(), refs[0])
	defer rc.Close()
	if _, err := rc.Read(make([]byte, 10)); err != nil {
		t.Fatal(err)
	}
	if _, err := rc.(PartReader).Parts(&b).Read(make([]byte, 10)); err == nil {
		t.Fatal("Parts after Read: no error")
	}
}

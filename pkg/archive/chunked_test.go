package archive

import (
	"bytes"
	"context"
	"errors"
	"io"
	"testing"

	"filippo.io/age"

	"github.com/cfbackup/cfbackup/pkg/cdc"
	"github.com/cfbackup/cfbackup/pkg/store"
	"github.com/cfbackup/cfbackup/pkg/store/mem"
)

var testChunkKey = []byte("0123456789abcdef0123456789abcdef")

var smallCDC = cdc.Params{Min: 1 << 10, Avg: 4 << 10, Max: 16 << 10}

// writeChunked writes items as content-addressed chunks, reusing what known holds, and adds every
// chunk it placed to known (as a source's chunk index does).
func writeChunked(t *testing.T, st store.Store, recs []age.Recipient, known map[string]Chunk, items []item) ([]ItemRef, []SegmentInfo, int) {
	t.Helper()
	w, err := NewWriter(context.Background(), WriterOptions{Store: st, Recipients: recs, SegmentSize: 64 << 10})
	if err != nil {
		t.Fatal(err)
	}
	var refs []ItemRef
	stored := 0
	for _, it := range items {
		ref, cs, err := w.WriteChunked(it.name, bytes.NewReader(it.data), ChunkedOptions{Params: smallCDC, Key: testChunkKey,
			Known: func(id string) (Chunk, bool) { c, ok := known[id]; return c, ok }})
		if err != nil {
			t.Fatal(err)
		}
		stored += cs.Stored
		for _, c := range ref.Chunks {
			known[c.ID] = c
		}
		refs = append(refs, ref)
	}
	segs, err := w.Close()
	if err != nil {
		t.Fatal(err)
	}
	return refs, segs, stored
}

func readBack(t *testing.T, st store.Store, segs map[string]SegmentInfo, ids []age.Identity, ref ItemRef) ([]byte, error) {
	t.Helper()
	rc, err := OpenItem(context.Background(), st, segs, ids, ref)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	streamed, err := io.ReadAll(rc)
	if err != nil {
		return nil, err
	}
	rc2, err := OpenItem(context.Background(), st, segs, ids, ref)
	if err != nil {
		return nil, err
	}
	defer rc2.Close()
	whole, err := rc2.(WholeReader).ReadAll(&Buffers{})
	if err != nil {
		return nil, err
	}
	if !bytes.Equal(streamed, whole) {
		t.Fatal("Read and ReadAll disagree")
	}
	return streamed, nil
}

// A second snapshot after a small edit stores only the chunks around the edit, and both read back
// exactly from the union of their segments.
func TestWriteChunkedIncremental(t *testing.T) {
	st := mem.New()
	id, recs := newKey(t)
	base := sqlText(600<<10, 1)
	edited := bytes.Clone(base)
	copy(edited[300<<10:], "UPDATE")
	known := map[string]Chunk{}
	refs1, segs1, stored1 := writeChunked(t, st, recs, known, []item{{"t/a.sql", base}, {"t/empty.sql", nil}})
	refs2, segs2, stored2 := writeChunked(t, st, recs, known, []item{{"t/a.sql", edited}, {"t/copy.sql", base}})
	if stored2 == 0 || stored2 > 3 || stored1 < 50 {
		t.Fatalf("first run stored %d chunks, second %d: want many, then 1 to 3", stored1, stored2)
	}
	segs := map[string]SegmentInfo{}
	for _, s := range append(segs1, segs2...) {
		segs[s.ID] = s
	}
	for i, want := range [][]byte{base, nil, edited, base} {
		ref := append(refs1, refs2...)[i]
		got, err := readBack(t, st, segs, []age.Identity{id}, ref)
		if err != nil {
			t.Fatalf("%s: %v", ref.Name, err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("%s: read back %d bytes, want %d", ref.Name, len(got), len(want))
		}
	}
	// Every entry of every segment is a chunk named by its id (or the empty item's own entry).
	for _, s := range segs1 {
		if err := ReadSegment(context.Background(), st, s, []age.Identity{id}, func(name string, r io.Reader) error {
			data, _ := io.ReadAll(r)
			if name != "t/empty.sql" && name != ChunkPrefix+ChunkID(testChunkKey, data) {
				t.Errorf("entry %q does not name its content", name)
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
}

// A catalogue that points a chunk at another stored chunk, or into a segment the manifest does not
// list, is refused as an integrity failure.
func TestChunkedForgedReferences(t *testing.T) {
	st := mem.New()
	id, recs := newKey(t)
	refs, segList, _ := writeChunked(t, st, recs, map[string]Chunk{}, []item{{"t/a.sql", sqlText(200<<10, 2)}})
	segs := map[string]SegmentInfo{}
	for _, s := range segList {
		segs[s.ID] = s
	}
	ids := []age.Identity{id}
	ref := refs[0]
	if len(ref.Chunks) < 3 {
		t.Fatalf("want several chunks, got %d", len(ref.Chunks))
	}
	swapped := ref
	swapped.Chunks = append([]Chunk{}, ref.Chunks...)
	swapped.Chunks[1].ID = ref.Chunks[2].ID // the name the reader expects no longer matches the entry
	renamed := ref
	renamed.Chunks = append([]Chunk{}, ref.Chunks...)
	renamed.Chunks[0], renamed.Chunks[1] = ref.Chunks[1], ref.Chunks[0] // each entry its own name, wrong order
	renamed.Chunks[0].Size, renamed.Chunks[1].Size = ref.Chunks[1].Size, ref.Chunks[0].Size
	foreign := ref
	foreign.Chunks = append([]Chunk{}, ref.Chunks...)
	foreign.Chunks[0].Segment = "00000000000000000000000000000000"
	badID := ref
	badID.Chunks = append([]Chunk{}, ref.Chunks...)
	badID.Chunks[0].ID = "../../etc/passwd"
	for name, r := range map[string]ItemRef{"swapped id": swapped, "reordered": renamed, "foreign segment": foreign, "bad id": badID} {
		if _, err := readBack(t, st, segs, ids, r); !errors.Is(err, ErrIntegrity) {
			t.Errorf("%s: got %v, want ErrIntegrity", name, err)
		}
	}
}

func TestWriteChunkedRefusesBadOptions(t *testing.T) {
	_, recs := newKey(t)
	w, err := NewWriter(context.Background(), WriterOptions{Store: mem.New(), Recipients: recs, ChunkSize: 8 << 10})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Abort()
	if _, _, err := w.WriteChunked("a", bytes.NewReader(nil), ChunkedOptions{Params: smallCDC, Key: testChunkKey}); err == nil {
		t.Error("a chunk maximum above ChunkSize was accepted")
	}
	if _, _, err := w.WriteChunked("a", bytes.NewReader(nil), ChunkedOptions{Params: cdc.Params{Min: 1 << 10, Avg: 2 << 10, Max: 4 << 10}}); err == nil {
		t.Error("no key was accepted")
	}
}

// Small content-addressed chunks stored one after another are read with one ranged GET per read-ahead
// window, not one per chunk.
func TestChunkedReadCoalescesGETs(t *testing.T) {
	id, recs := newKey(t)
	st := mem.New()
	w, err := NewWriter(context.Background(), WriterOptions{Store: st, Recipients: recs})
	if err != nil {
		t.Fatal(err)
	}
	data := sqlText(2<<20, 5)
	ref, _, err := w.WriteChunked("t/big.sql", bytes.NewReader(data), ChunkedOptions{Params: smallCDC, Key: testChunkKey})
	if err != nil {
		t.Fatal(err)
	}
	segList, err := w.Close()
	if err != nil {
		t.Fatal(err)
	}
	cs := &countingStore{Store: st}
	got, err := readBack(t, cs, map[string]SegmentInfo{segList[0].ID: segList[0]}, []age.Identity{id}, ref)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read back: %v", err)
	}
	// Two reads (Read and ReadAll) of ~1 MiB of frames: a few GETs each (header, final chunk, body).
	if n := cs.gets.Load(); len(ref.Chunks) < 200 || n > 12 {
		t.Fatalf("%d chunks read with %d GETs", len(ref.Chunks), n)
	}
}

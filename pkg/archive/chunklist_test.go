package archive

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"slices"
	"testing"

	"filippo.io/age"

	"github.com/cfbackup/cfbackup/pkg/store"
	"github.com/cfbackup/cfbackup/pkg/store/mem"
)

// writeListed is writeChunked with chunk lists: known gets data and list chunks, as a source's
// chunk index does; the returned refs are as the catalogue records them.
func writeListed(t *testing.T, st store.Store, recs []age.Recipient, known map[string]Chunk, items []item) ([]ItemRef, []SegmentInfo, ChunkedStats) {
	t.Helper()
	w, err := NewWriter(context.Background(), WriterOptions{Store: st, Recipients: recs, SegmentSize: 64 << 10})
	if err != nil {
		t.Fatal(err)
	}
	var refs []ItemRef
	var sum ChunkedStats
	for _, it := range items {
		ref, cs, err := w.WriteChunked(it.name, bytes.NewReader(it.data), ChunkedOptions{Params: smallCDC, Key: testChunkKey, Lists: true,
			Known: func(id string) (Chunk, bool) { c, ok := known[id]; return c, ok }})
		if err != nil {
			t.Fatal(err)
		}
		sum.Stored += cs.Stored
		sum.Lists += cs.Lists
		sum.ListsStored += cs.ListsStored
		for _, c := range append(ref.Chunks, ref.Lists...) {
			c.SHA256 = ""
			known[c.ID] = c
		}
		refs = append(refs, ref.Catalogued())
	}
	segs, err := w.Close()
	if err != nil {
		t.Fatal(err)
	}
	return refs, segs, sum
}

// A large item's chunk list is stored as list chunks; after a small edit only the list chunk around
// the edit is stored again, and every version reads back exactly.
func TestChunkListsIncremental(t *testing.T) {
	st := mem.New()
	id, recs := newKey(t)
	base := sqlText(2<<20, 1)
	edited := bytes.Clone(base)
	copy(edited[1<<20:], "UPDATE")
	known := map[string]Chunk{}
	refs1, segs1, st1 := writeListed(t, st, recs, known, []item{{"t/a.sql", base}, {"t/small.sql", base[:3000]}})
	refs2, segs2, st2 := writeListed(t, st, recs, known, []item{{"t/a.sql", edited}})
	refs3, _, st3 := writeListed(t, st, recs, known, []item{{"t/a.sql", base}})
	if len(refs1[0].Lists) < 4 || len(refs1[0].Chunks) != 0 || len(refs1[1].Lists) != 0 || len(refs1[1].Chunks) != 1 {
		t.Fatalf("lists %d, chunks %d; small item lists %d chunks %d", len(refs1[0].Lists), len(refs1[0].Chunks), len(refs1[1].Lists), len(refs1[1].Chunks))
	}
	if st1.ListsStored != st1.Lists || st2.ListsStored == 0 || st2.ListsStored > 3 || st2.Stored > 3 || st3.Stored != 0 || st3.ListsStored != 0 {
		t.Fatalf("stored lists: full %d of %d, edit %d (data %d), unchanged %d (data %d)", st1.ListsStored, st1.Lists, st2.ListsStored, st2.Stored, st3.ListsStored, st3.Stored)
	}
	segs := map[string]SegmentInfo{}
	for _, s := range append(segs1, segs2...) {
		segs[s.ID] = s
	}
	for i, want := range [][]byte{base, base[:3000], edited, base} {
		ref := append(append(refs1, refs2...), refs3...)[i]
		got, err := readBack(t, st, segs, []age.Identity{id}, ref)
		if err != nil {
			t.Fatalf("%s: %v", ref.Name, err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("%s: read back %d bytes, want %d", ref.Name, len(got), len(want))
		}
	}
	// Hostile catalogues: a list with another list's hash, a segment not listed, both forms at once.
	ref := refs1[0]
	bad := ref
	bad.Lists = append([]Chunk(nil), ref.Lists...)
	bad.Lists[0].SHA256 = bad.Lists[1].SHA256
	both := ref
	both.Chunks = []Chunk{ref.Lists[0]}
	unlisted := map[string]SegmentInfo{}
	for k, v := range segs {
		if k != ref.Lists[0].Segment {
			unlisted[k] = v
		}
	}
	for name, c := range map[string]struct {
		ref  ItemRef
		segs map[string]SegmentInfo
	}{"hash": {bad, segs}, "both": {both, segs}, "unlisted": {ref, unlisted}} {
		if _, err := readBack(t, st, c.segs, []age.Identity{id}, c.ref); !errors.Is(err, ErrIntegrity) {
			t.Errorf("%s: %v, want an integrity error", name, err)
		}
	}
}

func testChunks(n int) []Chunk {
	var out []Chunk
	off := int64(100)
	for i := range n {
		m := sha256.Sum256(fmt.Appendf(nil, "chunk %d", i))
		seg := fmt.Sprintf("%032x", i/50)
		if i%50 == 0 {
			off = 0
		}
		l := int64(900 + i%7)
		if i%11 == 0 {
			off -= 5000 // a chunk reused from earlier in the segment
			off = max(off, 0)
		}
		out = append(out, Chunk{Segment: seg, Offset: off, Length: l, Size: 4000 + int64(i), ID: hex.EncodeToString(m[:16])})
		off += l
	}
	return out
}

// Lists round-trip, cut by content (the same cuts after an entry is replaced), and a decoder given
// any damaged list refuses it with an integrity error instead of panicking or trusting it.
func TestChunkListEncoding(t *testing.T) {
	cs := testChunks(3000)
	groups := cutLists(cs)
	if len(groups) < 3000/(2*listAvg) || len(groups) > 3000/(listAvg/2) {
		t.Fatalf("%d lists for 3000 chunks, want about %d", len(groups), 3000/listAvg)
	}
	var back []Chunk
	for _, g := range groups {
		if len(g) > listMax {
			t.Fatalf("list of %d entries", len(g))
		}
		b, err := encodeList(g)
		if err != nil {
			t.Fatal(err)
		}
		d, err := decodeList(b)
		if err != nil {
			t.Fatal(err)
		}
		back = append(back, d...)
		for i := range len(b) {
			if _, err := decodeList(b[:i]); !errors.Is(err, ErrIntegrity) {
				t.Fatalf("cut to %d bytes: %v", i, err)
			}
		}
		if _, err := decodeList(append(bytes.Clone(b), 0)); !errors.Is(err, ErrIntegrity) {
			t.Fatalf("trailing byte: %v", err)
		}
	}
	if fmt.Sprint(back) != fmt.Sprint(cs) {
		t.Fatal("lists do not decode to the chunks encoded")
	}
	changed := bytes.Clone([]byte(fmt.Sprint(groups[len(groups)/2:])))
	cs2 := append([]Chunk(nil), cs...)
	cs2[10].ID = "00000000" + cs2[10].ID[8:]
	g2 := cutLists(cs2)
	if fmt.Sprint(g2[len(g2)-len(groups)/2:]) != string(changed) {
		t.Fatal("changing one entry moved cuts far from it")
	}
}

func FuzzDecodeList(f *testing.F) {
	b, _ := encodeList(testChunks(40))
	f.Add(b)
	f.Fuzz(func(t *testing.T, b []byte) {
		cs, err := decodeList(b)
		if err != nil {
			return
		}
		for _, c := range cs {
			if c.Offset < 0 || c.Length <= 0 || c.Size < 0 || !validChunkID(c.ID) {
				t.Fatalf("decoded %+v", c)
			}
		}
	})
}

// A reader expands an item's list chunks as it reaches them: it never holds more than
// readAheadEntries and a list chunk's entries, and a bad list chunk late in the item fails the read (not the open) with an
// integrity error, as does a catalogue whose lists add up to less than the item.
func TestChunkListsReadLazily(t *testing.T) {
	st := mem.New()
	id, recs := newKey(t)
	data := sqlText(24<<20, 3)
	refs, segList, _ := writeListed(t, st, recs, map[string]Chunk{}, []item{{"t/big.sql", data}})
	ref := refs[0]
	segs := map[string]SegmentInfo{}
	for _, s := range segList {
		segs[s.ID] = s
	}
	if len(ref.Lists) < 8 {
		t.Fatalf("%d list chunks, want several", len(ref.Lists))
	}
	ids := []age.Identity{id}
	rc, err := OpenItem(context.Background(), st, segs, ids, ref)
	if err != nil {
		t.Fatal(err)
	}
	it := rc.(*itemReader)
	var got []byte
	most, buf := 0, make([]byte, 3000)
	for {
		n, err := rc.Read(buf)
		got = append(got, buf[:n]...)
		most = max(most, len(it.ref.Chunks))
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	rc.Close()
	if !bytes.Equal(got, data) {
		t.Fatalf("read back %d bytes, want %d", len(got), len(data))
	}
	if most > readAheadEntries+listMax || it.base+it.next < 2*readAheadEntries {
		t.Fatalf("held up to %d chunk entries of %d chunks", most, it.base+it.next)
	}
	late := ref
	late.Lists = slices.Clone(ref.Lists)
	late.Lists[len(late.Lists)-1].SHA256 = late.Lists[0].SHA256
	short := ref
	short.Lists = ref.Lists[:len(ref.Lists)-1]
	for name, r := range map[string]ItemRef{"late hash": late, "short": short} {
		rc, err := OpenItem(context.Background(), st, segs, ids, r)
		if err != nil {
			t.Fatalf("%s: open: %v", name, err)
		}
		_, err = io.Copy(io.Discard, rc)
		rc.Close()
		if !errors.Is(err, ErrIntegrity) {
			t.Errorf("%s: %v, want an integrity error", name, err)
		}
		if _, err := readBack(t, st, segs, ids, r); !errors.Is(err, ErrIntegrity) {
			t.Errorf("%s: ReadAll: %v, want an integrity error", name, err)
		}
	}
}

// With Placed, WriteChunked hands every chunk on as it is placed and keeps none: the catalogue
// entry has list chunks only, a chunk repeated in the item is found through Known (the caller's
// index, fed by Placed) and stored once, and the item reads back exactly.
func TestWriteChunkedPlaced(t *testing.T) {
	st := mem.New()
	id, recs := newKey(t)
	half := sqlText(3<<20, 5)
	data := append(bytes.Clone(half), half...)
	w, err := NewWriter(context.Background(), WriterOptions{Store: st, Recipients: recs, SegmentSize: 256 << 10})
	if err != nil {
		t.Fatal(err)
	}
	index := map[string]Chunk{}
	var placed []Chunk
	ref, cs, err := w.WriteChunked("t/twice.sql", bytes.NewReader(data), ChunkedOptions{Params: smallCDC, Key: testChunkKey, Lists: true,
		Known:  func(id string) (Chunk, bool) { c, ok := index[id]; return c, ok },
		Placed: func(c Chunk) { placed = append(placed, c); index[c.ID] = c }})
	if err != nil {
		t.Fatal(err)
	}
	segList, err := w.Close()
	if err != nil {
		t.Fatal(err)
	}
	if len(ref.Chunks) != 0 || len(ref.Lists) != cs.Lists || cs.Lists < 4 || len(placed) != cs.Chunks+cs.Lists {
		t.Fatalf("chunks %d, lists %d (stats %d), placed %d of %d+%d", len(ref.Chunks), len(ref.Lists), cs.Lists, len(placed), cs.Chunks, cs.Lists)
	}
	if cs.StoredBytes > int64(len(half))+int64(len(half))/8 {
		t.Fatalf("stored %d bytes of an item that is %d bytes twice", cs.StoredBytes, len(half))
	}
	var sum int64
	for _, c := range placed[:cs.Chunks] {
		sum += c.Size
	}
	if sum != ref.Size || ref.Size != int64(len(data)) {
		t.Fatalf("placed chunks hold %d bytes, item %d", sum, ref.Size)
	}
	segs := map[string]SegmentInfo{}
	for _, s := range segList {
		segs[s.ID] = s
	}
	got, err := readBack(t, st, segs, []age.Identity{id}, ref)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read back %d bytes, want %d: %v", len(got), len(data), err)
	}
}

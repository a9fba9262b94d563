package archive

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"testing"

	"filippo.io/age"

	"github.com/cfbackup/cfbackup/pkg/store/mem"
)

// Many small items written with WriteItemAsync come back in call order with the right bytes, while
// several are pending at once.
func TestWriteItemAsyncManySmallItems(t *testing.T) {
	id, rcp := newKey(t)
	st := mem.New()
	w, err := NewWriter(context.Background(), WriterOptions{Store: st, Recipients: rcp, ChunkSize: 64 << 10, SegmentSize: 1 << 20, Concurrency: 2})
	if err != nil {
		t.Fatal(err)
	}
	var pend []*PendingItem
	var want [][]byte
	for i := 0; i < 300; i++ {
		var b []byte
		switch i % 3 {
		case 0:
			b = sqlText(1+i*37%5000, int64(i))
		case 1:
			b = randomBytes(i*131%200000, int64(i)) // some span chunks
		}
		p, err := w.WriteItemAsync(fmt.Sprintf("r2/b/obj%04d", i), bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		pend = append(pend, p)
		want = append(want, b)
	}
	var refs []ItemRef
	for _, p := range pend {
		ref, err := p.Wait()
		if err != nil {
			t.Fatal(err)
		}
		refs = append(refs, ref)
	}
	segs, err := w.Close()
	if err != nil {
		t.Fatal(err)
	}
	if len(segs) < 2 {
		t.Fatalf("want several segments, got %d", len(segs))
	}
	for i, ref := range refs {
		if ref.Name != fmt.Sprintf("r2/b/obj%04d", i) || ref.Size != int64(len(want[i])) || ref.SHA256 != sum(want[i]) {
			t.Fatalf("item %d: ref %+v", i, ref)
		}
		got, err := readItem(t, st, segs, []age.Identity{id}, ref)
		if err != nil || !bytes.Equal(got, want[i]) {
			t.Fatalf("item %d: %v (got %d bytes, want %d)", i, err, len(got), len(want[i]))
		}
	}
}

// Random blocks are stored uncompressed without a full compression pass; text is compressed; both
// frames decode (the escape-hatch interop test covers `lz4 -dc`).
func TestIncompressibleBlocksSkipCompression(t *testing.T) {
	fw := &frameWriter{}
	rnd := randomBytes(1<<20, 1)
	out := fw.frame(nil, rnd)
	if fw.probed != 1 || fw.skipped != 1 {
		t.Fatalf("random block: probed %d skipped %d, want 1 1", fw.probed, fw.skipped)
	}
	if size := binary.LittleEndian.Uint32(out[7:]); size&uncompBit == 0 || int(size&^uncompBit) != len(rnd) {
		t.Fatalf("random block not stored uncompressed: size word %#x", size)
	}
	txt := sqlText(1<<20, 2)
	out = fw.frame(out, txt)
	if fw.probed != 2 || fw.skipped != 1 {
		t.Fatalf("text block: probed %d skipped %d, want 2 1", fw.probed, fw.skipped)
	}
	if len(out) > len(txt)/2 {
		t.Fatalf("text frame is %d bytes for %d bytes of text: not compressed", len(out), len(txt))
	}
}

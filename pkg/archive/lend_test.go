package archive

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"

	"filippo.io/age"

	"github.com/cfbackup/cfbackup/pkg/store/mem"
)

// WriteItemBytes stores lent buffers exactly like WriteItemAsync stores the same bytes (same refs,
// same read-back), mixes with it in call order, falls back to copying an item larger than a chunk,
// and calls done exactly once per call — also when it refuses the item.
func TestWriteItemBytes(t *testing.T) {
	id, rcp := newKey(t)
	st := mem.New()
	w, err := NewWriter(context.Background(), WriterOptions{Store: st, Recipients: rcp, ChunkSize: 64 << 10, SegmentSize: 1 << 20, Concurrency: 2})
	if err != nil {
		t.Fatal(err)
	}
	var dones [200]atomic.Int32
	var pend []*PendingItem
	var want [][]byte
	for i := 0; i < len(dones); i++ {
		var b []byte
		switch i % 4 {
		case 0:
			b = sqlText(1+i*37%60000, int64(i))
		case 1:
			b = randomBytes(i*131%200000, int64(i)) // some are larger than a chunk
		case 2:
			b = nil // empty object
		case 3:
			b = sqlText(64<<10, int64(i)) // exactly one chunk
		}
		name := fmt.Sprintf("r2/b/obj%04d", i)
		var p *PendingItem
		if i%5 == 4 {
			p, err = w.WriteItemAsync(name, bytes.NewReader(b))
			dones[i].Add(1)
		} else {
			lent := bytes.Clone(b)
			p, err = w.WriteItemBytes(name, lent, func() { dones[i].Add(1) })
		}
		if err != nil {
			t.Fatal(err)
		}
		pend = append(pend, p)
		want = append(want, b)
	}
	// A pending item must not keep a lent buffer alive once it is compressed (a queue of pending R2
	// objects once held 160 MiB that way).
	for i, p := range pend {
		for _, j := range p.jobs {
			<-j.ready
			if j.release != nil || j.data != nil {
				t.Fatalf("item %d: compressed job still holds the lent buffer", i)
			}
		}
	}
	var refs []ItemRef
	for _, p := range pend {
		ref, err := p.Wait()
		if err != nil {
			t.Fatal(err)
		}
		refs = append(refs, ref)
	}
	if _, err := w.WriteItemBytes("../escape", []byte("x"), func() { dones[0].Add(1) }); !errors.Is(err, ErrBadName) {
		t.Fatalf("bad name: %v", err)
	}
	segs, err := w.Close()
	if err != nil {
		t.Fatal(err)
	}
	if dones[0].Load() != 2 {
		t.Fatalf("done of the refused item not called (count %d)", dones[0].Load()-1)
	}
	for i, ref := range refs {
		if i > 0 && dones[i].Load() != 1 {
			t.Fatalf("item %d: done called %d times", i, dones[i].Load())
		}
		if ref.Name != fmt.Sprintf("r2/b/obj%04d", i) || ref.Size != int64(len(want[i])) || ref.SHA256 != sum(want[i]) {
			t.Fatalf("item %d: ref %+v", i, ref)
		}
		if n := (len(want[i]) + 64<<10 - 1) / (64 << 10); len(ref.Chunks) != max(n, 1) {
			t.Fatalf("item %d: %d chunks for %d bytes", i, len(ref.Chunks), len(want[i]))
		}
		got, err := readItem(t, st, segs, []age.Identity{id}, ref)
		if err != nil || !bytes.Equal(got, want[i]) {
			t.Fatalf("item %d: %v (got %d bytes, want %d)", i, err, len(got), len(want[i]))
		}
	}
	if _, err := w.WriteItemBytes("late", []byte("x"), func() { dones[1].Add(1) }); !errors.Is(err, ErrClosed) || dones[1].Load() != 2 {
		t.Fatalf("after Close: %v, done count %d", err, dones[1].Load())
	}
}

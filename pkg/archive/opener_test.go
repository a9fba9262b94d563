package archive

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"testing"

	"filippo.io/age"

	"github.com/cfbackup/cfbackup/pkg/store/mem"
)

// An Opener reads the header and final chunk of a segment once: every further item of the segment
// costs one ranged GET, also with items read concurrently, and every item still comes back intact.
func TestOpenerOneGETPerItem(t *testing.T) {
	id, recs := newKey(t)
	st := mem.New()
	var items []item
	for i := 0; i < 60; i++ {
		b := sqlText(30_000+i*1000, int64(i))
		if i%3 == 0 {
			b = randomBytes(50_000, int64(i))
		}
		items = append(items, item{fmt.Sprintf("o/%02d", i), b})
	}
	refs, segs := writeAll(t, st, recs, WriterOptions{ChunkSize: 1 << 20, SegmentSize: 1 << 20}, items)
	if len(segs) < 2 {
		t.Fatalf("want several segments, got %d", len(segs))
	}
	cs := &countingStore{Store: st}
	op := NewOpener(cs, segMap(segs), []age.Identity{id})
	var wg sync.WaitGroup
	errs := make(chan error, len(refs))
	work := make(chan int)
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				rc, err := op.Open(context.Background(), refs[i])
				if err != nil {
					errs <- err
					continue
				}
				got, err := io.ReadAll(rc)
				rc.Close()
				if err != nil || !bytes.Equal(got, items[i].data) {
					errs <- fmt.Errorf("item %d: %v (%d bytes)", i, err, len(got))
				}
			}
		}()
	}
	for i := range refs {
		work <- i
	}
	close(work)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	// One GET per item, plus header and final chunk of each segment (more only when concurrent
	// readers open the same segment before the first open finished).
	if g, max := cs.gets.Load(), int64(len(refs)+2*len(segs)*4); g > max {
		t.Fatalf("%d GETs for %d items in %d segments, want ≤ %d", g, len(refs), len(segs), max)
	}
	t.Logf("%d GETs for %d items in %d segments", cs.gets.Load(), len(refs), len(segs))

	// Sequentially, at most one GET per item once the segment is known (none for an item inside the
	// cached first or last age chunk).
	before := cs.gets.Load()
	for i := range refs {
		rc, err := op.Open(context.Background(), refs[i])
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(io.Discard, rc); err != nil {
			t.Fatal(err)
		}
		rc.Close()
	}
	if g := cs.gets.Load() - before; g > int64(len(refs)) || g < int64(len(refs)-2*len(segs)) {
		t.Fatalf("second pass: %d GETs for %d items", g, len(refs))
	}
}

// Bytes damaged after the Opener cached a segment's header are still caught, and a wrong
// identity is still refused with a cached header.
func TestOpenerStillChecks(t *testing.T) {
	id, recs := newKey(t)
	st := mem.New()
	items := []item{{"a", sqlText(100_000, 1)}, {"b", sqlText(100_000, 2)}}
	refs, segs := writeAll(t, st, recs, WriterOptions{ChunkSize: 1 << 20}, items)
	op := NewOpener(st, segMap(segs), []age.Identity{id})
	read := func(op *Opener, ref ItemRef) error {
		rc, err := op.Open(context.Background(), ref)
		if err != nil {
			return err
		}
		defer rc.Close()
		_, err = io.Copy(io.Discard, rc)
		return err
	}
	if err := read(op, refs[0]); err != nil {
		t.Fatal(err)
	}
	replace(t, st, segs[0].Key, func(b []byte) []byte {
		b[len(b)-int(segs[0].PlainSize)+int(refs[1].Chunks[0].Offset+refs[1].Chunks[0].Length/2)] ^= 0x40
		return b
	})
	if err := read(op, refs[1]); !errors.Is(err, ErrIntegrity) {
		t.Fatalf("damaged item read through the cache: %v", err)
	}
	other, _ := newKey(t)
	op2 := NewOpener(st, segMap(segs), []age.Identity{other})
	op2.heads = op.heads // header bytes cached, but the identity must still unwrap the key
	if err := read(op2, refs[0]); !errors.Is(err, ErrNoIdentity) {
		t.Fatalf("wrong identity with a cached header: %v", err)
	}
}

// countingIdentity counts unwraps.
type countingIdentity struct {
	age.Identity
	n atomic.Int64
}

func (c *countingIdentity) Unwrap(s []*age.Stanza) ([]byte, error) {
	c.n.Add(1)
	return c.Identity.Unwrap(s)
}

// An Opener unwraps each segment's file key once, however many items it reads from the segment;
// with several identities the right one is found as age would.
func TestOpenerUnwrapsOncePerSegment(t *testing.T) {
	id, recs := newKey(t)
	other, _ := newKey(t)
	st := mem.New()
	var items []item
	for i := 0; i < 30; i++ {
		items = append(items, item{fmt.Sprintf("o/%02d", i), sqlText(40_000, int64(i))})
	}
	refs, segs := writeAll(t, st, recs, WriterOptions{ChunkSize: 1 << 20, SegmentSize: 256 << 10}, items)
	ci := &countingIdentity{Identity: id}
	op := NewOpener(st, segMap(segs), []age.Identity{other, ci})
	for i, ref := range refs {
		rc, err := op.Open(context.Background(), ref)
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(rc)
		rc.Close()
		if err != nil || !bytes.Equal(got, items[i].data) {
			t.Fatalf("item %d: %v", i, err)
		}
	}
	if n := ci.n.Load(); n != int64(len(segs)) {
		t.Fatalf("%d unwraps for %d segments", n, len(segs))
	}
}

package archive

import (
	"bytes"
	"context"
	"io"
	"sync"
	"testing"

	"filippo.io/age"

	"github.com/cfbackup/cfbackup/pkg/store"
	"github.com/cfbackup/cfbackup/pkg/store/mem"
)

// putClasses records the StorageClass of every Put.
type putClasses struct {
	store.Store
	mu      sync.Mutex
	classes map[string]string
}

func (p *putClasses) Put(ctx context.Context, key string, r io.Reader, o store.PutOptions) error {
	p.mu.Lock()
	p.classes[key] = o.StorageClass
	p.mu.Unlock()
	return p.Store.Put(ctx, key, r, o)
}

// Each segment has one storage class: items of another class start a new segment, the class is sent
// with the segment's Put and recorded in its SegmentInfo, and every item reads back.
func TestSegmentsHaveOneStorageClass(t *testing.T) {
	id, recs := newKey(t)
	st := &putClasses{Store: mem.New(), classes: map[string]string{}}
	w, err := NewWriter(context.Background(), WriterOptions{Store: st, Recipients: recs, StorageClass: "STANDARD_IA"})
	if err != nil {
		t.Fatal(err)
	}
	items := []struct {
		class, name string
		data        []byte
	}{
		{"STANDARD_IA", "a", sqlText(5000, 1)},
		{"STANDARD_IA", "b", sqlText(7000, 2)},
		{"GLACIER_IR", "c", randomBytes(3000, 3)},
		{"", "d", sqlText(100, 4)},
	}
	var refs []ItemRef
	for _, it := range items {
		w.SetStorageClass(it.class)
		ref, err := w.WriteItem(it.name, bytes.NewReader(it.data))
		if err != nil {
			t.Fatal(err)
		}
		refs = append(refs, ref)
	}
	segs, err := w.Close()
	if err != nil {
		t.Fatal(err)
	}
	if len(segs) != 3 {
		t.Fatalf("%d segments, want 3 (one per run of a class)", len(segs))
	}
	bySeg := segMap(segs)
	for i, it := range items {
		s := bySeg[refs[i].Chunks[0].Segment]
		if s.StorageClass != it.class || st.classes[s.Key] != it.class {
			t.Errorf("item %s: segment class %q, Put with %q, want %q", it.name, s.StorageClass, st.classes[s.Key], it.class)
		}
		got, err := readItem(t, st, segs, []age.Identity{id}, refs[i])
		if err != nil || !bytes.Equal(got, it.data) {
			t.Errorf("item %s reads back wrong: %v", it.name, err)
		}
	}
	if refs[0].Chunks[0].Segment != refs[1].Chunks[0].Segment {
		t.Error("two items of one class went into different segments")
	}
}

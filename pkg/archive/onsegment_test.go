package archive

import (
	"bytes"
	"context"
	"crypto/rand"
	"sync"
	"testing"
	"time"

	"github.com/cfbackup/cfbackup/pkg/store"
	"github.com/cfbackup/cfbackup/pkg/store/mem"
)

func segmentObjects(t *testing.T, st store.Store) map[string]bool {
	t.Helper()
	out := map[string]bool{}
	if err := st.List(context.Background(), SegmentPrefix, func(oi store.ObjectInfo) error { out[oi.Key] = true; return nil }); err != nil {
		t.Fatal(err)
	}
	return out
}

// OnSegment reports every completed segment exactly as Close returns it, and an aborted Writer keeps
// the segments it reported (a resume journal points into them) while deleting the rest.
func TestOnSegmentReportsAndKeeps(t *testing.T) {
	_, rcp := newKey(t)
	item := make([]byte, 40<<10)
	write := func(w *Writer, n int) []ItemRef {
		var refs []ItemRef
		for i := 0; i < n; i++ {
			rand.Read(item)
			ref, err := w.WriteItem("obj", bytes.NewReader(item))
			if err != nil {
				t.Fatal(err)
			}
			refs = append(refs, ref)
		}
		return refs
	}

	st := mem.New()
	w, err := NewWriter(context.Background(), WriterOptions{Store: st, Recipients: rcp, ChunkSize: 64 << 10, SegmentSize: 100 << 10, Concurrency: 2})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	got := map[string]SegmentInfo{}
	w.OnSegment(func(g SegmentInfo) { mu.Lock(); got[g.ID] = g; mu.Unlock() })
	write(w, 20)
	segs, err := w.Close()
	if err != nil {
		t.Fatal(err)
	}
	if len(segs) < 3 || len(got) != len(segs) {
		t.Fatalf("reported %d segment(s), Close returned %d", len(got), len(segs))
	}
	for _, s := range segs {
		if got[s.ID] != s {
			t.Fatalf("reported %+v, Close returned %+v", got[s.ID], s)
		}
	}

	// Aborted: what was reported stays; without a callback everything is deleted.
	for _, subscribe := range []bool{true, false} {
		st := mem.New()
		w, err := NewWriter(context.Background(), WriterOptions{Store: st, Recipients: rcp, ChunkSize: 64 << 10, SegmentSize: 100 << 10, Concurrency: 2})
		if err != nil {
			t.Fatal(err)
		}
		reported := map[string]bool{}
		if subscribe {
			w.OnSegment(func(g SegmentInfo) { mu.Lock(); reported[g.Key] = true; mu.Unlock() })
		}
		write(w, 20)
		for deadline := time.Now().Add(10 * time.Second); len(segmentObjects(t, st)) < 3 && time.Now().Before(deadline); {
			time.Sleep(time.Millisecond) // let some uploads finish
		}
		w.Abort()
		left := segmentObjects(t, st)
		if !subscribe {
			if len(left) != 0 {
				t.Fatalf("aborted Writer without a callback left %d segment(s)", len(left))
			}
			continue
		}
		if len(reported) == 0 || len(left) != len(reported) {
			t.Fatalf("aborted Writer: %d segment(s) reported, %d left", len(reported), len(left))
		}
		for k := range left {
			if !reported[k] {
				t.Fatalf("segment %s left but never reported", k)
			}
		}
	}
}

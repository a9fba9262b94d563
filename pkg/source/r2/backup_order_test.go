package r2_test

import (
	"bytes"
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/cfbackup/cfbackup/pkg/source/r2"
)

// Objects go into the archive as their GETs complete: the first key's GET is slow, and the objects
// after it, fetched meanwhile within a prefetch budget that holds only a few of them, are written
// before it (their frames lie earlier in the segment) instead of waiting in the budget for it.
// The catalogue still lists every object in key order, and the snapshot restores exactly.
func TestBackupWritesInCompletionOrder(t *testing.T) {
	e := newEnv(t, "src", "dst")
	ctx := context.Background()
	model := map[string]obj{}
	for i := 0; i < 24; i++ {
		k := fmt.Sprintf("k/%02d", i)
		model[k] = bigObject(int64(i), 64<<10+i*1000)
		e.put(t, "src", k, model[k])
	}
	slow := "k/00"
	o := r2.BackupOptions{Bucket: "src", Concurrency: 4, PrefetchBudget: 4 * 80 << 10, BeforeGet: func(key string) {
		if key == slow {
			time.Sleep(time.Second)
		}
	}}
	m, st, err := e.backup(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	if st.Fetched != 24 {
		t.Fatalf("fetched %d objects, want 24", st.Fetched)
	}
	cat, err := m.OpenCatalogue(e.ids)
	if err != nil {
		t.Fatal(err)
	}
	items, err := r2.Select(cat, "src", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(items) != 24 {
		t.Fatalf("%d items, want 24", len(items))
	}
	var slowOff int64
	before := 0 // objects whose frame lies before the slow object's
	for i, it := range items {
		if want := fmt.Sprintf("k/%02d", i); it.Object.Key != want {
			t.Fatalf("catalogue item %d is %q, want %q: not in key order", i, it.Object.Key, want)
		}
		if it.Object.Key == slow {
			slowOff = it.Chunks[0].Offset
		}
	}
	for _, it := range items[1:] {
		if it.Chunks[0].Segment == items[0].Chunks[0].Segment && it.Chunks[0].Offset < slowOff {
			before++
		}
	}
	t.Logf("%d of 23 objects written before the slow first key", before)
	if before < 10 {
		t.Fatalf("only %d of 23 objects were written before the slow first key: the writer waited for it in key order", before)
	}
	plan, err := r2.PlanRestore(ctx, e.cl, items, r2.Target{Bucket: "dst"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r2.Restore(ctx, e.cl, r2.Opener(e.eng.Opener(m, e.ids)), plan, 4); err != nil {
		t.Fatal(err)
	}
	for k, ob := range model {
		if !bytes.Equal(e.get(t, "dst", k), ob.data) {
			t.Fatalf("%s restored with other bytes", k)
		}
	}
}

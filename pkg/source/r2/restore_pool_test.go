package r2_test

import (
	"bytes"
	"context"
	"fmt"
	"testing"

	"github.com/cfbackup/cfbackup/pkg/s3api"
	"github.com/cfbackup/cfbackup/pkg/source/r2"
)

// A restore's decoded objects (1–5 MiB, read whole) and part buffers (objects of 21 MiB, in parts)
// come from one pool and go back to it: after the first few objects nothing more is allocated, and
// what the pool holds never passes its bound (the memory the restore's limit counts for it), which
// depends on the workers and the part size, not on how many objects there are.
func TestRestorePoolReusesWithinBound(t *testing.T) {
	e := newEnv(t, "src", "dst")
	ctx := context.Background()
	objs := map[string]obj{}
	for i := 0; i < 24; i++ {
		objs[fmt.Sprintf("mid/%02d", i)] = bigObject(int64(i), 1<<20+(i%5)<<20+i*4096)
	}
	for i := 0; i < 2; i++ {
		objs[fmt.Sprintf("big/%d", i)] = bigObject(int64(100+i), 21<<20)
	}
	m, items := largeSnapshot(t, e, objs)
	const workers, streams = 2, 3
	cl := watchedClient(t, e, 5<<20, streams, &partWatch{})
	plan, err := r2.PlanRestore(ctx, cl, items, r2.Target{Bucket: "dst"})
	if err != nil {
		t.Fatal(err)
	}
	var st s3api.PoolStats
	var kept, bound int64
	defer r2.SetRestorePoolHook(func(p *s3api.Pool, b int64) { st, kept = p.Stats(); bound = b })()
	if _, err := r2.Restore(ctx, cl, r2.Opener(e.eng.Opener(m, e.ids)), plan, workers); err != nil {
		t.Fatal(err)
	}
	for k, o := range objs {
		if !bytes.Equal(e.get(t, "dst", k), o.data) {
			t.Fatalf("%s restored with other bytes", k)
		}
	}
	t.Logf("%d buffers taken, %d allocated, %d dropped; held at most %d MiB of a %d MiB bound, %d MiB kept at the end",
		st.Gets, st.Allocs, st.Drops, st.MostHeld>>20, bound>>20, kept>>20)
	// 24 objects read whole and 2 × 5 parts: 34 buffers taken.
	if st.Gets < 34 || st.Allocs > 2*(workers+streams) {
		t.Fatalf("%d buffers taken, %d allocated: want at least 34 taken and at most %d allocated", st.Gets, st.Allocs, 2*(workers+streams))
	}
	if bound <= 0 || st.MostHeld > bound || kept > bound {
		t.Fatalf("held up to %d bytes, %d kept: bound %d", st.MostHeld, kept, bound)
	}
}

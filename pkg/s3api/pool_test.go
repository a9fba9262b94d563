package s3api

import (
	"math/rand"
	"testing"
)

// The pool never holds more than its bound in buffers handed out and kept, whatever sizes come and
// go (a free list that kept every size it ever saw would grow here with every new size), and it
// reuses: a steady mix of sizes allocates nothing once warm.
func TestPoolBound(t *testing.T) {
	const max = 40 << 20
	p := NewPool(max)
	rng := rand.New(rand.NewSource(1))
	var out [][]byte
	for i := 0; i < 6000; i++ {
		if len(out) < 4 && rng.Intn(2) == 0 {
			n := 1 + rng.Intn(9<<20) // one to 9 MiB, a new size nearly every time
			b := p.Get(n)
			if len(b) != n {
				t.Fatalf("Get(%d) gave %d bytes", n, len(b))
			}
			out = append(out, b)
		} else if len(out) > 0 {
			k := rng.Intn(len(out))
			p.Put(out[k])
			out = append(out[:k], out[k+1:]...)
		}
		st, kept := p.Stats()
		if st.MostHeld > max || kept > max {
			t.Fatalf("after %d steps: held up to %d bytes, %d kept: bound %d", i, st.MostHeld, kept, max)
		}
	}
	st, kept := p.Stats()
	t.Logf("%d gets, %d allocations, %d dropped, most held %d MiB, %d MiB kept", st.Gets, st.Allocs, st.Drops, st.MostHeld>>20, kept>>20)
	if st.Allocs > st.Gets/4 {
		t.Fatalf("%d allocations for %d gets: the pool does not reuse", st.Allocs, st.Gets)
	}

	// A steady mix within the bound: no allocation after the first round.
	q := NewPool(max)
	sizes := []int{3 << 20, 5<<20 + 100, 8<<20 + 32<<10, 8 << 20, 700 << 10}
	for round := 0; round < 50; round++ {
		var bs [][]byte
		for _, n := range sizes {
			bs = append(bs, q.Get(n))
		}
		for _, b := range bs {
			q.Put(b)
		}
		if st, _ := q.Stats(); round > 0 && st.Allocs != int64(len(sizes)) {
			t.Fatalf("round %d: %d allocations, want the first round's %d only", round, st.Allocs, len(sizes))
		}
	}
}

// In use beyond the bound (a caller that does not bound its buffers by it), the pool keeps nothing
// more: what comes back is dropped until what is out falls under the bound.
func TestPoolKeepsNothingOverBound(t *testing.T) {
	p := NewPool(10 << 20)
	var bs [][]byte
	for i := 0; i < 4; i++ {
		bs = append(bs, p.Get(4<<20))
	}
	for _, b := range bs {
		p.Put(b)
		if _, kept := p.Stats(); kept > 10<<20 {
			t.Fatalf("kept %d bytes over a 10 MiB bound", kept)
		}
	}
	if _, kept := p.Stats(); kept != 8<<20 {
		t.Fatalf("kept %d bytes, want the two 4 MiB buffers that fit the bound", kept)
	}
}

func TestPoolClass(t *testing.T) {
	for _, tc := range [][2]int{{1, 64 << 10}, {64 << 10, 64 << 10}, {8 << 20, 8 << 20}, {8<<20 + 32<<10, 8<<20 + 512<<10}, {3 << 20, 3 << 20}} {
		if got := poolClass(tc[0]); got != tc[1] {
			t.Errorf("poolClass(%d) = %d, want %d", tc[0], got, tc[1])
		}
	}
}

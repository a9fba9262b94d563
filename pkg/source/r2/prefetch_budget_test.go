package r2

import (
	"slices"
	"testing"
)

// The prefetch budget grows with the GET workers, never below the 24 MiB a backup always had and
// never above MaxPrefetchBudget whatever --r2-concurrency says: memory is bounded by the workers.
func TestPrefetchBudget(t *testing.T) {
	for _, tc := range []struct {
		conc int
		want int64
	}{
		{1, PrefetchBudget}, {4, PrefetchBudget}, {DefaultConcurrency, 48 << 20}, {16, 96 << 20}, {256, MaxPrefetchBudget},
	} {
		if got := prefetchBudget(tc.conc); got != tc.want {
			t.Errorf("prefetchBudget(%d) = %d MiB, want %d MiB", tc.conc, got>>20, tc.want>>20)
		}
	}
}

// The free list keeps the largest buffers that come back (most bytes pass through them and they
// cost most to allocate and clear), drops the smallest past freeListBytes and buffers under minKeep
// at once, and never hands a buffer to an object of less than half its size.
func TestPrefetchFreeList(t *testing.T) {
	p := &prefetcher{}
	const mib = 1 << 20
	p.putFree(make([]byte, 0, minKeep-1))
	if len(p.free) != 0 {
		t.Fatalf("a buffer under minKeep was kept")
	}
	for _, c := range []int{mib, 4 * mib, 2 * mib, 3 * mib, 4 * mib, 4 * mib} { // 18 MiB > 16 MiB
		p.putFree(make([]byte, 0, c))
	}
	if p.freeBytes > freeListBytes {
		t.Fatalf("free list holds %d MiB, bound %d MiB", p.freeBytes/mib, freeListBytes/mib)
	}
	var caps []int
	var sum int64
	for _, b := range p.free {
		caps = append(caps, cap(b)/mib)
		sum += int64(cap(b))
	}
	if sum != p.freeBytes {
		t.Fatalf("freeBytes %d, buffers add up to %d", p.freeBytes, sum)
	}
	// 18 MiB came back: the 1 and 2 MiB buffers went, the four largest (15 MiB) stay.
	slices.Sort(caps)
	if !slices.Equal(caps, []int{3, 4, 4, 4}) {
		t.Fatalf("kept %v MiB, want [3 4 4 4]", caps)
	}
	// A 1 MiB object takes none of them (each is over twice its size); a 1.5 MiB one the 3 MiB
	// buffer, the smallest that fits.
	before := p.freeBytes
	if b := p.alloc(mib); cap(b) >= 2*mib || len(b) != mib {
		t.Fatalf("alloc(1 MiB) = len %d cap %d, want a new buffer near 1 MiB", len(b), cap(b))
	}
	if p.freeBytes != before {
		t.Fatalf("alloc(1 MiB) changed the free list (%d → %d bytes)", before, p.freeBytes)
	}
	if b := p.alloc(3 * mib / 2); cap(b) != 3*mib || len(b) != 3*mib/2 {
		t.Fatalf("alloc(1.5 MiB) = cap %d, want the kept 3 MiB buffer", cap(b))
	}
	if p.freeBytes != before-3*mib || len(p.free) != 3 {
		t.Fatalf("after alloc(1.5 MiB) the free list holds %d buffers, %d bytes", len(p.free), p.freeBytes)
	}
}

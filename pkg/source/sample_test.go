package source

import (
	"slices"
	"testing"
)

// TestSamplePositionsUniformAndSeeded: Floyd's draw gives n distinct ascending positions in range,
// the same ones for the same seed and source, and every position about equally often.
func TestSamplePositionsUniformAndSeeded(t *testing.T) {
	const total, n, runs = 50, 5, 20000
	hits := make([]int, total)
	for s := range uint64(runs) {
		p := samplePositions(total, n, Rand(s, "r2/b"))
		if len(p) != n || !slices.IsSorted(p) || p[0] < 0 || p[n-1] >= total {
			t.Fatalf("seed %d: %v", s, p)
		}
		for i := 1; i < n; i++ {
			if p[i] == p[i-1] {
				t.Fatalf("seed %d: repeated position in %v", s, p)
			}
		}
		for _, x := range p {
			hits[x]++
		}
	}
	want := runs * n / total // 2000
	for i, h := range hits {
		if h < want*85/100 || h > want*115/100 {
			t.Fatalf("position %d drawn %d times in %d runs, want about %d", i, h, runs, want)
		}
	}
	a, _ := SampleIndexesSeeded(1000, "1%", 42, "r2/b")
	b, _ := SampleIndexesSeeded(1000, "1%", 42, "r2/b")
	c, _ := SampleIndexesSeeded(1000, "1%", 42, "r2/other")
	if len(a) != 10 || !slices.Equal(a, b) || slices.Equal(a, c) {
		t.Fatalf("seeded samples %v %v %v", a, b, c)
	}
	if all, _ := SampleIndexesSeeded(3, "", 1, ""); !slices.Equal(all, []int{0, 1, 2}) {
		t.Fatalf("no sample: %v", all)
	}
}

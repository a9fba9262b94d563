package engine

import (
	"errors"
	"slices"
	"testing"
)

func TestSampleIndexes(t *testing.T) {
	for _, c := range []struct {
		sample string
		total  int
		want   int
	}{
		{"", 10, 10}, {"3", 10, 3}, {"30", 10, 10}, {"10%", 10, 1}, {"1%", 10, 1}, {"25%", 10, 3},
		{"100%", 7, 7}, {"0.5%", 1000, 5}, {"5", 0, 0}, {"50%", 0, 0},
	} {
		idx, err := SampleIndexes(c.total, c.sample)
		if err != nil {
			t.Fatalf("%q of %d: %v", c.sample, c.total, err)
		}
		if len(idx) != c.want || !slices.IsSorted(idx) || len(slices.Compact(slices.Clone(idx))) != len(idx) {
			t.Fatalf("%q of %d: %v, want %d sorted distinct indexes", c.sample, c.total, idx, c.want)
		}
		for _, i := range idx {
			if i < 0 || i >= c.total {
				t.Fatalf("%q of %d: index %d out of range", c.sample, c.total, i)
			}
		}
	}
	// Repeated samples cover different items (random, not always the first ones).
	seen := map[int]bool{}
	for range 20 {
		idx, _ := SampleIndexes(100, "5")
		for _, i := range idx {
			seen[i] = true
		}
	}
	if len(seen) <= 5 {
		t.Fatalf("20 samples of 5 covered only %d items", len(seen))
	}
	for _, bad := range []string{"0", "-3", "x", "0%", "101%", "NaN%", "%", "5 %x"} {
		if _, err := SampleIndexes(10, bad); !errors.Is(err, ErrUsage) {
			t.Errorf("sample %q: err %v, want ErrUsage", bad, err)
		}
	}
}

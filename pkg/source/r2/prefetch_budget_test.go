package r2

import "testing"

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

package r2

import "testing"

// TestStreamingBytes: the restore's memory limit grows by one frame buffer per worker that restores
// an object over keepBuffer, and not at all when every object is small or is left alone.
func TestStreamingBytes(t *testing.T) {
	const part = 8 << 20
	plan := func(sizes []int64, action string) *Plan {
		p := &Plan{}
		for _, s := range sizes {
			p.Entries = append(p.Entries, PlanEntry{Size: s, Action: action})
		}
		return p
	}
	small := []int64{1, 1000, keepBuffer - 1, keepBuffer}
	for _, tc := range []struct {
		name    string
		p       *Plan
		workers int
		want    int64
	}{
		{"small objects only", plan(small, "put"), 8, 0},
		{"objects that fit one PUT", plan([]int64{keepBuffer + 1, part, 4 << 20}, "put"), 8, 3 * streamReaderBytes},
		{"two large", plan(append(small, part+1, 50<<20), "put"), 8, 2 * streamReaderBytes},
		{"more large than workers", plan([]int64{part + 1, part + 2, part + 3, part + 4}, "overwrite"), 3, 3 * streamReaderBytes},
		{"large but left alone", plan([]int64{part + 1, 50 << 20}, "same"), 8, 0},
		{"large but skipped", plan([]int64{part + 1}, "skip"), 8, 0},
	} {
		if got := tc.p.streamingBytes(tc.workers); got != tc.want {
			t.Errorf("%s: %d bytes, want %d", tc.name, got, tc.want)
		}
	}
}

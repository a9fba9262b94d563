package stats_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/cfbackup/cfbackup/pkg/archive"
	"github.com/cfbackup/cfbackup/pkg/manifest"
	"github.com/cfbackup/cfbackup/pkg/stats"
	"github.com/cfbackup/cfbackup/pkg/store/local"
)

// BenchmarkCompute: 365 daily snapshots of two sources, each adding 4 segments and reusing the 20
// before: 3,650 objects in the repository with the index and record objects around them.
func BenchmarkCompute(b *testing.B) {
	ctx := context.Background()
	st, err := local.New(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	var snaps []*manifest.Manifest
	var segs []archive.SegmentInfo
	t0 := time.Date(2026, 1, 1, 2, 0, 0, 0, time.UTC)
	for i := 0; i < 365; i++ {
		for j := 0; j < 4; j++ {
			s := archive.SegmentInfo{ID: fmt.Sprintf("%04d-%d", i, j), Key: fmt.Sprintf("segments/%04d-%d.age", i, j), Size: 1 << 20}
			put(b, st, s.Key, 64)
			segs = append(segs, s)
		}
		for _, k := range []string{"index/%04d.idx", "verify/%04d.json", "audit/%04d.json", "snapshots/%04d.json", "holds/%04d.json", "prune/%04d.json"} {
			put(b, st, fmt.Sprintf(k, i), 64)
		}
		ref := segs[max(0, len(segs)-24):]
		snaps = append(snaps, &manifest.Manifest{ID: fmt.Sprintf("s%04d", i), Time: t0.Add(time.Duration(i) * 24 * time.Hour), Components: []string{"d1", "r2"},
			Size: 50 << 20, Sources: []manifest.Source{{Component: "d1", Name: "app", Size: 10 << 20}, {Component: "r2", Name: "media", Size: 40 << 20}},
			Segments: append([]archive.SegmentInfo(nil), ref...)})
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		s, err := stats.Compute(ctx, st, snaps, stats.Options{})
		if err != nil || s.TotalObjects != 365*10 || s.Growth.Snapshots != 30 {
			b.Fatalf("%v %d", err, s.TotalObjects)
		}
	}
}

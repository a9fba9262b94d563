package stats_test

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/cfbackup/cfbackup/pkg/archive"
	"github.com/cfbackup/cfbackup/pkg/manifest"
	"github.com/cfbackup/cfbackup/pkg/stats"
	"github.com/cfbackup/cfbackup/pkg/store"
	"github.com/cfbackup/cfbackup/pkg/store/local"
)

func put(t testing.TB, st store.Store, key string, n int) {
	t.Helper()
	if err := st.Put(context.Background(), key, bytes.NewReader(make([]byte, n)), store.PutOptions{}); err != nil {
		t.Fatal(err)
	}
}

// TestComputeCountsSharedSegmentsOnce: a segment two snapshots reference is stored (and counted)
// once, added by the older one; a segment no snapshot references is unreferenced; growth groups by
// UTC day and ISO week; components split a mixed snapshot's new bytes by their sizes.
func TestComputeCountsSharedSegmentsOnce(t *testing.T) {
	ctx := context.Background()
	st, err := local.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	put(t, st, "config.json", 10)
	put(t, st, "segments/a.age", 1000)
	put(t, st, "segments/b.age", 500)
	put(t, st, "segments/c.age", 300)
	put(t, st, "segments/orphan.age", 7)
	put(t, st, "snapshots/1.json", 20)
	put(t, st, "locks/x.json", 5)
	seg := func(id string, n int64) archive.SegmentInfo {
		return archive.SegmentInfo{ID: id, Key: "segments/" + id + ".age", Size: n}
	}
	day := time.Date(2026, 11, 30, 10, 0, 0, 0, time.UTC) // a Monday: ISO week 49
	snaps := []*manifest.Manifest{
		{ID: "s3", Time: day.Add(48 * time.Hour), Components: []string{"d1", "r2"}, Size: 4000,
			Sources:  []manifest.Source{{Component: "d1", Name: "app", Size: 3000, Items: 3}, {Component: "r2", Name: "media", Size: 1000, Items: 9}},
			Segments: []archive.SegmentInfo{seg("a", 1000), seg("c", 300)}},
		{ID: "s1", Time: day, Components: []string{"d1"}, Size: 2000,
			Sources: []manifest.Source{{Component: "d1", Name: "app", Size: 2000, Items: 2}}, Segments: []archive.SegmentInfo{seg("a", 1000)}},
		{ID: "s2", Time: day.Add(time.Hour), Components: []string{"d1"}, Size: 2500,
			Sources: []manifest.Source{{Component: "d1", Name: "app", Size: 2500, Items: 2}}, Segments: []archive.SegmentInfo{seg("a", 1000), seg("b", 500)}},
	}
	s, err := stats.Compute(ctx, st, snaps, stats.Options{Held: map[string]bool{"s2": true}, GrowthSnapshots: 30})
	if err != nil {
		t.Fatal(err)
	}
	if s.TotalObjects != 7 || s.TotalBytes != 10+1000+500+300+7+20+5 {
		t.Errorf("total %d objects %d bytes", s.TotalObjects, s.TotalBytes)
	}
	if s.ReferencedBytes != 1800 || s.UnreferencedBytes != 7 || s.LogicalBytes != 8500 {
		t.Errorf("referenced %d unreferenced %d logical %d", s.ReferencedBytes, s.UnreferencedBytes, s.LogicalBytes)
	}
	if s.Snapshots != 3 || s.Held != 1 || s.Locks != 1 || !s.Oldest.Equal(day) {
		t.Errorf("snapshots %d held %d locks %d oldest %v", s.Snapshots, s.Held, s.Locks, s.Oldest)
	}
	want := []int64{1000, 500, 300}
	for i, g := range s.Growth.PerSnapshot {
		if g.StoredAdded != want[i] {
			t.Errorf("snapshot %s added %d, want %d", g.Snapshot, g.StoredAdded, want[i])
		}
	}
	if len(s.Growth.Daily) != 2 || s.Growth.Daily[0].StoredAdded != 1500 || s.Growth.Daily[1].Period != "2026-12-02" {
		t.Errorf("daily %+v", s.Growth.Daily)
	}
	if len(s.Growth.Weekly) != 1 || s.Growth.Weekly[0].Period != "2026-W49" || s.Growth.Weekly[0].StoredAdded != 1800 {
		t.Errorf("weekly %+v", s.Growth.Weekly)
	}
	// d1: s1 1000 + s2 500 + 3/4 of s3's 300; r2: 1/4 of 300.
	if d1, r2 := s.Components[0], s.Components[1]; d1.StoredAdded != 1725 || r2.StoredAdded != 75 || d1.LatestSize != 3000 || d1.Snapshots != 3 {
		t.Errorf("components %+v", s.Components)
	}
	if src := s.Sources[0]; src.Name != "app" || src.Snapshots != 3 || src.LatestItems != 3 || src.LogicalBytes != 7500 {
		t.Errorf("source %+v", src)
	}
	// Growth over the newest snapshot only.
	s, err = stats.Compute(ctx, st, snaps, stats.Options{GrowthSnapshots: 1})
	if err != nil {
		t.Fatal(err)
	}
	if s.Growth.Snapshots != 1 || s.Growth.StoredAdded != 300 || s.Growth.PerSnapshot[0].Snapshot != "s3" {
		t.Errorf("growth of 1: %+v", s.Growth)
	}
}

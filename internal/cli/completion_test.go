package cli

import (
	"bytes"
	"context"
	"slices"
	"testing"
	"time"

	"github.com/cfbackup/cfbackup/pkg/layout"
	"github.com/cfbackup/cfbackup/pkg/manifest"
	"github.com/cfbackup/cfbackup/pkg/store"
	"github.com/cfbackup/cfbackup/pkg/store/mem"
)

// TestCompletionOrdersBySnapshotTime: snapshots of one second are offered by their manifests' full
// time, newest first, as list orders them — not by id, which their keys would give — while snapshots
// of different seconds need no manifest read.
func TestCompletionOrdersBySnapshotTime(t *testing.T) {
	ctx := context.Background()
	st := mem.New()
	sec := time.Date(2026, 12, 4, 16, 0, 0, 0, time.UTC)
	snaps := []*manifest.Manifest{
		// One second, ids in the opposite order of their times.
		{Format: 3, ID: "aaaaaaaaaaaaaaaa", Time: sec.Add(900 * time.Millisecond)},
		{Format: 3, ID: "bbbbbbbbbbbbbbbb", Time: sec.Add(500 * time.Millisecond)},
		{Format: 3, ID: "cccccccccccccccc", Time: sec.Add(100 * time.Millisecond)},
		// Other seconds, one before and one after.
		{Format: 3, ID: "0000000000000000", Time: sec.Add(-time.Second)},
		{Format: 3, ID: "ffffffffffffffff", Time: sec.Add(time.Second)},
	}
	var names []string
	for _, m := range snaps {
		var buf bytes.Buffer
		if err := m.Encode(&buf); err != nil {
			t.Fatal(err)
		}
		key := manifest.Key(m.Time, m.ID)
		if err := st.Put(ctx, key, &buf, store.PutOptions{}); err != nil {
			t.Fatal(err)
		}
		name, _ := layout.ManifestName(key)
		names = append(names, name)
	}
	list := slices.Clone(snaps)
	manifest.SortNewestFirst(list)
	newestFirst(ctx, st, names)
	for i, m := range list {
		if manifest.IDFromKey(layout.Snapshots+names[i]+layout.JSONSuffix) != m.ID {
			t.Fatalf("completion offers %v; list orders %s at %d", names, m.ID, i)
		}
	}
	if got := manifestTime(ctx, st, manifest.Key(snaps[0].Time, snaps[0].ID)); !got.Equal(snaps[0].Time) {
		t.Fatalf("manifest time %v, want %v", got, snaps[0].Time)
	}
	if got := manifestTime(ctx, st, "snapshots/none.json"); !got.IsZero() {
		t.Fatalf("a missing manifest's time: %v, want zero", got)
	}
}

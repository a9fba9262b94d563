package engine_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/cfbackup/cfbackup/pkg/engine"
	"github.com/cfbackup/cfbackup/pkg/layout"
	"github.com/cfbackup/cfbackup/pkg/manifest"
	"github.com/cfbackup/cfbackup/pkg/retention"
	"github.com/cfbackup/cfbackup/pkg/store"
)

func TestShardOfIsStableAndBalanced(t *testing.T) {
	// Fixed values: a change here changes which shard owns a key, and every sharded repository's
	// incremental parents with it (docs/SHARDING.md).
	for key, want := range map[string]int{"a": 5, "k/0001": 2, "img/logo.png": 6} {
		if got := engine.ShardOf(key, 7); got != want {
			t.Fatalf("ShardOf(%q, 7) = %d, want %d", key, got, want)
		}
	}
	for _, n := range []int{1, 3, 16} {
		counts := make([]int, n+1)
		for i := range 30000 {
			counts[engine.ShardOf(fmt.Sprintf("prefix/%08d.json", i), n)]++
		}
		for s := 1; s <= n; s++ {
			if dev := float64(counts[s])/(30000/float64(n)) - 1; dev > 0.1 || dev < -0.1 {
				t.Fatalf("n=%d: shard %d holds %d of 30000 keys (%.1f%% off balance)", n, s, counts[s], dev*100)
			}
		}
	}
	for _, bad := range []string{"", "0/3", "4/3", "1/0", "a/b", "1/2000", "1"} {
		if _, err := engine.ParseShard(bad); !errors.Is(err, engine.ErrUsage) {
			t.Fatalf("ParseShard(%q): %v", bad, err)
		}
	}
	if sh, err := engine.ParseShard("2/5"); err != nil || sh.String() != "2/5" {
		t.Fatalf("ParseShard(2/5) = %v, %v", sh, err)
	}
	if run, i, n, ok := layout.ParseShardPartialKey(layout.ShardPartialKey("r-1", 2, 5)); !ok || run != "r-1" || i != 2 || n != 5 {
		t.Fatalf("partial key round trip: %q %d %d %v", run, i, n, ok)
	}
	for _, k := range []string{"shards/r/0-of-2.json", "shards/r/3-of-2.json", "shards/r/01-of-2.json", "shards/r/1-of-2.tmp", "shards//1-of-1.json"} {
		if _, _, _, ok := layout.ParseShardPartialKey(k); ok {
			t.Fatalf("%s parsed as a partial key", k)
		}
	}
}

// shardPlan is a one-object R2-shaped capture (the prune fixture's way of writing data).
func (f *pruneFixture) shard(t *testing.T, run string, sh engine.Shard) *engine.ShardBackupResult {
	t.Helper()
	plan := &engine.BackupPlan{Components: []string{"r2"}}
	plan.AddCapture(engine.Capture{Component: "r2", Name: "media", Run: func(ctx context.Context, s *engine.Session) error {
		ref, err := s.Writer.WriteItem(fmt.Sprintf("obj-%s-%d", run, sh.I), strings.NewReader(strings.Repeat("payload ", 500)+run))
		if err != nil {
			return err
		}
		s.Add(manifest.Source{Component: "r2", ID: "media", Name: "media", Items: 1}, manifest.Item{Component: "r2", Source: "media", Kind: "object", ItemRef: ref,
			Object: &manifest.ObjectMeta{Key: fmt.Sprintf("k/%s/%d", run, sh.I)}})
		return nil
	}})
	res, err := f.eng.BackupShard(context.Background(), plan, engine.BackupOptions{}, run, sh)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// TestPruneKeepsShardsInFlight: prune keeps the data of partials of a run in flight, removes the
// partials of merged runs, and reports and removes (dry run: only reports) stale ones.
func TestPruneKeepsShardsInFlight(t *testing.T) {
	ctx := context.Background()
	f := newPruneFixture(t, nil)
	inflight := f.shard(t, "run-a", engine.Shard{I: 1, N: 2})
	seg := inflight.Partial.Segments[0].Key
	merged := f.shard(t, "run-m", engine.Shard{I: 1, N: 1})
	mr, err := f.eng.MergeShards(ctx, engine.MergeOptions{Run: "run-m", Shards: 1, Identities: f.ids, KeepPartials: true})
	if err != nil || mr.AlreadyMerged || mr.Snapshot.ID != engine.RunSnapshotID("run-m") {
		t.Fatalf("merge: %+v %v", mr, err)
	}
	if sr := mr.Snapshot.Shards; len(sr) != 1 || sr[0].Shard != "1/1" || sr[0].Partial != merged.Partial.ID || sr[0].Items != 1 || sr[0].Size != merged.Partial.Size ||
		sr[0].Host == "" || sr[0].Host != merged.Partial.Host || !sr[0].Time.Equal(merged.Partial.Time) {
		t.Fatalf("the merged snapshot's shard runs: %+v, partial %s", sr, merged.Partial.ID)
	}
	pol := retention.Policies{Default: retention.Policy{Last: 5}}
	prune := func(dry bool) *engine.PruneResult {
		t.Helper()
		res, err := f.eng.Prune(ctx, engine.PruneOptions{Policies: pol, Grace: time.Hour, DryRun: dry})
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	// Past the grace period twice over: the in-flight shard's segment stays, the merged partial goes
	// (the snapshot holds its data).
	f.clk.Add(2 * time.Hour)
	prune(false)
	f.clk.Add(2 * time.Hour)
	if res := prune(false); len(res.StaleShards) != 0 {
		t.Fatalf("stale shards %v", res.StaleShards)
	}
	if _, err := f.st.Stat(ctx, seg); err != nil {
		t.Fatalf("the segment of a shard in flight was deleted: %v", err)
	}
	if _, err := f.st.Stat(ctx, merged.PartialKey); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("the partial of a merged run is still there: %v", err)
	}
	if _, err := f.eng.Verify(ctx, mr.Snapshot, engine.VerifyOptions{ReadData: true, Identities: f.ids}); err != nil {
		t.Fatalf("the merged snapshot after prune: %v", err)
	}
	// A week on, the run was never completed: the dry run reports the stale partial, prune removes it,
	// and its data goes after the grace period.
	f.clk.Add(engine.StalePartialAge)
	if res := prune(true); len(res.StaleShards) != 1 || !strings.Contains(res.StaleShards[0], "run-a") {
		t.Fatalf("dry run: stale %v", res.StaleShards)
	}
	if _, err := f.st.Stat(ctx, inflight.PartialKey); err != nil {
		t.Fatalf("a dry run removed the partial: %v", err)
	}
	if res := prune(false); len(res.StaleShards) != 1 {
		t.Fatalf("stale %v", res.StaleShards)
	}
	if _, err := f.st.Stat(ctx, inflight.PartialKey); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("stale partial still there: %v", err)
	}
	f.clk.Add(2 * time.Hour)
	prune(false)
	if _, err := f.st.Stat(ctx, seg); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("the stale shard's segment is still there: %v", err)
	}
}

package engine

import (
	"context"
	"fmt"
	"time"

	"github.com/cfbackup/cfbackup/pkg/layout"
	"github.com/cfbackup/cfbackup/pkg/manifest"
	"github.com/cfbackup/cfbackup/pkg/store"
)

// StalePartialAge is how old a partial manifest of a run never merged must be before prune reports
// and removes it: a sharded run in flight is younger, and its shards' data must survive until the merge.
const StalePartialAge = 7 * 24 * time.Hour

// protectPartials marks everything young partials of unmerged runs reference as referenced (a run in
// flight keeps its data), and removes partials whose run was merged (the snapshot references their
// data now) and stale ones (reported in StaleShards). A young partial that cannot be read or does not
// authenticate stops the sweep: prune cannot know what it needs.
func (e *Engine) protectPartials(ctx context.Context, dryRun bool, now time.Time, snaps []*manifest.Manifest, referenced map[string]bool, res *PruneResult) error {
	merged := map[string]bool{}
	for _, m := range snaps {
		merged[m.ID] = true
	}
	var young []string
	var remove []store.ObjectInfo
	err := e.Repo.Store.List(ctx, layout.Shards, func(oi store.ObjectInfo) error {
		run, i, n, ok := layout.ParseShardPartialKey(oi.Key)
		switch {
		case !ok:
		case merged[RunSnapshotID(run)]:
			remove = append(remove, oi)
		case now.Sub(oi.ModTime) >= StalePartialAge:
			res.StaleShards = append(res.StaleShards, fmt.Sprintf("%s: shard %d/%d of run %s, %s old, never merged", oi.Key, i, n, run, now.Sub(oi.ModTime).Round(time.Hour)))
			remove = append(remove, oi)
		default:
			young = append(young, oi.Key)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("list %s: %w", layout.Shards, err)
	}
	if len(young) > 0 {
		if err := e.Repo.RequireKey("pruning beside a sharded run in flight"); err != nil {
			return err
		}
	}
	for _, k := range young {
		p, err := e.loadPartial(ctx, k)
		if err != nil {
			return fmt.Errorf("partial manifest %s of a run in flight: %w", k, err)
		}
		for _, key := range SnapshotObjects(p.Manifest) {
			referenced[key] = true
		}
	}
	for _, oi := range remove {
		if !dryRun {
			if err := e.Repo.Store.Delete(ctx, oi.Key); err != nil {
				res.Errors = append(res.Errors, fmt.Sprintf("delete partial manifest %s: %v", oi.Key, err))
				continue
			}
		}
		res.ObjectsDeleted++
		res.BytesFreed += oi.Size
	}
	return nil
}

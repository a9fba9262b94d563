package cli

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/cfbackup/cfbackup/pkg/engine"
	"github.com/cfbackup/cfbackup/pkg/manifest"
	"github.com/cfbackup/cfbackup/pkg/repo"
	"github.com/cfbackup/cfbackup/pkg/source/r2"
)

// r2SafetySnapshot backs up exactly the live objects an R2 restore with --overwrite overwrite is about
// to replace (label pre-restore, held for SafetyHoldDays) and returns the command that puts them back.
// It returns "" when nothing is overwritten, the target is a directory, or --no-safety-snapshot is set.
func r2SafetySnapshot(cmd *cobra.Command, o *RestoreOptions, eng *engine.Engine, cl *r2.Client, plan *r2.Plan, bucket, restoring string) (*manifest.Manifest, string, error) {
	var keys []string
	for _, e := range plan.Entries {
		if e.Action == "overwrite" {
			keys = append(keys, e.Target)
		}
	}
	if len(keys) == 0 || cl == nil {
		return nil, "", nil
	}
	if o.NoSafety {
		fmt.Fprintf(o.f.IO.Err, "No safety snapshot (--no-safety-snapshot): the %d object(s) this restore overwrites in bucket %s cannot be put back by cfbackup.\n", len(keys), bucket)
		return nil, "", nil
	}
	ctx := cmd.Context()
	secret, serr := writerSecret(ctx, o.f, eng.Repo)
	if serr != nil {
		o.f.Log().Warn("writer secret unavailable: the safety snapshot downloads every object it holds", "err", serr)
	}
	prefix := commonKeyPrefix(keys)
	sp := &engine.BackupPlan{Components: []string{r2.Component}}
	sp.AddCapture(engine.Capture{Component: r2.Component, Name: bucket, Run: func(ctx context.Context, s *engine.Session) error {
		_, err := r2.Backup(ctx, cl, s, r2.BackupOptions{Bucket: bucket, Prefix: prefix, Keys: keys, WriterSecret: secret, Log: s.Log, Progress: s.Progress.Add})
		return err
	}})
	labels := map[string]string{r2.SafetyLabel: "r2:" + bucket, "restoring": restoring}
	sm, err := eng.Backup(ctx, sp, engine.BackupOptions{Components: sp.Components, Labels: labels})
	if err != nil {
		return nil, "", fmt.Errorf("safety snapshot of the %d object(s) of bucket %s this restore would overwrite: %w (nothing was restored; --no-safety-snapshot skips it)", len(keys), bucket, err)
	}
	if err := holdSafetySnapshot(ctx, eng, sm); err != nil {
		o.f.Log().Warn("could not hold the safety snapshot", "snapshot", sm.ID, "err", err)
	}
	undo := fmt.Sprintf("cfbackup restore %s --component r2 --r2-bucket %s --overwrite overwrite --yes", sm.ID, bucket)
	fmt.Fprintf(o.f.IO.Err, "Safety snapshot %s holds the %d object(s) of bucket %s this restore overwrites (label pre-restore, held for %d days).\nTo undo this restore: %s\n",
		sm.ID, len(keys), bucket, SafetyHoldDays, undo)
	if n := countAction(plan, "put"); n > 0 {
		fmt.Fprintf(o.f.IO.Err, "(The undo puts back what was overwritten; it does not delete the %d object(s) this restore adds.)\n", n)
	}
	return sm, undo, nil
}

// commonKeyPrefix is the longest prefix of every key, to list no more of the bucket than needed.
func commonKeyPrefix(keys []string) string {
	if len(keys) == 0 {
		return ""
	}
	p := keys[0]
	for _, k := range keys[1:] {
		for !strings.HasPrefix(k, p) {
			p = p[:len(p)-1]
		}
	}
	return p
}

// findR2Snapshot resolves restore's SNAPSHOT for r2. "latest" (or none) skips R2 safety snapshots:
// they hold only the objects one restore overwrote, so restoring the newest full backup again after a
// restore must not silently mean undoing it. Name a safety snapshot by ID to restore it.
func findR2Snapshot(ctx context.Context, r *repo.Repo, ref string) (*manifest.Manifest, error) {
	if ref == "" || ref == "latest" {
		snaps, _, err := r.ListSnapshots(ctx)
		if err != nil {
			return nil, err
		}
		for _, m := range snaps {
			if _, safety := m.Labels[r2.SafetyLabel]; !safety && slices.Contains(m.Components, r2.Component) {
				return m, nil
			}
		}
		if len(snaps) > 0 {
			if m, err := r.FindSnapshot(ctx, ref, r2.Component); err == nil && slices.Contains(m.Components, r2.Component) {
				return m, nil // only safety snapshots hold r2
			}
			return nil, fmt.Errorf("%w: no snapshot holds the r2 component (%d snapshot(s) hold other components); back buckets up with: cfbackup backup --component r2", engine.ErrNotFound, len(snaps))
		}
	}
	m, err := r.FindSnapshot(ctx, ref, r2.Component)
	if err != nil {
		return nil, err
	}
	if err := snapshotHas(m, r2.Component); err != nil {
		return nil, err
	}
	return m, nil
}

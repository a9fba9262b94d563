package cli

import (
	"context"
	"fmt"

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
	secret, serr := repoSecret(eng.Repo)
	if serr != nil {
		o.f.Log().Warn("writer secret unavailable: the safety snapshot downloads every object it holds", "err", serr)
	}
	prefix := r2.CommonPrefix(keys)
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

// findR2Snapshot resolves restore's SNAPSHOT for r2 and checks it holds the component. "latest" prefers
// real backups over safety snapshots (repo.FindSnapshot), so restoring the newest backup again after a
// restore never silently means undoing it; name a safety snapshot by ID to restore it.
func findR2Snapshot(ctx context.Context, r *repo.Repo, ref string) (*manifest.Manifest, error) {
	m, err := r.FindSnapshot(ctx, ref, r2.Component)
	if err != nil {
		return nil, err
	}
	if err := snapshotHas(m, r2.Component); err != nil {
		return nil, err
	}
	return m, nil
}

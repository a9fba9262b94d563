package cli

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/cfbackup/cfbackup/pkg/audit"

	"github.com/spf13/cobra"

	"github.com/cfbackup/cfbackup/pkg/engine"
	"github.com/cfbackup/cfbackup/pkg/manifest"
	"github.com/cfbackup/cfbackup/pkg/repo"
	"github.com/cfbackup/cfbackup/pkg/store"
)

// CopyOptions are the flags of 'copy'.
type CopyOptions struct {
	f         *Factory
	To        string
	Snapshots []string
	All       bool
	Component string
	NoVerify  bool
	DryRun    bool
}

// NewCmdCopy replicates snapshots to a second repository.
func NewCmdCopy(f *Factory, runF func(*CopyOptions) error) *cobra.Command {
	o := &CopyOptions{f: f}
	cmd := &cobra.Command{
		Use:   "copy --to REPLICA|LOCATION (SNAPSHOT ... | --all)",
		Short: "Replicate snapshots to a second repository (another region, jurisdiction or provider)",
		Long: `Copy snapshots, as they are (still encrypted to this repository's recipients), to a second
repository: a replica named in the config file (replicas.NAME.repository, s3_endpoint, s3_region,
s3_path_style; keys from CFBACKUP_REPLICA_<NAME>_AWS_ACCESS_KEY_ID / _AWS_SECRET_ACCESS_KEY, else
AWS_*), or a location given directly (a path, file:// or s3://BUCKET/PREFIX with the main S3 settings).

When the destination holds no repository yet it is made a replica of this one (same id, recipients and
writer secret). A destination with another format version or other recipients is refused.

For each snapshot: segments and side objects first — each streamed, checked against its recorded
SHA-256, and skipped when the destination already has it (so an interrupted copy resumes) —, then
every segment is read back from the destination and checked (unless --no-verify), and the manifest
is written last: a snapshot appears at the destination only once it is complete there. Running the
same copy again changes nothing. No identity is needed. Both repositories are locked shared while a
snapshot is copied: a prune running at the destination makes the copy wait (--retry-lock) or exit 10.`,
		Example: `  cfbackup copy --to dr-eu --all
  cfbackup copy --to s3://backups-eu/prod latest
  cfbackup copy --to /mnt/offsite 3f2a9c1e 77b0 --json`,
		Annotations: map[string]string{"mutating": "true", annotationReads: audit.ReadsCiphertext},
		RunE: func(cmd *cobra.Command, args []string) error {
			o.Snapshots = args
			if runF != nil {
				return runF(o)
			}
			return copyRun(cmd, o)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&o.To, "to", "", "destination: a replica name from the config file, or a location")
	fl.BoolVar(&o.All, "all", false, "copy every snapshot (those already at the destination are skipped)")
	fl.StringVar(&o.Component, "component", "", "with --all or latest: only snapshots that have this component")
	fl.BoolVar(&o.NoVerify, "no-verify", false, "do not read the copied segments back from the destination")
	fl.BoolVar(&o.DryRun, "dry-run", false, "print what would be copied; write nothing")
	return cmd
}

func copyRun(cmd *cobra.Command, o *CopyOptions) error {
	if o.To == "" {
		return usageError{errors.New("--to is required: a replica name from the config file or a location")}
	}
	if o.All == (len(o.Snapshots) > 0) {
		return usageError{errors.New("name the snapshots to copy (ids, prefixes or latest) or pass --all, not both")}
	}
	if o.Component != "" {
		if err := engine.ValidateComponents([]string{o.Component}); err != nil {
			return usageError{err}
		}
	}
	ctx, r, unlock, err := lockedRepo(cmd, o.f, engine.LockShared, o.DryRun)
	if err != nil {
		return err
	}
	defer unlock()
	snaps, err := o.snapshots(ctx, r)
	if err != nil {
		return err
	}
	dstStore, err := o.f.ReplicaStore(ctx, o.To)
	if err != nil {
		return err
	}
	if o.DryRun {
		return o.plan(ctx, r, dstStore, snaps)
	}
	eng := o.f.Engine(r)
	dst, created, err := eng.InitReplica(ctx, dstStore)
	if err != nil {
		return err
	}
	if err := engine.CheckCopyTarget(r, dst); err != nil {
		return err
	}
	if dst.Key() == nil && !dst.Legacy() {
		// A replica made by its own init: authenticate it with its own key (file or identity).
		if dst, err = o.f.openReplicaRepo(ctx, dstStore); err != nil {
			return err
		}
	}
	if created {
		fmt.Fprintf(o.f.IO.Err, "Created a replica of repository %s at %s.\n", r.Config.ID, dstStore.Location())
	}
	results := []*engine.CopyResult{}
	rr := RunResult{}
	for _, m := range snaps {
		for _, c := range m.Components {
			if !containsStr(rr.Components, c) {
				rr.Components = append(rr.Components, c)
			}
		}
		res, err := eng.Copy(ctx, dst, m, engine.CopyOptions{SkipVerify: o.NoVerify, LockRetry: retryLock(cmd)})
		if err != nil {
			o.f.SetResult(rr) // notifications, metrics and the audit record name what was copied before
			return fmt.Errorf("copy snapshot %s to %s: %w (snapshots copied before it are complete there; run the same command again to resume)", m.ID, dstStore.Location(), err)
		}
		results = append(results, res)
		rr.Snapshots = append(rr.Snapshots, res.Snapshot)
		rr.Bytes += res.BytesCopied
		if !o.f.jsonOut {
			printCopied(o.f.IO.Out, m, dstStore.Location(), res)
		}
	}
	o.f.SetResult(rr)
	if o.f.jsonOut {
		return writeJSON(o.f.IO.Out, &CopySummaryMessage{MessageType: msgSummary, To: dstStore.Location(), Created: created, Snapshots: results})
	}
	return nil
}

// snapshots resolves what to copy: the named snapshots, or with --all every readable one, oldest
// first.
func (o *CopyOptions) snapshots(ctx context.Context, r *repo.Repo) ([]*manifest.Manifest, error) {
	var snaps []*manifest.Manifest
	if !o.All {
		for _, ref := range o.Snapshots {
			m, err := r.FindSnapshot(ctx, ref, o.Component)
			if err != nil {
				return nil, err
			}
			snaps = append(snaps, m)
		}
		return snaps, nil
	}
	all, _, err := r.ListSnapshots(ctx)
	if err != nil {
		return nil, err
	}
	for i := len(all) - 1; i >= 0; i-- { // oldest first
		if o.Component == "" || hasComponent(all[i], o.Component) {
			snaps = append(snaps, all[i])
		}
	}
	return snaps, nil
}

// plan prints what copy --dry-run would copy, and which snapshots are already at the destination.
func (o *CopyOptions) plan(ctx context.Context, r *repo.Repo, dstStore store.Store, snaps []*manifest.Manifest) error {
	dst, err := o.f.openReplicaRepo(ctx, dstStore)
	present := map[string]bool{}
	switch {
	case err == nil:
		if err := engine.CheckCopyTarget(r, dst); err != nil {
			return err
		}
		have, _, err := dst.ListSnapshots(ctx)
		if err != nil {
			return err
		}
		for _, m := range have {
			present[m.ID] = true
		}
	case errors.Is(err, repo.ErrNotRepo):
	default:
		return err
	}
	out := o.f.IO.Out
	if o.f.jsonOut {
		plan := []CopyPlanEntry{}
		for _, m := range snaps {
			plan = append(plan, CopyPlanEntry{Snapshot: m.ID, Time: m.Time, Components: m.Components, StoredSize: m.StoredSize, AlreadyCopied: present[m.ID]})
		}
		return writeJSON(out, &CopyPlanMessage{MessageType: msgPlan, DryRun: true, To: dstStore.Location(), Snapshots: plan})
	}
	fmt.Fprintf(out, "Would copy to %s:\n", dstStore.Location())
	for _, m := range snaps {
		state := humanBytes(m.StoredSize)
		if present[m.ID] {
			state = "already there"
		}
		fmt.Fprintf(out, "  %s  %s  %-12v %s\n", m.ID, m.Time.Local().Format("2006-01-02 15:04:05"), m.Components, state)
	}
	return nil
}

// printCopied says what copying one snapshot did.
func printCopied(out io.Writer, m *manifest.Manifest, to string, res *engine.CopyResult) {
	if res.AlreadyCopied {
		fmt.Fprintf(out, "Snapshot %s is already at %s.\n", m.ID, to)
		return
	}
	check := "verified at the destination"
	if !res.Verified {
		check = "not read back (--no-verify)"
	}
	fmt.Fprintf(out, "Copied snapshot %s to %s: %d of %d segment(s), %s; %s.\n", m.ID, to, res.SegmentsCopied, res.Segments, humanBytes(res.BytesCopied), check)
}

func hasComponent(m *manifest.Manifest, c string) bool {
	for _, x := range m.Components {
		if x == c {
			return true
		}
	}
	return false
}

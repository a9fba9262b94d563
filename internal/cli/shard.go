package cli

import (
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/cfbackup/cfbackup/pkg/engine"
)

// Sharded backups (docs/SHARDING.md): `backup --shard I/N --run ID` writes one shard's partial,
// `shard merge` (or the shard that finds all N present) writes the run's one snapshot, and
// `restore --shard I/N` restores one shard of a selection.

// shardRunEnv names the run when --run is not given (a scheduler's run id).
const shardRunEnv = "CFBACKUP_SHARD_RUN"

// bindShardFlags adds --shard and --run to backup.
func bindShardFlags(fs *pflag.FlagSet, o *BackupOptions) {
	fs.StringVar(&o.Shard, "shard", "", "back up only shard I of N of the R2 keys (I/N, e.g. 2/3), into a partial merged once all N committed (docs/SHARDING.md)")
	fs.StringVar(&o.ShardIndex, "shard-index", "", "with --shards N: this shard's 0-based index, as schedulers number them (Kubernetes $(JOB_COMPLETION_INDEX), Nomad ${NOMAD_ALLOC_INDEX}); same as --shard INDEX+1/N")
	fs.IntVar(&o.Shards, "shards", 0, "with --shard-index: N, the number of shards of the run")
	fs.StringVar(&o.Run, "run", "", "with --shard: the run id every shard of one run shares (env "+shardRunEnv+"; e.g. the Job name, ${{ github.run_id }})")
}

// shardFromFlags parses --shard and --run (or CFBACKUP_SHARD_RUN); nil without --shard.
func shardFromFlags(o *BackupOptions) (*engine.Shard, string, error) {
	if o.ShardIndex != "" || o.Shards != 0 {
		if o.Shard != "" {
			return nil, "", usageError{fmt.Errorf("give either --shard I/N or --shard-index K --shards N, not both")}
		}
		k, err := strconv.Atoi(o.ShardIndex)
		if err != nil || k < 0 || o.Shards < 1 || k >= o.Shards {
			return nil, "", usageError{fmt.Errorf("--shard-index %q --shards %d: give a 0-based index below N and N ≥ 1 (e.g. --shard-index 0 --shards 3)", o.ShardIndex, o.Shards)}
		}
		o.Shard = strconv.Itoa(k+1) + "/" + strconv.Itoa(o.Shards)
	}
	if o.Shard == "" {
		if o.Run != "" {
			return nil, "", usageError{fmt.Errorf("--run names a sharded run: give --shard I/N too")}
		}
		return nil, "", nil
	}
	sh, err := engine.ParseShard(o.Shard)
	if err != nil {
		return nil, "", usageError{err}
	}
	run := o.Run
	if run == "" {
		run = os.Getenv(shardRunEnv)
	}
	if err := engine.ValidateRunID(run); err != nil {
		return nil, "", usageError{err}
	}
	for _, c := range o.Components {
		if c != engine.ShardableComponent {
			return nil, "", usageError{fmt.Errorf("--shard splits the keys of R2 buckets: use --component %s (got %s); back up other components in a run of their own", engine.ShardableComponent, c)}
		}
	}
	if len(o.CopyTo) > 0 {
		return nil, "", usageError{fmt.Errorf("--copy-to copies a snapshot, and a shard writes a partial: copy the merged snapshot (cfbackup copy --to NAME %s)", engine.RunSnapshotID(run))}
	}
	return &sh, run, nil
}

// shardBackup runs one shard and, when it finds all N committed and holds an identity, the merge.
func shardBackup(cmd *cobra.Command, o *BackupOptions, eng *engine.Engine, plan *engine.BackupPlan, bo engine.BackupOptions, sh engine.Shard, run string) error {
	ctx := cmd.Context()
	res, err := eng.BackupShard(ctx, plan, bo, run, sh)
	if err != nil {
		return err
	}
	msg := &ShardBackupMessage{MessageType: msgShard, Run: run, Shard: sh.String(), PartialKey: res.PartialKey, Present: res.Present, State: "committed"}
	switch {
	case res.AlreadyMerged:
		msg.State = "already_merged"
	case res.AlreadyCommitted:
		msg.State = "already_committed"
	default:
		msg.Sources = res.Partial.Sources
		for _, s := range res.Partial.Sources {
			msg.Full = msg.Full || s.Parent == ""
		}
		// The audit record, notifications and metrics of this process say what this shard did
		// (objects, bytes, its partial); a merge it runs adds the run's snapshot id.
		o.f.SetResult(backupResult(res.Partial))
	}
	var merr error
	if res.Present == sh.N {
		ids, ierr := o.f.Identities(false)
		switch {
		case ierr != nil:
			merr = ierr
		default:
			var mr *engine.MergeResult
			if mr, merr = eng.MergeShards(ctx, engine.MergeOptions{Run: run, Shards: sh.N, Identities: ids}); merr == nil {
				msg.Merge = mergeMessage(mr)
				rr := backupResult(mr.Snapshot)
				if res.Partial != nil {
					rr = backupResult(res.Partial)
					rr.Snapshots = append(rr.Snapshots, mr.Snapshot.ID)
				}
				o.f.SetResult(rr)
			}
		}
	} else {
		msg.MergePending = fmt.Sprintf("%d of %d shards committed: the last shard to finish merges them (or run 'cfbackup shard merge --run %s --shards %d')", res.Present, sh.N, run, sh.N)
	}
	if err := printShardBackup(o.f, msg); err != nil {
		return err
	}
	return merr
}

func printShardBackup(f *Factory, msg *ShardBackupMessage) error {
	if f.jsonOut {
		return writeJSON(f.IO.Out, msg)
	}
	out := f.IO.Out
	switch msg.State {
	case "already_merged":
		fmt.Fprintf(out, "Run %s is merged already: nothing to do for shard %s.\n", msg.Run, msg.Shard)
	case "already_committed":
		fmt.Fprintf(out, "Shard %s of run %s was committed by another process: its partial stands, nothing written.\n", msg.Shard, msg.Run)
	default:
		fmt.Fprintf(out, "Shard %s of run %s committed (%s).\n", msg.Shard, msg.Run, msg.PartialKey)
		for _, s := range msg.Sources {
			parent := "parent " + s.Parent
			if s.Parent == "" {
				parent = "no parent for this shard: full backup of its objects"
			}
			fmt.Fprintf(out, "  %-2s %-20s %6d object(s) %10s  %d reused  %s\n", s.Component, s.Name, s.Items, humanBytes(s.Size), s.Reused, parent)
		}
	}
	if msg.Merge != nil {
		printMerge(out, msg.Merge)
	} else if msg.MergePending != "" {
		fmt.Fprintln(out, "Not merged yet: "+msg.MergePending+".")
	}
	return nil
}

func mergeMessage(mr *engine.MergeResult) *ShardMergeMessage {
	m := mr.Snapshot
	return &ShardMergeMessage{MessageType: msgShardMerge, Run: mr.Run, Shards: mr.Shards, Snapshot: m.ID, Time: m.Time, AlreadyMerged: mr.AlreadyMerged,
		Items: m.Items, Size: m.Size, Segments: len(m.Segments), PartialsRemoved: mr.PartialsRemoved, ShardRuns: m.Shards}
}

func printMerge(out interface{ Write([]byte) (int, error) }, mm *ShardMergeMessage) {
	if mm.AlreadyMerged {
		fmt.Fprintf(out, "Run %s was merged already: snapshot %s.\n", mm.Run, mm.Snapshot)
		return
	}
	fmt.Fprintf(out, "Merged %d shard(s) of run %s into snapshot %s (%d item(s), %s, %d segment(s)).\n", mm.Shards, mm.Run, mm.Snapshot, mm.Items, humanBytes(mm.Size), mm.Segments)
	for _, r := range mm.ShardRuns {
		fmt.Fprintf(out, "  shard %-5s %8d object(s) %10s  %d reused  %s  on %s (partial %s)\n", r.Shard, r.Items, humanBytes(r.Size), r.Reused,
			time.Duration(r.Duration).Round(time.Millisecond), r.Host, r.Partial)
	}
}

// ShardMergeOptions are the flags of 'shard merge'.
type ShardMergeOptions struct {
	f            *Factory
	Run          string
	Shards       int
	KeepPartials bool
}

// NewCmdShard groups the commands of sharded runs.
func NewCmdShard(f *Factory) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "shard",
		Short: "Merge the shards of a sharded backup run into one snapshot",
		Long: `A sharded run backs up an R2 bucket with N processes (backup --component r2 --shard I/N --run ID),
each writing a partial manifest under shards/<run>/. Once all N have committed, a merge writes them as
one snapshot; the last shard to commit does it by itself when it holds an identity. docs/SHARDING.md.`,
		Args: cobra.NoArgs,
	}
	cmd.AddCommand(NewCmdShardMerge(f, nil))
	return cmd
}

// NewCmdShardMerge merges a complete sharded run.
func NewCmdShardMerge(f *Factory, runF func(*ShardMergeOptions) error) *cobra.Command {
	o := &ShardMergeOptions{f: f}
	cmd := mutating(&cobra.Command{
		Use:   "merge --run ID --shards N",
		Short: "Write the snapshot of a sharded run once all its shards have committed",
		Long: `Check that all N partial manifests of the run are present, of one shard count, authenticated with the
writer secret and of the same buckets, prefixes and labels, then write ONE snapshot (its id derives from
the run id) with a conditional create. Idempotent: when the snapshot exists (an earlier merge, or a
racing merger won) it says so and exits 0. An incomplete run exits 13 naming the missing shards; a run
mixing shard counts or buckets exits 8; a partial that does not authenticate exits 6. Until catalogues
are stored as side objects, merging opens the shards' catalogues: it needs an identity.`,
		Example: `  cfbackup shard merge --run nightly-20261204 --shards 3
  cfbackup shard merge --run "$GITHUB_RUN_ID" --shards 4 --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if runF != nil {
				return runF(o)
			}
			return shardMergeRun(cmd, o)
		},
	})
	cmd.Flags().StringVar(&o.Run, "run", "", "the run id the shards were given (env "+shardRunEnv+")")
	cmd.Flags().IntVar(&o.Shards, "shards", 0, "N, the number of shards of the run (--shard I/N)")
	cmd.Flags().BoolVar(&o.KeepPartials, "keep-partials", false, "leave the partial manifests in place (prune removes them later)")
	return cmd
}

func shardMergeRun(cmd *cobra.Command, o *ShardMergeOptions) error {
	run := o.Run
	if run == "" {
		run = os.Getenv(shardRunEnv)
	}
	if err := engine.ValidateRunID(run); err != nil {
		return usageError{err}
	}
	if o.Shards < 1 || o.Shards > engine.MaxShards {
		return usageError{fmt.Errorf("--shards %d: give N, the number of shards of the run (1 to %d)", o.Shards, engine.MaxShards)}
	}
	unlock, err := lockRepo(cmd, o.f, engine.LockShared, false)
	if err != nil {
		return err
	}
	defer unlock()
	ctx := cmd.Context()
	r, err := o.f.Repo(ctx)
	if err != nil {
		return err
	}
	ids, err := o.f.Identities(false)
	if err != nil {
		return err
	}
	mr, err := o.f.Engine(r).MergeShards(ctx, engine.MergeOptions{Run: run, Shards: o.Shards, Identities: ids, KeepPartials: o.KeepPartials})
	if err != nil {
		return err
	}
	o.f.SetResult(backupResult(mr.Snapshot))
	mm := mergeMessage(mr)
	if o.f.jsonOut {
		return writeJSON(o.f.IO.Out, mm)
	}
	printMerge(o.f.IO.Out, mm)
	return nil
}

// addRestoreShardFlag adds --shard to restore.
func addRestoreShardFlag(fs *pflag.FlagSet, o *RestoreOptions) {
	fs.StringVar(&o.Shard, "shard", "", "r2: restore only the selected objects whose key falls in shard I of N (I/N), so N processes restore a selection together (docs/SHARDING.md)")
}

// restoreShard parses restore's --shard; nil without it.
func restoreShard(o *RestoreOptions) (*engine.Shard, error) {
	if o.Shard == "" {
		return nil, nil
	}
	if o.Component != engine.ShardableComponent {
		return nil, usageError{fmt.Errorf("--shard restores one shard of an R2 selection: use --component %s", engine.ShardableComponent)}
	}
	sh, err := engine.ParseShard(o.Shard)
	if err != nil {
		return nil, usageError{err}
	}
	return &sh, nil
}

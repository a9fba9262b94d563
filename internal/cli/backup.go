package cli

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/cfbackup/cfbackup/pkg/engine"
	"github.com/cfbackup/cfbackup/pkg/manifest"
	"github.com/cfbackup/cfbackup/pkg/repo"
	"github.com/cfbackup/cfbackup/pkg/source"
	"github.com/cfbackup/cfbackup/pkg/store"
)

// BackupOptions are the flags of 'backup'.
type BackupOptions struct {
	f          *Factory
	Components []string
	Labels     []string
	DryRun     bool
	CopyTo     []string
	// StorageClass is --storage-class (the config's storage_class carries it, validated).
	StorageClass string
	// Concurrency bounds the captures run at once (0: the concurrency setting, else 4).
	Concurrency int
	// Shard and Run are --shard I/N and --run ID; ShardIndex and Shards the 0-based form (shard.go).
	Shard, Run, ShardIndex string
	Shards                 int

	// comps are the registered components (pkg/source), each holding its own flags.
	comps map[string]source.Component
}

// NewCmdBackup takes a snapshot.
func NewCmdBackup(f *Factory, runF func(*BackupOptions) error) *cobra.Command {
	o := &BackupOptions{f: f}
	cmd := mutating(&cobra.Command{
		Use:   "backup",
		Short: "Take a snapshot of D1, Durable Objects, R2, KV and the Workers configuration",
		Long: `Take one snapshot of the components chosen with --component (default d1; several with
--component d1,r2 or repeated). The manifest is written last: an interrupted or failed backup leaves no
snapshot and damages nothing. Needs CLOUDFLARE_API_TOKEN and CLOUDFLARE_ACCOUNT_ID in the environment;
no identity (data is encrypted to the repository's recipients).

  --component d1      D1 databases (--d1-database NAME, default every one): D1's export streamed
                      straight into encrypted segments, one item per table, with the Time Travel
                      bookmark. While D1 exports a database it serves no queries: the summary says
                      for how long.
  --component do      Durable Objects (--do-namespace N): exported through cfbackup's Worker module
                      mounted in the application (CFBACKUP_WORKER_URL, and CFBACKUP_WORKER_SECRET or
                      CFBACKUP_WORKER_SECRET_FILE; docs/DURABLE_OBJECTS.md).
  --component r2      R2 buckets (--r2-bucket B, --prefix P) over R2's S3 API, incremental against
                      the previous snapshot (CFBACKUP_R2_ACCESS_KEY_ID / _SECRET_ACCESS_KEY; docs/R2.md).
  --component kv      Workers KV namespaces (--kv-namespace N), keys, values and metadata (docs/KV.md).
  --component config  the Workers configuration and inventory (--config-script, --config-zone;
                      docs/CONFIG_COMPONENT.md).`,
		Example: `  cfbackup backup                                   # d1, every database
  cfbackup backup --component d1 --d1-database app --label ticket=OPS-123
  cfbackup backup --component do --do-namespace sessions --do-concurrency 8
  cfbackup backup --component r2 --r2-bucket assets --prefix img/
  cfbackup backup --component kv --kv-namespace SESSIONS
  cfbackup backup --component config --config-zone 3f2a9c1e0b8d4e6fa1b2c3d4e5f60718
  cfbackup backup --component d1,do,r2,kv,config --copy-to eu
  cfbackup backup --dry-run --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if runF != nil {
				return runF(o)
			}
			return backupRun(cmd, o)
		},
	})
	cmd.Flags().StringSliceVar(&o.Components, "component", []string{"d1"}, "components to back up: "+strings.Join(source.Names(), ", ")+" (comma-separated or repeated)")
	cmd.Flags().StringArrayVar(&o.Labels, "label", nil, "label the snapshot, key=value; repeatable")
	cmd.Flags().BoolVar(&o.DryRun, "dry-run", false, "print what would be backed up; write nothing")
	cmd.Flags().StringVar(&o.StorageClass, "storage-class", "", "S3 storage class of the new segments: "+strings.Join(store.S3Classes, ", ")+" (R2: "+strings.Join(store.R2Classes, ", ")+"); overrides storage_class (docs/STORAGE_CLASSES.md)")
	cmd.Flags().IntVar(&o.Concurrency, "concurrency", 0, "captures (D1 databases, DO namespaces, R2 buckets, components) run at once (env CFBACKUP_CONCURRENCY; default 4; 1 = one after another)")
	cmd.Flags().StringArrayVar(&o.CopyTo, "copy-to", nil, "after the backup, copy the snapshot to this replica (a name from the config file, or a location); repeatable")
	bindShardFlags(cmd.Flags(), o)
	o.comps = bindComponents(source.VerbBackup, cmd.Flags())
	return cmd
}

// bindComponents makes one value of every registered component for a command and binds its flags.
func bindComponents(verb source.Verb, fs *pflag.FlagSet) map[string]source.Component {
	out := map[string]source.Component{}
	for _, n := range source.Names() {
		c, err := source.New(n)
		if err != nil {
			continue
		}
		c.Flags(verb, fs)
		out[n] = c
	}
	return out
}

func parseLabels(in []string) (map[string]string, error) {
	if len(in) == 0 {
		return nil, nil
	}
	out := map[string]string{}
	for _, l := range in {
		k, v, ok := strings.Cut(l, "=")
		if !ok || k == "" {
			return nil, usageError{fmt.Errorf("--label %q: use key=value", l)}
		}
		out[k] = v
	}
	return out, nil
}

func backupRun(cmd *cobra.Command, o *BackupOptions) error {
	unlock, err := lockRepo(cmd, o.f, engine.LockShared, o.DryRun)
	if err != nil {
		return err
	}
	defer unlock()
	ctx := cmd.Context()
	labels, err := parseLabels(o.Labels)
	if err != nil {
		return err
	}
	sh, run, err := shardFromFlags(o)
	if err != nil {
		return err
	}
	r, err := o.f.Repo(ctx)
	if err != nil {
		return err
	}
	if err := engine.ValidateComponents(o.Components); err != nil {
		return usageError{err}
	}
	eng := o.f.Engine(r)
	conc := o.Concurrency
	if conc == 0 && o.f.Config() != nil {
		conc = o.f.Config().Concurrency
	}
	if conc < 0 || conc > engine.MaxConcurrency {
		return usageError{fmt.Errorf("--concurrency %d: use 1 to %d (0 for the default, %d)", conc, engine.MaxConcurrency, engine.DefaultConcurrency)}
	}
	cfg := o.f.Config()
	for name := range cfg.ComponentClasses() {
		if err := engine.ValidateComponents([]string{name}); err != nil {
			return usageError{fmt.Errorf("config components.%s: %w", name, err)}
		}
	}
	bo := engine.BackupOptions{Components: o.Components, Labels: labels, DryRun: o.DryRun, Concurrency: conc,
		StorageClass: cfg.StorageClass, ComponentClasses: cfg.ComponentClasses()}
	if o.StorageClass != "" {
		// The flag names the class of this run's segments, every component's.
		bo.StorageClass, bo.ComponentClasses = cfg.StorageClass, nil
	}
	plan := &engine.BackupPlan{Components: o.Components}
	var secret []byte
	var serr error
	for _, c := range o.Components {
		comp, ok := o.comps[c]
		if !ok {
			return usageError{fmt.Errorf("this build cannot back up component %s", c)}
		}
		if secret == nil && serr == nil {
			if secret, serr = repoSecret(r); serr != nil {
				serr = fmt.Errorf("writer secret unavailable: %w", serr)
			}
		}
		p, err := comp.PlanBackup(ctx, o.f.Env(), source.BackupRequest{Repo: r, WriterSecret: secret, SecretErr: serr, DryRun: o.DryRun})
		if err != nil {
			return err
		}
		plan.Merge(p)
	}
	out := o.f.IO.Out
	if o.DryRun {
		if o.f.jsonOut {
			return writeJSON(out, &BackupPlanMessage{MessageType: msgPlan, DryRun: true, Components: plan.Components, Databases: plan.Databases, Details: plan.Details})
		}
		plan.PrintText(out)
		return nil
	}
	if sh != nil {
		return shardBackup(cmd, o, eng, plan, bo, *sh, run)
	}
	m, err := eng.Backup(ctx, plan, bo)
	if err != nil {
		return err
	}
	o.f.SetResult(backupResult(m))
	copies, cerr := copyAfterBackup(cmd, o, eng, m)
	if o.f.jsonOut {
		if err := writeJSON(out, &BackupSummaryMessage{MessageType: msgSummary, Snapshot: m.ID, Time: m.Time, Duration: time.Duration(m.Duration).String(),
			Components: m.Components, Sources: m.Sources, Items: m.Items, Size: m.Size, StoredSize: m.StoredSize, Segments: len(m.Segments), Labels: m.Labels, Copies: copies}); err != nil {
			return err
		}
		return cerr
	}
	fmt.Fprintf(out, "Snapshot %s saved (%s, %d item(s), %s → %s stored in %d segment(s)).\n", m.ID, time.Duration(m.Duration).Round(time.Millisecond), m.Items, humanBytes(m.Size), humanBytes(m.StoredSize), len(m.Segments))
	for _, s := range m.Sources {
		if s.AtBookmark != "" { // a database with a Time Travel bookmark (D1)
			fmt.Fprintf(out, "  %-2s %-20s %3d table(s) %10s  bookmark %s  blocked %s\n", s.Component, s.Name, s.Tables, humanBytes(s.Size), s.AtBookmark, time.Duration(s.Blocked).Round(time.Millisecond))
			continue
		}
		fmt.Fprintf(out, "  %-2s %-20s %6d item(s) %10s\n", s.Component, s.Name, s.Items, humanBytes(s.Size))
	}
	for _, c := range copies {
		fmt.Fprintf(out, "Copied to %s: %d segment(s), %s, verified at the destination.\n", c.To, c.SegmentsCopied, humanBytes(c.BytesCopied))
	}
	return cerr
}

// copyAfterBackup replicates a fresh snapshot to every --copy-to destination. The snapshot is already
// saved: a failed copy is reported (and exits non-zero) but never undoes the backup.
func copyAfterBackup(cmd *cobra.Command, o *BackupOptions, eng *engine.Engine, m *manifest.Manifest) ([]BackupCopy, error) {
	var out []BackupCopy
	var errs []error
	for _, to := range o.CopyTo {
		st, err := o.f.ReplicaStore(cmd.Context(), to)
		if err == nil {
			var dst *repo.Repo
			var created bool
			if dst, created, err = eng.InitReplica(cmd.Context(), st); err == nil {
				if created {
					fmt.Fprintf(o.f.IO.Err, "Created a replica of repository %s at %s.\n", eng.Repo.Config.ID, st.Location())
				}
				var res *engine.CopyResult
				if res, err = eng.Copy(cmd.Context(), dst, m, engine.CopyOptions{LockRetry: retryLock(cmd)}); err == nil {
					out = append(out, BackupCopy{To: st.Location(), SegmentsCopied: res.SegmentsCopied, BytesCopied: res.BytesCopied, Verified: res.Verified})
					continue
				}
			}
		}
		errs = append(errs, fmt.Errorf("snapshot %s is saved, but copying it to %s failed: %w (retry with: cfbackup copy --to %s %s)", m.ID, to, err, to, m.ID))
	}
	return out, errors.Join(errs...)
}

func humanBytes(n int64) string { return source.HumanBytes(n) }

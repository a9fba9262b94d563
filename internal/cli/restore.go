package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/cfbackup/cfbackup/pkg/audit"

	"github.com/spf13/cobra"

	"github.com/cfbackup/cfbackup/pkg/engine"
	"github.com/cfbackup/cfbackup/pkg/source"
	"github.com/cfbackup/cfbackup/pkg/timespec"
)

// RestoreOptions are the flags of 'restore'.
type RestoreOptions struct {
	f         *Factory
	Snapshot  string
	Component string
	Yes       bool
	DryRun    bool
	At        string
	NoSafety  bool
	ToDir     string
	Prefix    string
	// Plan and BreakGlass are the approval flags of protected targets (restore_approval.go).
	Plan, BreakGlass string
	// Shard is --shard I/N (shard.go).
	Shard string

	// at is the point in time a component that rewinds the account's history goes back to
	// (source.Rewinder, D1's --time-travel).
	at *time.Time

	// comps are the registered components (pkg/source), each holding its own flags.
	comps map[string]source.Component
}

// NewCmdRestore restores D1 data from a snapshot.
func NewCmdRestore(f *Factory, runF func(*RestoreOptions) error) *cobra.Command {
	o := &RestoreOptions{f: f}
	cmd := &cobra.Command{
		Use:   "restore SNAPSHOT|latest [--component d1|do|r2|kv|config] [flags]",
		Short: "Restore D1, Durable Objects, R2, KV or the Workers configuration from a snapshot",
		Long: `Restore one component of a snapshot (--component, default d1). Every item is checked against its
SHA-256 while it is read; --dry-run prints the plan and changes nothing. Needs an identity
(--identity-file or CFBACKUP_IDENTITY_FILE).

--component d1 restores one D1 database, whole or only --table T, to exactly one target:

  --to-file F.sqlite        a new local SQLite file; then PRAGMA quick_check (--full-check: integrity_check),
                            foreign_key_check and every table's row count against the snapshot. Nothing is
                            left at F on failure.
  --to-database DB          an existing, empty D1 database (name or UUID) through D1's import API;
    --create                 create DB first. Dumps over the import limit are split into several files.
                             --location-hint (wnam enam weur eeur apac oc) or --jurisdiction (eu fedramp us)
                             place the new database.
  --in-place --yes          replace the original database's contents. cfbackup first records the
                            database's current Time Travel bookmark and prints the command that undoes
                            the restore.

--in-place --time-travel --at TIME rewinds the database with D1 Time Travel (inside its retention
window) instead of restoring a snapshot.

--component config is never applied to the account: --to-dir DIR writes the Workers configuration and
inventory as JSON files, --diff compares it with the live account (exit status 9 when they differ);
see docs/CONFIG_COMPONENT.md.

--component do restores Durable Objects through the Worker module (docs/DURABLE_OBJECTS.md) into the
objects they came from — a whole snapshot, --do-namespace N, or some --object-id ID / --object-ids-from FILE.
Object IDs are bound to their namespace: into another namespace or account, --to-do-namespace NS
re-creates objects under their recorded names (idFromName) or as --do-id-map FILE says; --dry-run
names those that cannot be placed, which the restore refuses unless --skip-unplaceable.
Overwriting objects that hold data needs --yes (or the namespace name typed on a terminal), and a
safety snapshot of them is taken first.

--component r2 puts objects back into their bucket (or --to-bucket B [--to-prefix P], or --to-dir DIR):
all of them, --prefix P, or some --key KEY / --keys-from FILE. Objects already there with the
same data are left alone; different data stops the restore before anything is written unless
--overwrite skip, or --overwrite overwrite --yes, which first takes a safety snapshot of exactly the
objects it replaces (label pre-restore, held 7 days) and prints the command that undoes the restore.
'latest' skips R2 safety snapshots; name one by ID to restore it.

--component kv puts keys back into their namespace (or --to-namespace N, or --to-dir DIR): all of
them, --prefix P, or some --key K; values, metadata and expirations as backed up (docs/KV.md).

Targets listed in approval.protected (D1 databases, DO namespaces, R2 buckets) need two people: the
restore writes a plan and exits 12; a second operator runs 'cfbackup approve PLAN-ID'; then rerun it
with --plan PLAN-ID, or, in an emergency, --break-glass REASON (audited and notified). See
docs/APPROVAL.md, also for the test-restore gate.`,
		Example: `  cfbackup restore latest --component d1 --d1-database app --to-file app.sqlite
  cfbackup restore 3f2a9c1e --d1-database app --table users --to-file users.sqlite
  cfbackup restore latest --d1-database app --to-database app-restored --create
  cfbackup restore latest --d1-database app --in-place --yes
  cfbackup restore latest --component config --to-dir ./account-config
  cfbackup restore latest --component config --diff
  cfbackup restore latest --component do --do-namespace sessions --object-id 7c1e… --dry-run
  cfbackup restore latest --component r2 --r2-bucket assets --dry-run
  cfbackup restore latest --component r2 --r2-bucket assets --prefix img/2026/ --overwrite overwrite --yes
  cfbackup restore latest --component kv --kv-namespace SESSIONS --to-dir ./kv-sessions
  cfbackup restore latest --component kv --kv-namespace SESSIONS --prefix user: --dry-run`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 1 {
				o.Snapshot = args[0]
			}
			if runF != nil {
				return runF(o)
			}
			return restoreRun(cmd, o)
		},
	}
	reads(mutating(cmd), audit.ReadsData)
	fl := cmd.Flags()
	fl.StringVar(&o.Component, "component", "d1", "component to restore: "+strings.Join(source.Names(), ", "))
	fl.BoolVar(&o.Yes, "yes", false, "confirm a restore over live data")
	fl.BoolVar(&o.DryRun, "dry-run", false, "print the plan; change nothing")
	fl.StringVar(&o.ToDir, "to-dir", "", "r2: restore objects into this local directory (keys become paths, docs/R2.md); config: write the configuration as JSON files there (nothing is applied)")
	fl.StringVar(&o.At, "at", "", "point in time instead of SNAPSHOT (2026-12-03T13:19:44Z, '2026-12-03 13:19:44' local, '2h ago', yesterday; docs/CONFIG.md \"Times and durations\"): the newest snapshot at or before it, a time to the second covering that second")
	fl.BoolVar(&o.NoSafety, "no-safety-snapshot", false, "do not back up the live data before overwriting it (not recommended)")
	fl.StringVar(&o.Prefix, "prefix", "", "r2, kv: restore only keys that start with this prefix")
	addApprovalFlags(fl, o)
	addRestoreShardFlag(fl, o)
	o.comps = bindComponents(source.VerbRestore, fl)
	return cmd
}

func restoreRun(cmd *cobra.Command, o *RestoreOptions) error {
	comp := o.comps[o.Component]
	rewinds := false
	if rw, ok := comp.(source.Rewinder); ok {
		rewinds = rw.Rewinds()
	}
	if o.At != "" {
		if o.Snapshot != "" {
			return usageError{errors.New("give a SNAPSHOT or --at TIME, not both")}
		}
		t, err := parseAt(o.At, time.Now())
		if err != nil {
			return usageError{err}
		}
		if o.DryRun && !cmd.Flags().Changed("component") && !rewinds {
			return pointInTimePlan(cmd, o, t)
		}
		if rewinds {
			last := t.Last()
			o.at = &last
		} else if err := resolveAt(cmd, o, t); err != nil {
			return err
		}
	}
	if !rewinds || !o.NoSafety { // a rewind writes to the repository only its safety snapshot
		unlock, err := lockRepo(cmd, o.f, engine.LockShared, o.DryRun)
		if err != nil {
			return err
		}
		defer unlock()
	}
	if comp != nil {
		return restoreComponent(cmd, o, comp)
	}
	if err := engine.ValidateComponents([]string{o.Component}); err != nil {
		return usageError{err}
	}
	return usageError{fmt.Errorf("this build cannot restore component %s", o.Component)}
}

// resolveAt picks the snapshot --at names: the newest not after the last instant the time names (a
// time written to the second covers that second: the time 'list' prints selects that snapshot).
func resolveAt(cmd *cobra.Command, o *RestoreOptions, t timespec.Time) error {
	r, err := o.f.Repo(cmd.Context())
	if err != nil {
		return err
	}
	m, err := r.FindSnapshotAt(cmd.Context(), t.Last(), o.Component)
	if err != nil {
		return err
	}
	fmt.Fprintf(o.f.IO.Err, "Point in time %s: restoring %s from snapshot %s taken at %s.\n", t.Time.UTC().Format(time.RFC3339), o.Component, m.ID, m.Time.UTC().Format(time.RFC3339))
	o.Snapshot = m.ID
	return nil
}

// restoreComponent restores a registered component through the engine's one restore path and prints
// the plan (--dry-run) or the outcome.
func restoreComponent(cmd *cobra.Command, o *RestoreOptions, comp source.Component) error {
	ctx := cmd.Context()
	shard, err := restoreShard(o)
	if err != nil {
		return err
	}
	if fc, ok := comp.(source.FlagChecker); ok {
		if err := fc.CheckFlags(source.VerbRestore, cmd.Flags()); err != nil {
			return err
		}
	}
	if err := checkApprovalFlags(cmd, o); err != nil {
		return err
	}
	gate, err := restoreGate(cmd, o, comp)
	if err != nil {
		return err
	}
	r, err := o.f.Repo(ctx)
	if err != nil {
		return err
	}
	rw, _ := comp.(source.Rewinder)
	ids, err := o.f.Identities(rw == nil || !rw.Rewinds()) // a rewind reads no snapshot
	if err != nil {
		return err
	}
	eng := o.f.Engine(r)
	res, err := eng.Restore(ctx, comp, o.f.Env(), engine.RestoreOptions{
		Snapshot: o.Snapshot, At: o.at, Identities: ids, Prefix: o.Prefix, ToDir: o.ToDir,
		Yes: o.Yes, DryRun: o.DryRun, NoSafety: o.NoSafety, Confirm: confirmOnTerminal(o.f), Notes: o.f.IO.Err, Gate: gate, Shard: shard,
	})
	snapshot := ""
	if res != nil && res.Snapshot != nil {
		snapshot = res.Snapshot.ID
	}
	if res != nil {
		rr := RunResult{Components: []string{comp.Name()}, Bytes: res.BytesRead}
		if snapshot != "" {
			rr.Snapshots = []string{snapshot}
		}
		o.f.SetResult(rr)
	}
	if err != nil {
		if res != nil && res.Result != nil {
			_ = printRestoreResult(o, res) // a result that comes with its error (config --diff: exit 9)
		}
		return err
	}
	out := o.f.IO.Out
	if o.DryRun {
		if o.f.jsonOut {
			err = writeJSON(out, &restorePlanMessage{MessageType: "plan", DryRun: true, Component: comp.Name(), Snapshot: snapshot, Plan: res.Plan.JSON()})
		} else {
			res.Plan.Text(out)
		}
		if d, ok := res.Plan.(source.DryRunChecker); ok && err == nil {
			err = d.DryRunErr()
		}
		return err
	}
	return printRestoreResult(o, res)
}

// printRestoreResult prints a finished restore's summary (and its undo command).
func printRestoreResult(o *RestoreOptions, res *engine.RestoreOutcome) error {
	out := o.f.IO.Out
	if o.f.jsonOut {
		return writeJSON(out, &componentResult{Doc: res.Result.JSON})
	}
	fmt.Fprint(out, res.Result.Text)
	if res.Undo != "" {
		fmt.Fprintf(out, "To undo: %s\n", res.Undo)
	}
	return nil
}

// restorePlanMessage is restore --dry-run --json for a registered component.
type restorePlanMessage struct {
	MessageType string `json:"message_type"` // "plan"
	DryRun      bool   `json:"dry_run"`
	Component   string `json:"component"`
	Snapshot    string `json:"snapshot"`
	// Plan is the component's own plan (docs/JSON.md).
	Plan any `json:"plan"`
	// RunError is set when the dry run fails (config --diff: the account differs).
	RunError
}

// componentResult is a registered component's --json summary (its own typed document), with the
// run's error when the result comes with one (config --diff: exit status 9).
type componentResult struct {
	Doc any
	RunError
}

// MarshalJSON writes Doc's object with the error fields, if any, after its own.
func (c *componentResult) MarshalJSON() ([]byte, error) {
	doc, err := json.Marshal(c.Doc)
	if err != nil || c.RunError == (RunError{}) {
		return doc, err
	}
	re, err := json.Marshal(c.RunError)
	if err != nil || len(doc) < 2 || doc[0] != '{' {
		return doc, err
	}
	if len(doc) == 2 { // {}
		return re, nil
	}
	return append(append(doc[:len(doc)-1:len(doc)-1], ','), re[1:]...), nil
}

package cli

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/cfbackup/cfbackup/pkg/cloudflare"
	"github.com/cfbackup/cfbackup/pkg/engine"
	"github.com/cfbackup/cfbackup/pkg/manifest"
	"github.com/cfbackup/cfbackup/pkg/source"
	"github.com/cfbackup/cfbackup/pkg/source/d1"
)

// RestoreOptions are the flags of 'restore'.
type RestoreOptions struct {
	f          *Factory
	Snapshot   string
	Component  string
	Database   string
	Tables     []string
	ToFile     string
	ToDatabase string
	Create     bool
	InPlace    bool
	Yes        bool
	DryRun     bool
	ImportMax  int64
	At         string
	TimeTravel bool
	NoSafety   bool
	ToDir      string
	Prefix     string

	// comps are the registered components (pkg/source), each holding its own flags.
	comps map[string]source.Component
}

// NewCmdRestore restores D1 data from a snapshot.
func NewCmdRestore(f *Factory, runF func(*RestoreOptions) error) *cobra.Command {
	o := &RestoreOptions{f: f}
	cmd := &cobra.Command{
		Use:   "restore SNAPSHOT|latest --component d1 (--to-file F | --to-database DB [--create] | --in-place --yes)",
		Short: "Restore a D1 database (or some tables) from a snapshot",
		Long: `Restore one D1 database from a snapshot, whole or only --table T, to exactly one target:

  --to-file F.sqlite        a new local SQLite file; then PRAGMA integrity_check, foreign_key_check and
                            every table's row count against the snapshot. Nothing is left at F on failure.
  --to-database DB          an existing, empty D1 database (name or UUID) through D1's import API;
    --create                 create DB first. Dumps over the import limit are split into several files.
  --in-place --yes          replace the original database's contents. cfbackup first records the
                            database's current Time Travel bookmark and prints the command that undoes
                            the restore.

Every item is checked against its SHA-256 while it is read. --dry-run prints the plan and changes nothing.
Needs an identity (--identity-file or CFBACKUP_IDENTITY_FILE).

--component config is never applied to the account: --to-dir DIR writes the Workers configuration and
inventory as JSON files, --diff compares it with the live account (exit status 9 when they differ);
see docs/CONFIG_COMPONENT.md.

--component do restores Durable Objects through the Worker module (docs/DURABLE_OBJECTS.md) into the
objects they came from — a whole snapshot, --do-namespace N, or some --object-id ID / --ids-from FILE.
Object IDs are bound to their namespace: a restore into another account needs the original names.
Overwriting objects that hold data needs --yes (or the namespace name typed on a terminal), and a
safety snapshot of them is taken first.

--component r2 puts objects back into their bucket (or --to-bucket B [--to-prefix P], or --to-dir DIR):
all of them, --prefix P, or some --object KEY / --objects-from FILE. Objects already there with the
same data are left alone; different data stops the restore before anything is written unless
--overwrite skip, or --overwrite overwrite --yes, which first takes a safety snapshot of exactly the
objects it replaces (label pre-restore, held 7 days) and prints the command that undoes the restore.
'latest' skips R2 safety snapshots; name one by ID to restore it.`,
		Example: `  cfbackup restore latest --component d1 --d1-database app --to-file app.sqlite
  cfbackup restore 3f2a9c1e --d1-database app --table users --to-file users.sqlite
  cfbackup restore latest --d1-database app --to-database app-restored --create
  cfbackup restore latest --d1-database app --in-place --yes
  cfbackup restore latest --component config --to-dir ./account-config
  cfbackup restore latest --component config --diff
  cfbackup restore latest --component do --do-namespace sessions --object-id 7c1e… --dry-run
  cfbackup restore latest --component r2 --r2-bucket assets --dry-run
  cfbackup restore latest --component r2 --r2-bucket assets --prefix img/2026/ --overwrite overwrite --yes`,
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
	mutating(cmd)
	fl := cmd.Flags()
	fl.StringVar(&o.Component, "component", "d1", "component to restore: d1, do, r2 or config")
	fl.StringVar(&o.Database, "d1-database", "", "database in the snapshot (name or UUID); optional when the snapshot has one")
	fl.StringSliceVar(&o.Tables, "table", nil, "restore only these tables (repeatable)")
	fl.StringVar(&o.ToFile, "to-file", "", "restore into a new local SQLite file")
	fl.StringVar(&o.ToDatabase, "to-database", "", "restore into this D1 database (name or UUID), which must be empty")
	fl.BoolVar(&o.Create, "create", false, "with --to-database: create the database first")
	fl.BoolVar(&o.InPlace, "in-place", false, "replace the original D1 database's contents (needs --yes)")
	fl.BoolVar(&o.Yes, "yes", false, "confirm a restore over live data")
	fl.BoolVar(&o.DryRun, "dry-run", false, "print the plan; change nothing")
	fl.Int64Var(&o.ImportMax, "import-file-limit", 5_000_000_000, "largest SQL file per D1 import; bigger restores are split")
	_ = fl.MarkHidden("import-file-limit")
	fl.StringVar(&o.ToDir, "to-dir", "", "r2: restore objects into this local directory (keys become paths, docs/R2.md); config: write the configuration as JSON files there (nothing is applied)")
	fl.StringVar(&o.At, "at", "", "point in time instead of SNAPSHOT (2026-12-03T13:19:44Z, '2026-12-03 13:19:44' local, '2h ago', yesterday; docs/CONFIG.md \"Times and durations\"): the newest snapshot at or before it, a time to the second covering that second")
	fl.BoolVar(&o.TimeTravel, "time-travel", false, "with --at and --in-place: restore D1 with Time Travel (inside its retention window) instead of from the archive")
	fl.BoolVar(&o.NoSafety, "no-safety-snapshot", false, "do not back up the live data before overwriting it (not recommended)")
	fl.StringVar(&o.Prefix, "prefix", "", "r2, kv: restore only keys that start with this prefix")
	o.comps = bindComponents(source.VerbRestore, fl)
	return cmd
}

// restorePlan is what --dry-run prints (and --json returns).
type restorePlan struct {
	Snapshot string          `json:"snapshot"`
	Database manifest.Source `json:"database"`
	Target   string          `json:"target"`
	Tables   []planTable     `json:"tables"`
	Bytes    int64           `json:"bytes"`
}

type planTable struct {
	Table string `json:"table"`
	Kind  string `json:"kind"`
	Rows  int64  `json:"rows"`
	Bytes int64  `json:"bytes"`
}

func restoreRun(cmd *cobra.Command, o *RestoreOptions) error {
	if o.At != "" {
		if o.Snapshot != "" {
			return usageError{errors.New("give a SNAPSHOT or --at TIME, not both")}
		}
		t, err := parseAt(o.At, time.Now())
		if err != nil {
			return usageError{err}
		}
		if o.DryRun && !cmd.Flags().Changed("component") && !o.TimeTravel {
			return pointInTimePlan(cmd, o, t)
		}
		if !o.TimeTravel {
			r, err := o.f.Repo(cmd.Context())
			if err != nil {
				return err
			}
			// The newest snapshot not after the last instant the time names (a time written to the
			// second covers that second: the time 'list' prints selects that snapshot).
			m, err := r.FindSnapshotAt(cmd.Context(), t.Last(), o.Component)
			if err != nil {
				return err
			}
			fmt.Fprintf(o.f.IO.Err, "Point in time %s: restoring %s from snapshot %s taken at %s.\n", t.Time.UTC().Format(time.RFC3339), o.Component, m.ID, m.Time.UTC().Format(time.RFC3339))
			o.Snapshot = m.ID
		}
	} else if o.TimeTravel {
		return usageError{errors.New("--time-travel needs --at TIME (and --in-place)")}
	}
	if !o.TimeTravel || !o.NoSafety { // a Time Travel restore writes only its safety snapshot
		unlock, err := lockRepo(cmd, o.f, engine.LockShared, o.DryRun)
		if err != nil {
			return err
		}
		defer unlock()
	}
	if comp, ok := o.comps[o.Component]; ok {
		return restoreComponent(cmd, o, comp)
	}
	switch o.Component {
	case d1.Component:
		return restoreD1(cmd, o)
	}
	if err := engine.ValidateComponents([]string{o.Component}); err != nil {
		return usageError{err}
	}
	return usageError{fmt.Errorf("this build cannot restore component %s", o.Component)}
}

func restoreD1(cmd *cobra.Command, o *RestoreOptions) error {
	ctx := cmd.Context()
	if o.TimeTravel {
		return restoreD1TimeTravel(cmd, o)
	}
	if o.ToDir != "" {
		return usageError{errors.New("--to-dir is for --component r2 and config; a D1 database restores --to-file F.sqlite")}
	}
	targets := 0
	for _, set := range []bool{o.ToFile != "", o.ToDatabase != "", o.InPlace} {
		if set {
			targets++
		}
	}
	if targets != 1 {
		return usageError{errors.New("choose exactly one target: --to-file F, --to-database DB, or --in-place --yes")}
	}
	if o.Create && o.ToDatabase == "" {
		return usageError{errors.New("--create goes with --to-database")}
	}
	r, err := o.f.Repo(ctx)
	if err != nil {
		return err
	}
	m, err := r.FindSnapshot(ctx, o.Snapshot, d1.Component)
	if err != nil {
		return err
	}
	o.f.SetResult(RunResult{Components: []string{d1.Component}, Snapshots: []string{m.ID}})
	src, err := pickSource(m, o.Database)
	if err != nil {
		return err
	}
	if o.InPlace && !o.Yes && !o.DryRun {
		if err := confirmByName(o.f, src.Name); err != nil {
			return err
		}
	}
	ids, err := o.f.Identities(true)
	if err != nil {
		return err
	}
	cat, err := engine.OpenCatalogue(m, ids)
	if err != nil {
		return err
	}
	sel, err := d1.Select(cat, src.ID, o.Tables)
	if err != nil {
		return fmt.Errorf("%w: %v", engine.ErrNotFound, err)
	}
	plan := restorePlan{Snapshot: m.ID, Database: src}
	switch {
	case o.ToFile != "":
		plan.Target = "file:" + o.ToFile
	case o.ToDatabase != "":
		plan.Target = "d1:" + o.ToDatabase
	default:
		plan.Target = "d1:" + src.Name + " (in place)"
	}
	for _, it := range sel.Items {
		plan.Tables = append(plan.Tables, planTable{Table: it.Table, Kind: it.Kind, Rows: it.Rows, Bytes: it.Size})
		plan.Bytes += it.Size
	}
	out := o.f.IO.Out
	if o.DryRun {
		if o.f.jsonOut {
			return writeJSON(out, map[string]any{"message_type": "plan", "dry_run": true, "plan": plan})
		}
		fmt.Fprintf(out, "Would restore D1 database %s from snapshot %s (%s) into %s:\n", src.Name, m.ID, m.Time.Local().Format("2006-01-02 15:04:05"), plan.Target)
		for _, t := range plan.Tables {
			name := t.Table
			if t.Kind == "schema" {
				name = "(indexes, views, triggers)"
			}
			fmt.Fprintf(out, "  %-8s %-30s %8d rows %10s\n", t.Kind, name, t.Rows, humanBytes(t.Bytes))
		}
		return nil
	}
	eng := o.f.Engine(r)
	open := eng.Opener(m, ids)
	if o.ToFile != "" {
		finish := eng.StartProgress("restore", plan.Bytes)
		res, err := d1.RestoreToFile(ctx, open, sel, o.ToFile)
		finish()
		if err != nil {
			return restoreErr(err)
		}
		if o.f.jsonOut {
			return writeJSON(out, map[string]any{"message_type": "summary", "snapshot": m.ID, "database": src.Name, "target": plan.Target, "tables": res.Tables, "statements": res.Statements, "checks": "integrity_check ok, foreign_key_check ok, row counts match"})
		}
		fmt.Fprintf(out, "Restored D1 database %s from snapshot %s into %s: %d table(s), %d statement(s); integrity_check, foreign_key_check and row counts OK.\n",
			src.Name, m.ID, o.ToFile, len(res.Tables), res.Statements)
		return nil
	}

	cf, err := o.f.Cloudflare()
	if err != nil {
		return err
	}
	var target cloudflare.Database
	dopt := d1.DatabaseOptions{ImportLimit: o.ImportMax}
	undo, safeID := "", ""
	if o.InPlace {
		target, err = cf.ResolveDatabase(ctx, src.ID)
		if err != nil {
			return err
		}
		dopt.InPlace = true
		bm, err := cf.CurrentBookmark(ctx, target.UUID)
		if err != nil {
			return fmt.Errorf("record the current Time Travel bookmark before restoring in place: %w (nothing was changed)", err)
		}
		undo = fmt.Sprintf("wrangler d1 time-travel restore %s --bookmark=%s", target.Name, bm)
		fmt.Fprintf(o.f.IO.Err, "Before restoring, %s was at Time Travel bookmark %s.\nTo undo this restore: %s\n", target.Name, bm, undo)
		if safe, err := safetySnapshot(cmd, o, eng, cf, target, m.ID); err != nil {
			return err
		} else if safe != nil {
			safeID = safe.ID
		}
	} else if o.Create {
		target, err = cf.CreateDatabase(ctx, o.ToDatabase)
		if err != nil {
			return err
		}
	} else {
		target, err = cf.ResolveDatabase(ctx, o.ToDatabase)
		if err != nil {
			return err
		}
	}
	// The SQL is produced twice (plan the import files, then upload them): the bar counts both passes.
	finish := eng.StartProgress("restore", 2*plan.Bytes)
	res, err := d1.RestoreToDatabase(ctx, cf, open, sel, target, dopt)
	finish()
	if err != nil {
		if undo != "" {
			return fmt.Errorf("%w\nThe database may be partly changed; to roll back run: %s%s", restoreErr(err), undo, safetyHint(safeID, target.Name))
		}
		return restoreErr(err)
	}
	if o.f.jsonOut {
		return writeJSON(out, map[string]any{"message_type": "summary", "snapshot": m.ID, "database": src.Name, "target": target, "files": res.Files, "bytes": res.Bytes, "final_bookmark": res.FinalBookmark, "tables": res.Tables, "undo": undo, "safety_snapshot": safeID})
	}
	fmt.Fprintf(out, "Restored D1 database %s from snapshot %s into D1 database %s (%s): %d import file(s), %s, %d table(s) with matching row counts. Final bookmark %s.\n",
		src.Name, m.ID, target.Name, target.UUID, res.Files, humanBytes(res.Bytes), len(res.Tables), res.FinalBookmark)
	if undo != "" {
		fmt.Fprintf(out, "To undo: %s%s\n", undo, safetyHint(safeID, target.Name))
	}
	return nil
}

func pickSource(m *manifest.Manifest, name string) (manifest.Source, error) {
	return pickComponentSource(m, d1.Component, "D1 database", "D1 databases", "--d1-database", name)
}

// pickComponentSource finds the source a restore reads: the one named (by name or id), or the only
// one of its component; otherwise the error lists what the snapshot has.
func pickComponentSource(m *manifest.Manifest, component, what, whats, flag, name string) (manifest.Source, error) {
	srcs := engine.SourcesOf(m, component)
	if name != "" {
		if s, ok := m.SourceByName(component, name); ok {
			return s, nil
		}
	} else if len(srcs) == 1 {
		return srcs[0], nil
	}
	names := make([]string, 0, len(srcs))
	for _, s := range srcs {
		names = append(names, s.Name)
	}
	sort.Strings(names)
	if name == "" {
		return manifest.Source{}, usageError{fmt.Errorf("snapshot %s has %d %s; pick one with %s (%s)", m.ID, len(srcs), whats, flag, strings.Join(names, ", "))}
	}
	return manifest.Source{}, fmt.Errorf("%w: %s %q is not in snapshot %s (it has: %s)", engine.ErrNotFound, what, name, m.ID, strings.Join(names, ", "))
}

func restoreErr(err error) error {
	switch {
	case errors.Is(err, d1.ErrTargetNotEmpty):
		return fmt.Errorf("%w: %v", engine.ErrRefused, err)
	case errors.Is(err, d1.ErrMismatch):
		return fmt.Errorf("%w: %v", engine.ErrIntegrity, err)
	case errors.Is(err, d1.ErrNotInSnapshot):
		return fmt.Errorf("%w: %v", engine.ErrNotFound, err)
	}
	return err
}

// confirmByName asks for the target's name on a terminal; elsewhere --yes is required.
func confirmByName(f *Factory, name string) error {
	if !isTerminal(f.IO.In) || !isTerminal(f.IO.Err) {
		return fmt.Errorf("%w: --in-place overwrites the live database %s; add --yes to confirm (try --dry-run first)", engine.ErrRefused, name)
	}
	fmt.Fprintf(f.IO.Err, "This replaces the contents of the live D1 database %q.\nType its name to continue: ", name)
	line, _ := bufio.NewReader(f.IO.In).ReadString('\n')
	if strings.TrimSpace(line) != name {
		return fmt.Errorf("%w: confirmation did not match %q; nothing was changed", engine.ErrRefused, name)
	}
	return nil
}

// restoreComponent restores a registered component through the engine's one restore path and prints
// the plan (--dry-run) or the outcome.
func restoreComponent(cmd *cobra.Command, o *RestoreOptions, comp source.Component) error {
	ctx := cmd.Context()
	if fc, ok := comp.(source.FlagChecker); ok {
		if err := fc.CheckFlags(source.VerbRestore, cmd.Flags()); err != nil {
			return err
		}
	}
	r, err := o.f.Repo(ctx)
	if err != nil {
		return err
	}
	ids, err := o.f.Identities(true)
	if err != nil {
		return err
	}
	eng := o.f.Engine(r)
	res, err := eng.Restore(ctx, comp, o.f.Env(), engine.RestoreOptions{
		Snapshot: o.Snapshot, Identities: ids, Prefix: o.Prefix, ToDir: o.ToDir,
		Yes: o.Yes, DryRun: o.DryRun, NoSafety: o.NoSafety, Confirm: confirmOnTerminal(o.f), Notes: o.f.IO.Err,
	})
	if res != nil {
		o.f.SetResult(RunResult{Components: []string{comp.Name()}, Snapshots: []string{res.Snapshot.ID}})
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
			err = writeJSON(out, &restorePlanMessage{MessageType: "plan", DryRun: true, Component: comp.Name(), Snapshot: res.Snapshot.ID, Plan: res.Plan.JSON()})
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

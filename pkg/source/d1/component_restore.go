package d1

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/spf13/pflag"

	"github.com/cfbackup/cfbackup/pkg/cloudflare"
	"github.com/cfbackup/cfbackup/pkg/errclass"
	"github.com/cfbackup/cfbackup/pkg/manifest"
	"github.com/cfbackup/cfbackup/pkg/source"
)

// RestorePlanJSON is restore --dry-run --json's "plan" for D1 (docs/CLI_JSON_OUTPUT.md).
type RestorePlanJSON struct {
	Snapshot string          `json:"snapshot"`
	Database manifest.Source `json:"database"`
	Target   string          `json:"target"`
	Tables   []PlanTable     `json:"tables"`
	Bytes    int64           `json:"bytes"`
}

// PlanTable is one item a restore replays.
type PlanTable struct {
	Table string `json:"table"`
	Kind  string `json:"kind"`
	Rows  int64  `json:"rows"`
	Bytes int64  `json:"bytes"`
}

// FileSummary is restore --json's summary of a restore into a local SQLite file.
type FileSummary struct {
	MessageType string           `json:"message_type"` // "summary"
	Snapshot    string           `json:"snapshot"`
	Database    string           `json:"database"`
	Target      string           `json:"target"`
	Tables      map[string]int64 `json:"tables"`
	Statements  int64            `json:"statements"`
	Checks      string           `json:"checks"`
}

// DatabaseSummary is restore --json's summary of a restore into a D1 database (new or in place).
type DatabaseSummary struct {
	MessageType    string              `json:"message_type"` // "summary"
	Snapshot       string              `json:"snapshot"`
	Database       string              `json:"database"`
	Target         cloudflare.Database `json:"target"`
	Files          int                 `json:"files"`
	Bytes          int64               `json:"bytes"`
	FinalBookmark  string              `json:"final_bookmark"`
	Tables         map[string]int64    `json:"tables"`
	Undo           string              `json:"undo"`
	SafetySnapshot string              `json:"safety_snapshot"`
}

func usage(msg string) error { return errclass.Wrap(errclass.Usage, errors.New(msg)) }

// PlanRestore plans restoring one database of the snapshot into exactly one target (--to-file,
// --to-database [--create], --in-place), or rewinding the live database with Time Travel.
func (c *component) PlanRestore(ctx context.Context, env source.Env, req source.RestoreRequest) (source.RestorePlan, error) {
	if c.restore.timeTravel {
		return c.planRewind(ctx, env, req)
	}
	f := c.restore
	if err := f.checkTarget(req.ToDir); err != nil {
		return nil, err
	}
	src, err := pickSource(req.Snapshot, f.database)
	if err != nil {
		return nil, err
	}
	sel, err := Select(req.Catalogue, src.ID, f.tables)
	if err != nil {
		if errors.Is(err, errclass.Integrity) || errors.Is(err, errclass.Key) {
			return nil, err // the catalogue itself could not be read: damage or the wrong key, not a missing table
		}
		return nil, fmt.Errorf("%w: %v", errclass.NotFound, err)
	}
	p := &restorePlan{f: f, notes: env.Stderr(), snap: req.Snapshot, src: src, sel: sel, open: req.Open}
	p.json = RestorePlanJSON{Snapshot: req.Snapshot.ID, Database: src}
	switch {
	case f.toFile != "":
		p.json.Target = "file:" + f.toFile
	case f.toDatabase != "":
		p.json.Target = "d1:" + f.toDatabase
	default:
		p.json.Target = "d1:" + src.Name + " (in place)"
	}
	for _, it := range sel.Items {
		p.json.Tables = append(p.json.Tables, PlanTable{Table: it.Table, Kind: it.Kind, Rows: it.Rows, Bytes: it.Size})
		p.json.Bytes += it.Size
	}
	if f.toFile == "" && !req.DryRun {
		if p.api, err = env.Cloudflare(); err != nil {
			return nil, err
		}
		if f.inPlace {
			p.live = &liveDB{api: p.api, ref: src.ID, notes: p.notes}
		}
	}
	return p, nil
}

// CheckFlags refuses a restore without exactly one target, or a rewind without --at, --in-place and
// --d1-database, before the snapshot is read (PlanRestore checks the same for other callers). fs is
// the command's whole flag set: --at and --to-dir are the CLI's.
func (c *component) CheckFlags(verb source.Verb, fs *pflag.FlagSet) error {
	if verb != source.VerbRestore {
		return nil
	}
	if c.restore.timeTravel {
		return c.restore.checkRewind(fs == nil || fs.Changed("at"))
	}
	toDir := ""
	if fs != nil && fs.Lookup("to-dir") != nil {
		toDir = fs.Lookup("to-dir").Value.String()
	}
	return c.restore.checkTarget(toDir)
}

// checkTarget insists on exactly one target.
func (f restoreFlags) checkTarget(toDir string) error {
	if toDir != "" {
		return usage("--to-dir is for --component r2 and config; a D1 database restores --to-file F.sqlite")
	}
	targets := 0
	for _, set := range []bool{f.toFile != "", f.toDatabase != "", f.inPlace} {
		if set {
			targets++
		}
	}
	if targets != 1 {
		return usage("choose exactly one target: --to-file F, --to-database DB, or --in-place --yes")
	}
	if f.create && f.toDatabase == "" {
		return usage("--create goes with --to-database")
	}
	if f.fullCheck && f.toFile == "" {
		return usage("--full-check checks a restored file: use it with --to-file F.sqlite (D1 checks its own imports)")
	}
	if (f.place.PrimaryLocationHint != "" || f.place.Jurisdiction != "") && !f.create {
		return usage("--location-hint and --jurisdiction place a new database: use them with --to-database NAME --create")
	}
	if err := cloudflare.CheckCreateOptions(f.place); err != nil {
		return usage("--" + err.Error())
	}
	return nil
}

// pickSource finds the database a restore reads: the one named (by name or UUID), or the only one
// of the snapshot; otherwise the error lists what the snapshot has.
func pickSource(m *manifest.Manifest, name string) (manifest.Source, error) {
	return source.PickSource(m, Component, "D1 database", "D1 databases", "--d1-database", name)
}

// confirmation is what overwriting a live database needs: --yes, or its name typed.
func confirmation(name string) *source.Confirmation {
	return &source.Confirmation{Prompt: fmt.Sprintf("the contents of the live D1 database %q", name), Name: name}
}

// restorePlan restores one database of a snapshot from the archive.
type restorePlan struct {
	f     restoreFlags
	notes io.Writer
	snap  *manifest.Manifest
	src   manifest.Source
	sel   Selection
	open  source.Opener
	api   API     // nil for a file or a dry run
	live  *liveDB // in place
	json  RestorePlanJSON
}

func (p *restorePlan) JSON() any { return p.json }

func (p *restorePlan) Text(w io.Writer) {
	fmt.Fprintf(w, "Would restore D1 database %s from snapshot %s (%s) into %s:\n", p.src.Name, p.snap.ID, p.snap.Time.Local().Format("2006-01-02 15:04:05"), p.json.Target)
	for _, t := range p.json.Tables {
		name := t.Table
		if t.Kind == "schema" {
			name = "(indexes, views, triggers)"
		}
		fmt.Fprintf(w, "  %-8s %-30s %8d rows %10s\n", t.Kind, name, t.Rows, source.HumanBytes(t.Bytes))
	}
}

func (p *restorePlan) Confirm() *source.Confirmation {
	if !p.f.inPlace {
		return nil
	}
	return confirmation(p.src.Name)
}

// Safety backs up the live database an in-place restore replaces; its capture first records the
// database's Time Travel bookmark, so the undo offers both ways back.
func (p *restorePlan) Safety() *source.Safety {
	if p.live == nil {
		return nil
	}
	name := p.src.Name
	return &source.Safety{
		Target:   name,
		What:     "the contents of D1 database " + name,
		Captures: []source.Capture{liveCapture(p.api, name, p.live.prepare)},
		Undo:     func(id string) string { return p.live.undo() + safetyHint(id, p.live.db.Name) },
	}
}

func (p *restorePlan) Execute(ctx context.Context, x source.Execution) (*source.RestoreResult, error) {
	if p.f.toFile != "" {
		return p.executeFile(ctx, x)
	}
	return p.executeD1(ctx, x)
}

func (p *restorePlan) executeFile(ctx context.Context, x source.Execution) (*source.RestoreResult, error) {
	x.Progress.Start("restore", p.json.Bytes)
	res, err := RestoreToFileWith(ctx, p.open, p.sel, p.f.toFile, FileOptions{FullCheck: p.f.fullCheck})
	x.Progress.Finish()
	if err != nil {
		return nil, err
	}
	return &source.RestoreResult{
		JSON: FileSummary{MessageType: "summary", Snapshot: p.snap.ID, Database: p.src.Name, Target: p.json.Target, Tables: res.Tables,
			Statements: res.Statements, Checks: res.Check + " ok, foreign_key_check ok, row counts match"},
		Text: fmt.Sprintf("Restored D1 database %s from snapshot %s into %s: %d table(s), %d statement(s); %s, foreign_key_check and row counts OK.\n",
			p.src.Name, p.snap.ID, p.f.toFile, len(res.Tables), res.Statements, res.Check),
	}, nil
}

// target resolves (or creates) the database the restore writes into.
func (p *restorePlan) target(ctx context.Context) (cloudflare.Database, error) {
	switch {
	case p.live != nil:
		return p.live.prepare(ctx)
	case p.f.create:
		return p.api.CreateDatabase(ctx, p.f.toDatabase, p.f.place)
	}
	return p.api.ResolveDatabase(ctx, p.f.toDatabase)
}

// executeD1 imports the snapshot into a D1 database. In place, the undo is the bookmark recorded
// before anything was written (and, with a safety snapshot, the engine's undo names both ways back).
func (p *restorePlan) executeD1(ctx context.Context, x source.Execution) (*source.RestoreResult, error) {
	target, err := p.target(ctx)
	if err != nil {
		return nil, err
	}
	undo := ""
	if p.live != nil {
		undo = p.live.undo()
		if x.Undo == "" {
			fmt.Fprintf(p.notes, "To undo this restore: %s\n", undo)
		}
	}
	// The SQL is produced twice (plan the import files, then upload them): the bar counts both passes.
	x.Progress.Start("restore", 2*p.json.Bytes)
	res, err := RestoreToDatabase(ctx, p.api, p.open, p.sel, target, DatabaseOptions{ImportLimit: p.f.importMax, InPlace: p.live != nil})
	x.Progress.Finish()
	switch {
	case err != nil && undo == "":
		return nil, err
	case err != nil && x.Undo != "":
		return nil, fmt.Errorf("%w\nThe database may be partly changed", err) // the engine adds the way back
	case err != nil:
		return nil, fmt.Errorf("%w\nThe database may be partly changed; to roll back run: %s", err, undo)
	}
	text := fmt.Sprintf("Restored D1 database %s from snapshot %s into D1 database %s (%s): %d import file(s), %s, %d table(s) with matching row counts. Final bookmark %s.\n",
		p.src.Name, p.snap.ID, target.Name, target.UUID, res.Files, source.HumanBytes(res.Bytes), len(res.Tables), res.FinalBookmark)
	if undo != "" && x.Undo == "" {
		text += "To undo: " + undo + "\n"
	}
	return &source.RestoreResult{
		JSON: DatabaseSummary{MessageType: "summary", Snapshot: p.snap.ID, Database: p.src.Name, Target: target, Files: res.Files, Bytes: res.Bytes,
			FinalBookmark: res.FinalBookmark, Tables: res.Tables, Undo: undo, SafetySnapshot: x.SafetySnapshot},
		Text: text,
	}, nil
}

// liveDB is the live database an in-place restore replaces and its Time Travel bookmark before the
// restore (what undoes it), both read once, right before anything is backed up or written.
type liveDB struct {
	api      API
	ref      string // UUID
	notes    io.Writer
	db       cloudflare.Database
	bookmark string
}

func (l *liveDB) prepare(ctx context.Context) (cloudflare.Database, error) {
	if l.bookmark != "" {
		return l.db, nil
	}
	db, err := l.api.ResolveDatabase(ctx, l.ref)
	if err != nil {
		return db, err
	}
	bm, err := l.api.CurrentBookmark(ctx, db.UUID)
	if err != nil {
		return db, fmt.Errorf("record the current Time Travel bookmark before restoring in place: %w (nothing was changed)", err)
	}
	l.db, l.bookmark = db, bm
	fmt.Fprintf(l.notes, "Before restoring, %s was at Time Travel bookmark %s.\n", db.Name, bm)
	return db, nil
}

// undo is the Time Travel command that puts the database back where it was.
func (l *liveDB) undo() string {
	return fmt.Sprintf("wrangler d1 time-travel restore %s --bookmark=%s", l.db.Name, l.bookmark)
}

// safetyHint names the archive way back for an in-place restore.
func safetyHint(snapshot, db string) string {
	if snapshot == "" {
		return ""
	}
	return fmt.Sprintf("\n  (or from the safety snapshot: cfbackup restore %s --d1-database %s --in-place --yes)", snapshot, db)
}

// Overwrites names the database a restore into the account writes (source.Overwriter): the new or
// existing --to-database, or the original in place; nothing for --to-file.
func (p *restorePlan) Overwrites() *source.Overwrite {
	target := p.f.toDatabase
	switch {
	case p.f.toFile != "":
		return nil
	case p.f.inPlace:
		target = p.src.Name
	}
	return &source.Overwrite{Sources: []string{p.src.Name}, Targets: []string{target}, Items: int64(len(p.json.Tables)), Bytes: p.json.Bytes}
}

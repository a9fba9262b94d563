package d1

import (
	"context"
	"fmt"
	"io"

	"github.com/spf13/pflag"

	"github.com/cfbackup/cfbackup/pkg/cloudflare"
	"github.com/cfbackup/cfbackup/pkg/errclass"
	"github.com/cfbackup/cfbackup/pkg/source"
)

func init() { source.Register(func() source.Component { return &component{} }) }

// component holds one command run's D1 flags (source.Component).
type component struct {
	databases []string // backup --d1-database
	full      bool     // backup --d1-full: store every chunk again (no parent chunk index)
	restore   restoreFlags
}

// restoreFlags are restore's D1 flags.
type restoreFlags struct {
	database   string                   // --d1-database: the database in the snapshot (name or UUID)
	tables     []string                 // --table
	toFile     string                   // --to-file
	fullCheck  bool                     // --full-check: integrity_check instead of quick_check
	toDatabase string                   // --to-database
	create     bool                     // --create
	place      cloudflare.CreateOptions // --location-hint, --jurisdiction (with --create)
	inPlace    bool                     // --in-place
	importMax  int64                    // --import-file-limit (hidden)
	timeTravel bool                     // --time-travel: rewind the live database with Time Travel (with --at)
}

var (
	_ source.Component   = (*component)(nil)
	_ source.Rewinder    = (*component)(nil)
	_ source.FlagChecker = (*component)(nil)
)

func (*component) Name() string  { return Component }
func (*component) Title() string { return "D1 database" }

// Flags binds D1's flags; test-restore's --d1-database (which database the assertions run on) is
// the CLI's, since assertions arrive in the request.
func (c *component) Flags(verb source.Verb, fs *pflag.FlagSet) {
	switch verb {
	case source.VerbBackup:
		fs.StringSliceVar(&c.databases, "d1-database", nil, "D1 database name or UUID; repeat for several (default: every database)")
		fs.BoolVar(&c.full, "d1-full", false, "store every chunk of the dumps again instead of only those the parent snapshot lacks (docs/D1.md \"Incremental backups\")")
	case source.VerbRestore:
		r := &c.restore
		fs.StringVar(&r.database, "d1-database", "", "database in the snapshot (name or UUID); optional when the snapshot has one")
		fs.StringSliceVar(&r.tables, "table", nil, "restore only these tables (repeatable)")
		fs.StringVar(&r.toFile, "to-file", "", "restore into a new local SQLite file")
		fs.BoolVar(&r.fullCheck, "full-check", false, "with --to-file: check the file with PRAGMA integrity_check, not quick_check (slower; see docs/D1.md)")
		fs.StringVar(&r.toDatabase, "to-database", "", "restore into this D1 database (name or UUID), which must be empty")
		fs.BoolVar(&r.create, "create", false, "with --to-database: create the database first")
		fs.StringVar(&r.place.PrimaryLocationHint, "location-hint", "", "with --create: the new database's primary location (wnam, enam, weur, eeur, apac, oc)")
		fs.StringVar(&r.place.Jurisdiction, "jurisdiction", "", "with --create: keep the new database in this jurisdiction (eu, fedramp, us)")
		fs.BoolVar(&r.inPlace, "in-place", false, "replace the original D1 database's contents (needs --yes)")
		fs.Int64Var(&r.importMax, "import-file-limit", 5_000_000_000, "largest SQL file per D1 import; bigger restores are split")
		_ = fs.MarkHidden("import-file-limit")
		fs.BoolVar(&r.timeTravel, "time-travel", false, "with --at and --in-place: restore D1 with Time Travel (inside its retention window) instead of from the archive")
	}
}

// Rewinds reports whether this restore rewinds the live database with Time Travel (--time-travel):
// it reads no snapshot, only the point in time.
func (c *component) Rewinds() bool { return c.restore.timeTravel }

// PlanBackup resolves the databases named by --d1-database (default: every database of the account).
// backup --dry-run --json shows them as "databases" (and details.d1).
func (c *component) PlanBackup(ctx context.Context, env source.Env, req source.BackupRequest) (*source.BackupPlan, error) {
	cf, err := env.Cloudflare()
	if err != nil {
		return nil, err
	}
	plan, err := planBackup(ctx, cf, c.databases, chunking{secret: req.WriterSecret, full: c.full})
	if err != nil {
		return nil, err
	}
	where := ""
	if req.Repo != nil {
		where = req.Repo.Store.Location()
	}
	dbs := plan.Databases
	plan.SetDetails(Component, dbs, func(w io.Writer) {
		fmt.Fprintf(w, "Would back up %d D1 database(s) into %s:\n", len(dbs), where)
		for _, d := range dbs {
			fmt.Fprintf(w, "  %s  %s  %s\n", d.Name, d.UUID, source.HumanBytes(d.FileSize))
		}
	})
	return plan, nil
}

// PlanBackup resolves the D1 databases a backup captures — those named (names or UUIDs, each once),
// or every database of the account — and returns a plan with one capture per database.
// Without the writer secret every dump is stored whole, as before chunking.
func PlanBackup(ctx context.Context, api API, names []string) (*source.BackupPlan, error) {
	return planBackup(ctx, api, names, chunking{})
}

// PlanChunkedBackup is PlanBackup with content-defined chunking keyed from secret (docs/D1.md
// "Incremental backups"): each dump stores only the chunks its parent snapshot lacks, or every
// chunk when full.
func PlanChunkedBackup(ctx context.Context, api API, names []string, secret []byte, full bool) (*source.BackupPlan, error) {
	return planBackup(ctx, api, names, chunking{secret: secret, full: full})
}

func planBackup(ctx context.Context, api API, names []string, ch chunking) (*source.BackupPlan, error) {
	dbs, err := resolveDatabases(ctx, api, names)
	if err != nil {
		return nil, err
	}
	plan := &source.BackupPlan{Components: []string{Component}, Databases: dbs}
	for _, db := range dbs {
		plan.AddCapture(capture(api, db, ch))
	}
	return plan, nil
}

func resolveDatabases(ctx context.Context, api API, names []string) ([]cloudflare.Database, error) {
	var dbs []cloudflare.Database
	if len(names) == 0 {
		all, err := api.ListDatabases(ctx)
		if err != nil {
			return nil, err
		}
		if len(all) == 0 {
			return nil, fmt.Errorf("%w: the account has no D1 database", errclass.NotFound)
		}
		for _, d := range all {
			full, err := api.GetDatabase(ctx, d.UUID)
			if err != nil {
				return nil, err
			}
			dbs = append(dbs, full)
		}
		return dbs, nil
	}
	seen := map[string]bool{}
	for _, n := range names {
		d, err := api.ResolveDatabase(ctx, n)
		if err != nil {
			return nil, err
		}
		if !seen[d.UUID] {
			seen[d.UUID] = true
			dbs = append(dbs, d)
		}
	}
	return dbs, nil
}

// capture backs up one database into the snapshot being written.
func capture(api API, db cloudflare.Database, ch chunking) source.Capture {
	return source.Capture{Component: Component, Name: db.Name, Run: func(ctx context.Context, s *source.Session) error {
		s.Log.Info("backing up D1 database", "database", db.Name, "uuid", db.UUID, "size", db.FileSize)
		var w ItemWriter = s.Writer
		cw, err := ch.writer(ctx, s, db)
		if err != nil {
			return err
		}
		if cw != nil {
			w = cw
		}
		src, items, err := Backup(ctx, api, w, db, BackupOptions{Log: s.Log, Progress: s.Progress.Add})
		if err != nil {
			return fmt.Errorf("back up D1 database %s: %w", db.Name, err)
		}
		if cw != nil {
			if err := cw.finish(ctx, &src); err != nil {
				return fmt.Errorf("back up D1 database %s: %w", db.Name, err)
			}
		}
		s.Add(src, items...)
		return nil
	}}
}

// liveCapture backs up a live database as it is when the capture runs: a restore's safety snapshot.
// prepare resolves the database (and records what undoes the restore) right before.
func liveCapture(api API, name string, prepare func(ctx context.Context) (cloudflare.Database, error)) source.Capture {
	return source.Capture{Component: Component, Name: name, Run: func(ctx context.Context, s *source.Session) error {
		db, err := prepare(ctx)
		if err != nil {
			return err
		}
		return capture(api, db, chunking{}).Run(ctx, s)
	}}
}

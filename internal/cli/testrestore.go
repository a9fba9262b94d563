package cli

import (
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"
	"time"

	"github.com/cfbackup/cfbackup/pkg/audit"

	"github.com/spf13/cobra"

	"github.com/cfbackup/cfbackup/pkg/engine"
	"github.com/cfbackup/cfbackup/pkg/manifest"
	"github.com/cfbackup/cfbackup/pkg/source"
	configsrc "github.com/cfbackup/cfbackup/pkg/source/config"
	"github.com/cfbackup/cfbackup/pkg/source/durableobject"
)

// TestRestoreOptions are the flags of 'test-restore'.
type TestRestoreOptions struct {
	f          *Factory
	comps      map[string]source.Component // registered components with their test-restore flags bound
	Snapshot   string
	Components []string
	Sample     string
	Seed       uint64
	Asserts    []string
	Expects    []string
	Database   string
	Keep       string
	NoRecord   bool
	// WorkerURL is a local Workers runtime to import sampled Durable Objects into.
	WorkerURL string
	// Diff compares the configuration component with the live account (reads Cloudflare).
	Diff bool
}

var expectArg = regexp.MustCompile(`^\s*(>=|<=|==|!=|=|>|<)\s*\S`)

// NewCmdTestRestore restores a snapshot into scratch targets and checks it.
func NewCmdTestRestore(f *Factory, runF func(*TestRestoreOptions) error) *cobra.Command {
	o := &TestRestoreOptions{f: f}
	cmd := &cobra.Command{
		Use:   "test-restore [SNAPSHOT|latest] [--assert SQL [EXPECTATION]]...",
		Short: "Prove a snapshot restores: restore into scratch targets and check the result",
		Long: `Restore a snapshot (default: latest) into scratch targets only — never into the Cloudflare
account; without --diff this command does not even read the Cloudflare settings — and check what
comes back:

  d1   every database into a local SQLite file: every item's SHA-256 while reading, then
       PRAGMA integrity_check, foreign_key_check and each table's row count against the catalogue,
       then your assertions.
  r2   every object (or --sample N / x% of them, picked at random; --seed picks the same ones
       again) into a scratch directory: each object's SHA-256 while reading, then every file
       re-read (size and SHA-256) and its metadata (ETag, content type, custom metadata) compared
       with the catalogue. A sample reads only the catalogue objects that hold a sampled object.
  do   every Durable Object (or a --sample) decoded: its SHA-256, every NDJSON line parses, the
       end line's counts match the kv/table/row/schema lines and the catalogue. With
       --scratch-worker-url (or CFBACKUP_TEST_RESTORE_WORKER_URL) the objects are also imported into
       that local Workers runtime of the application (wrangler dev, miniflare; loopback addresses
       only, never the production Worker), signed with CFBACKUP_TEST_RESTORE_WORKER_SECRET, and the
       module's counts are compared again. A local runtime takes only IDs it can mint itself (the
       same Worker and class names); it refuses IDs minted by Cloudflare, and says so.
  config every configuration document (inventory, one per Workers script) decrypted (SHA-256),
       parsed and compared with the catalogue (item names, kinds, account, script names, the
       inventory's script list, the manifest's counts), written as files exactly as
       'restore --component config --to-dir' writes them and read back. With --diff the result is
       also compared with the live account (this reads the Cloudflare settings); differences are
       listed, not failures — the account may have changed since.

Assertions: --assert 'SQL' optionally followed by an expectation argument ('>= 1000', '= ok',
'!= 0'); the first column of the first row is compared (numbers as numbers). Without an expectation
the value must be true (not 0, NULL or empty). --d1-database limits the assertions to one database;
assertions can also come from the config file (test_restore.assertions: [{database, sql, expect}]).

The result is recorded in the repository under verify/ (mode test-restore; counts only, no names) so
reports show restore coverage over time; each problem has a kind — integrity (stored data missing,
damaged or not matching the catalogue), restore (intact data that did not restore or whose restored
copy failed its checks), assertion, error (the check could not run) or unsupported (this build cannot
test the component) — and the record says which (failure_kind, docs/FORMAT.md). Any failed check exits 6.
Needs an identity.`,
		Example: `  cfbackup test-restore
  cfbackup test-restore latest --assert 'SELECT count(*) FROM users' '>= 1000'
  cfbackup test-restore --component r2 --sample 5%
  CFBACKUP_TEST_RESTORE_WORKER_SECRET=... cfbackup test-restore --component do --sample 100 --scratch-worker-url http://127.0.0.1:8787
  cfbackup test-restore 3f2a --d1-database app --assert "SELECT value FROM meta WHERE key='schema'" '= 42' --json`,
		RunE: func(cmd *cobra.Command, args []string) error {
			// Positional arguments: an optional snapshot, then one expectation per --assert that has one.
			var rest []string
			for i, a := range args {
				if i == 0 && !expectArg.MatchString(a) {
					o.Snapshot = a
					continue
				}
				rest = append(rest, a)
			}
			for _, a := range rest {
				if !expectArg.MatchString(a) {
					return usageError{fmt.Errorf("unexpected argument %q: only one SNAPSHOT, and expectations like '>= 1000' after --assert", a)}
				}
			}
			if len(rest) > len(o.Asserts) {
				return usageError{fmt.Errorf("%d expectation(s) for %d --assert", len(rest), len(o.Asserts))}
			}
			o.Expects = rest
			if runF != nil {
				return runF(o)
			}
			return testRestoreRun(cmd, o)
		},
	}
	fl := cmd.Flags()
	fl.StringSliceVar(&o.Components, "component", nil, "components to test (default: all in the snapshot)")
	fl.StringVar(&o.Sample, "sample", "", "for per-object components (R2, Durable Objects): test N objects or x% of them")
	fl.Uint64Var(&o.Seed, "seed", 0, "with --sample: pick the sample from this seed (the output names the seed of every sampled run; the same seed picks the same objects)")
	fl.StringArrayVar(&o.Asserts, "assert", nil, "SQL to run on each restored D1 database, optionally followed by an expectation argument")
	fl.StringVar(&o.Database, "d1-database", "", "run the --assert checks only on this D1 database")
	fl.StringVar(&o.Keep, "keep", "", "keep the restored files in this directory (default: a temporary directory, removed)")
	fl.BoolVar(&o.NoRecord, "no-record", false, "do not record the result under verify/")
	fl.BoolVar(&o.Diff, "diff", false, "config: also compare the restored configuration with the live account (reads Cloudflare; differences are listed, not failures)")
	fl.StringVar(&o.WorkerURL, "scratch-worker-url", "", "import sampled Durable Objects into this local Workers runtime (or CFBACKUP_TEST_RESTORE_WORKER_URL)")
	o.comps = bindComponents(source.VerbTestRestore, fl)
	reads(cmd, audit.ReadsData)
	return cmd
}

func testRestoreRun(cmd *cobra.Command, o *TestRestoreOptions) error {
	if err := engine.ValidateComponents(o.Components); err != nil {
		return usageError{err}
	}
	unlock, err := lockRepo(cmd, o.f, engine.LockShared, false)
	if err != nil {
		return err
	}
	defer unlock()
	ctx := cmd.Context()
	if _, _, err := engine.ParseSample(o.Sample); err != nil {
		return usageError{err}
	}
	cfg := o.f.Config()
	scratchURL, err := o.scratchWorker()
	if err != nil {
		return err
	}
	r, err := o.f.Repo(ctx)
	if err != nil {
		return err
	}
	comp := ""
	if len(o.Components) == 1 {
		comp = o.Components[0]
	}
	m, err := r.FindSnapshot(ctx, o.Snapshot, comp)
	if err != nil {
		return err
	}
	ids, err := o.f.Identities(true)
	if err != nil {
		return err
	}
	if err := o.checkDiff(m); err != nil {
		return err
	}
	var seed *uint64
	if cmd.Flags().Changed("seed") {
		seed = &o.Seed
	}
	res, terr := o.f.Engine(r).TestRestore(ctx, m, engine.TestRestoreOptions{
		Identities: ids, Components: o.Components, Sample: o.Sample, Seed: seed, Assertions: o.assertions(), ScratchDir: o.Keep, Record: !o.NoRecord,
		ScratchWorkerURL: scratchURL, ScratchWorkerSecret: cfg.TestRestoreWorkerSecret,
		Env: o.f.Env(), Diff: o.Diff, Bound: o.comps,
	})
	if res == nil {
		return terr
	}
	rr := RunResult{Components: m.Components, Snapshots: []string{m.ID}}
	if len(o.Components) > 0 {
		rr.Components = o.Components // the audit record says what was tested: a drill pass of these only
	}
	for _, s := range res.Sources {
		rr.Bytes += s.Bytes
		rr.Items += int64(s.Items)
	}
	o.f.SetResult(rr)
	if o.f.jsonOut {
		if err := writeJSON(o.f.IO.Out, &TestRestoreMessage{MessageType: "test_restore", OK: res.OK, Result: res}); err != nil {
			return err
		}
		return terr
	}
	printTestRestore(o.f.IO.Out, m, res, o.Keep)
	return terr
}

// assertions pairs each --assert with its expectation (in order: an --assert followed directly by
// another has none; cobra loses the interleaving, so pair by position) and adds the config file's.
func (o *TestRestoreOptions) assertions() []engine.Assertion {
	var asserts []engine.Assertion
	for i, q := range o.Asserts {
		a := engine.Assertion{Database: o.Database, SQL: q}
		if i < len(o.Expects) {
			a.Expect = o.Expects[i]
		}
		asserts = append(asserts, a)
	}
	for _, a := range o.f.Config().TestRestore.Assertions {
		asserts = append(asserts, engine.Assertion{Database: a.Database, SQL: a.SQL, Expect: a.Expect})
	}
	return asserts
}

// scratchWorker is the local Workers runtime sampled Durable Objects are imported into ("" for
// none): never the production Worker, and only with its secret set.
func (o *TestRestoreOptions) scratchWorker() (string, error) {
	cfg := o.f.Config()
	scratchURL := o.WorkerURL
	if scratchURL == "" {
		scratchURL = cfg.TestRestoreWorkerURL
	}
	if scratchURL == "" {
		return "", nil
	}
	scratchURL, err := durableobject.ScratchWorkerURL(scratchURL, cfg.WorkerURL)
	if err != nil {
		return "", err
	}
	if cfg.TestRestoreWorkerSecret == "" {
		return "", usageError{errors.New("a scratch Worker URL is set but CFBACKUP_TEST_RESTORE_WORKER_SECRET is not: set it to the local runtime's CFBACKUP_SECRET")}
	}
	return scratchURL, nil
}

// checkDiff refuses --diff when the run does not include the config component, and needs the
// Cloudflare settings the comparison reads the live account with.
func (o *TestRestoreOptions) checkDiff(m *manifest.Manifest) error {
	if !o.Diff {
		return nil
	}
	if !containsStr(m.Components, configsrc.Component) || (len(o.Components) > 0 && !containsStr(o.Components, configsrc.Component)) {
		return usageError{fmt.Errorf("--diff compares the config component, which this test-restore does not include (snapshot %s has: %s)", m.ID, strings.Join(m.Components, ", "))}
	}
	_, err := o.f.Cloudflare()
	return err
}

// printTestRestore prints a test-restore's outcome, a line per source and its problems.
func printTestRestore(out io.Writer, m *manifest.Manifest, res *engine.TestRestoreResult, keep string) {
	state := "OK"
	if !res.OK {
		state = "FAILED"
	}
	fmt.Fprintf(out, "Test restore of snapshot %s %s (%s, into scratch targets only):\n", m.ID, state, (time.Duration(res.DurationMillis) * time.Millisecond).String())
	// Columns as wide as the longest component and source (a DO namespace id is 32 characters).
	cw, sw := 6, 20
	for _, s := range res.Sources {
		cw, sw = max(cw, len(s.Component)), max(sw, len(s.Source))
	}
	for _, s := range res.Sources {
		fmt.Fprintf(out, "  %-*s %-*s %d item(s), %s: %s\n", cw, s.Component, sw, s.Source, s.Items, humanBytes(s.Bytes), strings.Join(s.Checks, ", "))
		for i, p := range s.Problems {
			kind := engine.FailureError
			if i < len(s.ProblemKinds) {
				kind = s.ProblemKinds[i]
			}
			fmt.Fprintf(out, "  %*s PROBLEM (%s): %s\n", cw, "", kind, p)
		}
		if ch, _ := s.LiveChanges.([]configsrc.Change); len(ch) > 0 {
			fmt.Fprintf(out, "  %*s live account differs (- only in the snapshot, + only in the account, ~ changed):\n", cw, "")
			configsrc.WriteText(out, ch)
		}
	}
	if res.Seed != nil {
		fmt.Fprintf(out, "The sample was drawn with --seed %d (give it again to test the same objects).\n", *res.Seed)
	}
	if keep != "" {
		fmt.Fprintf(out, "Restored files kept in %s.\n", keep)
	}
}

// Package cli is cfbackup's command-line interface: thin cobra commands over pkg/engine.
//
// Main builds the dependencies, runs the root command and maps the error to an exit code in one place
// (exitcode.go), so end-to-end scripts can run it in-process. Each command is an Options struct, a
// NewCmdX constructor, and a run function; dependencies come lazily from a Factory, so a command that
// needs no store or no Cloudflare client never builds one.
package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	// Time zones (TZ for local times in --at/--since/--until, retention.timezone) work on hosts
	// without a zoneinfo database too (minimal containers): Go falls back to this copy.
	_ "time/tzdata"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/cfbackup/cfbackup/pkg/errclass"
)

// Version is set at build time with -ldflags "-X github.com/cfbackup/cfbackup/internal/cli.Version=…".
var Version = "dev"

// Main runs cfbackup with the process's arguments and environment and returns the exit code.
func Main() int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return run(ctx, os.Args[1:], IO{In: os.Stdin, Out: os.Stdout, Err: os.Stderr}, os.Getenv, processEnviron())
}

// IO holds the streams a command talks to.
type IO struct {
	In       io.Reader
	Out, Err io.Writer
}

func isTerminal(w any) bool {
	if u, ok := w.(interface{ Unwrap() io.Writer }); ok {
		w = u.Unwrap()
	}
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// Run executes one command line; it is Main without the process globals, for tests.
func Run(ctx context.Context, args []string, ios IO, getenv func(string) string) int {
	return run(ctx, args, ios, getenv, nil)
}

// run is Run with the process environment's variable list, for the strict CFBACKUP_* check (nil: no
// check, as in-process tests inject getenv only).
func run(ctx context.Context, args []string, ios IO, getenv func(string) string, environ []string) int {
	out := &stdout{w: ios.Out}
	f := &Factory{IO: IO{In: ios.In, Out: out, Err: ios.Err}, Getenv: getenv, environ: environ, args: args}
	root := NewRootCmd(f)
	root.SetArgs(args)
	root.SetIn(ios.In)
	root.SetOut(out)
	root.SetErr(ios.Err)
	ran, err := root.ExecuteContextC(ctx)
	err = rootUsage(err)
	if err != nil && !f.jsonOut && errors.Is(err, errclass.Usage) && jsonRequested(args) {
		f.jsonOut = true // the flags did not parse far enough to set --json
	}
	if err == nil {
		if err = out.finish(f.jsonOut, nil); err == nil {
			f.afterRun(ctx, ran, nil, ExitOK)
			return ExitOK
		}
		err = fmt.Errorf("print the result: %w", err) // the run did its work; its output is lost
	}
	if ctx.Err() != nil && !errors.Is(err, context.Canceled) {
		err = fmt.Errorf("%w: %v", context.Canceled, err)
	}
	code := exitCode(err)
	out.flushQuiet()
	if code == ExitInterrupted {
		fmt.Fprintln(ios.Err, "cfbackup: interrupted; no snapshot was written by this run and earlier snapshots are untouched")
	} else {
		fmt.Fprintf(ios.Err, "cfbackup: %v\n", err)
	}
	_ = out.finish(f.jsonOut, &RunError{Error: err.Error(), ExitCode: code, Class: exitClass(code)})
	f.afterRun(ctx, ran, err, code)
	return code
}

// exitClass names an exit status as --json documents and the audit trail spell it.
func exitClass(code int) string {
	if c := exitClasses[code]; c != "" {
		return c
	}
	return exitClasses[ExitFailure]
}

// stdout is the commands' standard output. With --json a run prints exactly one JSON document there
// (docs/JSON.md "One document per run"), whatever happens:
//   - writeJSON does not print a command's document at once but keeps it; when the command ends, Run
//     prints it, and when the run failed, with the error in it (RunError: "error", "exit_code",
//     "class") — a verify that found damage prints its result carrying exit code 6, not a result and
//     then an error document;
//   - a run that failed before it had a document to print prints the error document (ErrorMessage);
//   - a document that cannot carry the error (an array, as list prints) gives way to the error document.
//
// Bytes written directly (report --format json, text output) pass through; when a run wrote some, it
// printed its document itself, and a failure adds nothing to stdout (the error is on stderr).
type stdout struct {
	w       io.Writer
	pending any  // the document writeJSON kept, printed by finish
	direct  bool // something was written straight through
	// quiet holds a command's text summary back under -q (contract.go): dropped when the run
	// succeeds, printed when it fails.
	quiet *bytes.Buffer
}

func (s *stdout) Write(p []byte) (int, error) {
	if s.quiet != nil {
		if s.quiet.Len() < quietLimit {
			s.quiet.Write(p)
		}
		return len(p), nil
	}
	s.direct = true
	return s.w.Write(p)
}

// flushQuiet prints what -q held back, as the run failed.
func (s *stdout) flushQuiet() {
	if q := s.quiet; q != nil && q.Len() > 0 {
		s.quiet = nil
		_, _ = s.Write(q.Bytes())
	}
	s.quiet = nil
}

// Unwrap is the real standard output (isTerminal looks through to it).
func (s *stdout) Unwrap() io.Writer { return s.w }

// finish prints the run's one document; failure is nil when the run succeeded.
func (s *stdout) finish(jsonOut bool, failure *RunError) error {
	doc := s.pending
	s.pending = nil
	if failure != nil && jsonOut {
		switch d := doc.(type) {
		case failable:
			d.setRunError(*failure)
		case map[string]any: // the commands that still build their documents as maps
			d["error"], d["exit_code"], d["class"] = failure.Error, failure.ExitCode, failure.Class
		case nil:
			if s.direct {
				return nil
			}
			doc = nil
		default:
			doc = nil
		}
		if doc == nil {
			// Compact, on one line, as it always was.
			return json.NewEncoder(s.w).Encode(&ErrorMessage{MessageType: msgError, Error: failure.Error, ExitCode: failure.ExitCode, Class: failure.Class})
		}
	}
	if doc != nil {
		return encodeIndented(s.w, doc)
	}
	return nil
}

// NewRootCmd builds the command tree.
func NewRootCmd(f *Factory) *cobra.Command {
	root := &cobra.Command{
		Use:   "cfbackup",
		Short: "Back up and restore Cloudflare D1, Durable Objects, R2, KV and Workers config into encrypted archives",
		Long: `cfbackup backs up what a Cloudflare Workers application keeps — D1 databases (component d1),
Durable Object storage (do), R2 buckets (r2) and the Workers configuration around them (config) — into
an age-encrypted, LZ4-compressed repository on a local directory or any S3-compatible store, and
restores it, whole or in part (a table, an object, a prefix), to any point kept, with verification at
every step.

Start here (there is no default repository: set it once):
  export CFBACKUP_REPOSITORY=/var/backups/cfbackup    # or s3://BUCKET/PREFIX, or repository: in cfbackup.yaml
  cfbackup key generate -o ~/.config/cfbackup/key.txt
  cfbackup init --recipient age1...
  cfbackup backup --component d1,r2    # components: d1 (default), do, r2, kv, config
  cfbackup -q backup                   # for cron: silent unless it fails
  cfbackup list
  cfbackup verify latest --read-data --identity-file ~/.config/cfbackup/key.txt
  cfbackup restore latest --component d1 --d1-database app --to-file app.sqlite --identity-file ~/.config/cfbackup/key.txt
  cfbackup restore latest --component r2 --r2-bucket media --to-dir ./media --identity-file ~/.config/cfbackup/key.txt

Scheduled runs: prune (retention), test-restore (restore drills), report (compliance); docs/RUNBOOK.md
for disaster recovery. Settings come from flags, then CFBACKUP_* environment variables, then
cfbackup.yaml (see docs/CONFIG.md). Secrets only come from the environment or files:
CLOUDFLARE_API_TOKEN, AWS_SECRET_ACCESS_KEY, CFBACKUP_R2_SECRET_ACCESS_KEY, CFBACKUP_IDENTITY_FILE.`,
		Version:       Version,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, args []string) error {
			if err := f.load(cmd); err != nil {
				return err
			}
			return f.beforeRun(cmd)
		},
	}
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return usageError{fmt.Errorf("%v (see '%s --help')", err, c.CommandPath())}
	})
	pf := root.PersistentFlags()
	pf.StringVar(&f.configFile, "config", "", "config file (default: ./cfbackup.yaml, then ~/.config/cfbackup/cfbackup.yaml; env CFBACKUP_CONFIG)")
	pf.StringP("repo", "r", "", "repository: a local path, file://PATH or s3://BUCKET/PREFIX (also --repository; env CFBACKUP_REPOSITORY; no default)")
	pf.String("identity-file", "", "age identity file, for commands that decrypt (env CFBACKUP_IDENTITY_FILE)")
	pf.String("log-level", "", "log level on stderr: debug, info, warn, error (env CFBACKUP_LOG_LEVEL)")
	pf.BoolVar(&f.jsonOut, "json", false, "print machine-readable JSON on stdout (documented in docs/CLI_JSON_OUTPUT.md)")
	pf.BoolVar(&f.noProgress, "no-progress", false, "never show a progress bar (it is shown only on a terminal anyway)")
	addContractFlags(root)
	pf.Var(new(durationFlag), "retry-lock", "if the repository is locked by another process, keep trying this long (e.g. 10m, 1h; docs/CONFIG.md \"Times and durations\")")

	root.AddCommand(
		NewCmdKey(f),
		NewCmdInit(f, nil),
		NewCmdBackup(f, nil),
		NewCmdList(f, nil),
		NewCmdStats(f, nil),
		NewCmdVerify(f, nil),
		NewCmdRestore(f, nil),
		NewCmdCopy(f, nil),
		NewCmdTestRestore(f, nil),
		NewCmdDoctor(f, nil),
		NewCmdAudit(f),
		NewCmdReport(f, nil),
		NewCmdPrune(f, nil),
		NewCmdHold(f),
		NewCmdUnlock(f, nil),
		NewCmdMigrate(f, nil),
		NewCmdVersion(f),
		NewCmdApprove(f), NewCmdPlans(f), NewCmdApprovers(f),
		NewCmdShard(f),
	)
	addHookFlags(root)
	for _, c := range root.Commands() {
		appendExitCodes(c)
	}
	root.InitDefaultCompletionCmd() // now, so that strictParents covers 'completion' too
	strictHelp(root)
	strictParents(root)
	applyFlagAliases(root)
	registerCompletions(root, f)
	return root
}

const exitHelp = `
Exit status:
  0 success · 1 failure · 2 usage error · 3 repository missing/exists/unsupported · 4 key problem
  5 Cloudflare API error · 6 integrity failure · 7 not found · 8 refused (target exists)
  9 config differs (restore --diff) · 10 repository locked · 11 retention policy violated (prune --enforce)
  12 protected target: approval or test-restore needed (docs/APPROVAL.md)
  13 sharded run incomplete (shard merge) · 130 interrupted (docs/EXIT_CODES.md)`

func appendExitCodes(c *cobra.Command) {
	if c.Runnable() && !strings.Contains(c.Long, "Exit status:") {
		c.Long = strings.TrimRight(c.Long, "\n") + "\n" + exitHelp
	}
	// Wrong positional arguments are usage errors (exit 2), like wrong flags.
	if args := c.Args; args != nil {
		c.Args = func(cmd *cobra.Command, a []string) error {
			if err := args(cmd, a); err != nil {
				return usageError{fmt.Errorf("%v (see '%s --help')", err, cmd.CommandPath())}
			}
			return nil
		}
	}
	for _, sub := range c.Commands() {
		appendExitCodes(sub)
	}
}

// writeJSON prints a command's --json document v. On the run's standard output the document is kept
// and printed by Run when the command ends (stdout.finish), so that a failing run still prints one
// document, carrying its error; a second document from the same run prints the first at once.
func writeJSON(w io.Writer, v any) error {
	if s, ok := w.(*stdout); ok {
		if s.pending != nil {
			if err := encodeIndented(s.w, s.pending); err != nil {
				return err
			}
		}
		s.pending = v
		return nil
	}
	return encodeIndented(w, v)
}

func encodeIndented(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

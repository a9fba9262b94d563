package cli

// The command-line contract for cron and scripts (docs/CONFIG.md "Output and logging", docs/EXIT_CODES.md):
// -q/--verbose/--log-format, unknown commands and subcommands as usage errors, flag aliases kept for
// old names, and a JSON error document for flag errors under --json.

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/cfbackup/cfbackup/internal/config"
)

// addContractFlags binds the global output flags. --version has no shorthand: cobra would make -v
// one, and `cfbackup -v backup` printed a version and exited 0 without taking a backup.
func addContractFlags(root *cobra.Command) {
	pf := root.PersistentFlags()
	pf.BoolP("quiet", "q", false, "errors only: nothing on stderr (and no summary on stdout) when a run succeeds; for cron (env CFBACKUP_QUIET)")
	pf.Bool("verbose", false, "log at debug level: which config file was read, each step (env CFBACKUP_VERBOSE; same as --log-level debug)")
	pf.Bool("debug", false, "same as --verbose")
	_ = pf.MarkHidden("debug")
	pf.String("log-format", "", "log lines on stderr: text (default) or json, one object per line (env CFBACKUP_LOG_FORMAT)")
	root.Flags().Bool("version", false, "print the version and exit")
}

// setupOutput applies -q, --verbose and --log-format once the configuration is loaded: the logger,
// and under -q a stderr that drops everything but errors and a stdout that keeps a command's summary
// back unless the run fails (quietOut).
func (f *Factory) setupOutput(cmd *cobra.Command) {
	c := f.cfg
	level := c.LogLevel
	switch {
	case c.Quiet:
		level = "error"
	case c.Verbose:
		level = "debug"
	}
	f.log = newLogger(f.IO.Err, level, c.LogFormat, secretValues(c))
	if c.Quiet {
		f.noProgress = true
		f.IO.Err = io.Discard
		if q, ok := f.IO.Out.(*stdout); ok && quietSummary(cmd) {
			q.quiet = &bytes.Buffer{}
		}
	}
	if c.File != "" {
		f.log.Debug("config file loaded", "file", c.File)
	} else {
		f.log.Debug("no config file: none given with --config or CFBACKUP_CONFIG, and neither ./cfbackup.yaml nor the user's cfbackup/cfbackup.yaml exists")
	}
	f.noteDeprecated(cmd)
}

// quietSummary reports whether cmd's text on stdout is a summary of work done (held back under -q)
// rather than what was asked for (list, report, key generate: always printed).
func quietSummary(cmd *cobra.Command) bool {
	switch commandName(cmd) {
	case "backup", "verify", "test-restore", "prune", "copy", "unlock", "migrate", "init", "hold add", "hold release":
		return true
	}
	return false
}

// quietLimit bounds what -q holds back of a summary (printed only if the run fails).
const quietLimit = 1 << 20

// secretValues are the run's secrets: the logger replaces them wherever they would appear.
func secretValues(c *config.Config) []string {
	var out []string
	for _, s := range []string{c.CloudflareAPIToken, c.AWSSecretAccessKey, c.AWSSessionToken, c.SMTPPassword,
		c.NotifyWebhook, c.R2SecretAccessKey, c.WorkerSecret, c.TestRestoreWorkerSecret} {
		if len(s) >= 4 {
			out = append(out, s)
		}
	}
	return out
}

// newLogger is the stderr logger: text or JSON lines (time, level, msg, attributes), with any
// secret value and any attribute named like a secret redacted.
func newLogger(w io.Writer, level, format string, secrets []string) *slog.Logger {
	var lv slog.Level
	switch strings.ToLower(level) {
	case "debug":
		lv = slog.LevelDebug
	case "warn":
		lv = slog.LevelWarn
	case "error":
		lv = slog.LevelError
	default:
		lv = slog.LevelInfo
	}
	opts := &slog.HandlerOptions{Level: lv, ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
		k := strings.ToLower(a.Key)
		if strings.Contains(k, "secret") || strings.Contains(k, "token") || strings.Contains(k, "password") {
			return slog.String(a.Key, "[redacted]")
		}
		if a.Value.Kind() == slog.KindString || a.Value.Kind() == slog.KindAny {
			s := a.Value.String()
			for _, sec := range secrets {
				if strings.Contains(s, sec) {
					return slog.String(a.Key, strings.ReplaceAll(s, sec, "[redacted]"))
				}
			}
		}
		return a
	}}
	if strings.EqualFold(format, "json") {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// strictParents makes every command that only groups subcommands (audit, hold, key, and any added
// later) refuse a stray argument as a usage error with cobra's suggestion, instead of printing help
// and exiting 0. It walks the tree once, so new parent commands get it for free.
func strictParents(c *cobra.Command) {
	for _, sub := range c.Commands() {
		strictParents(sub)
	}
	if c.HasParent() && c.HasSubCommands() && !c.Runnable() {
		c.Args = unknownSubcommand
		if c.SuggestionsMinimumDistance <= 0 {
			c.SuggestionsMinimumDistance = 2 // cobra's default, which it sets only on its own path
		}
		c.RunE = func(cmd *cobra.Command, args []string) error { return cmd.Help() }
	}
}

// strictHelp makes 'cfbackup help NOSUCH' a usage error like 'cfbackup NOSUCH', not a note and 0.
func strictHelp(root *cobra.Command) {
	root.InitDefaultHelpCmd()
	for _, c := range root.Commands() {
		if c.Name() != "help" || c.Run == nil {
			continue
		}
		run := c.Run
		c.Run = nil
		c.RunE = func(cmd *cobra.Command, args []string) error {
			if found, rest, err := root.Find(args); err != nil || found == nil || len(rest) > 0 && found.HasSubCommands() {
				return usageError{fmt.Errorf("unknown help topic %q (see 'cfbackup --help')", strings.Join(args, " "))}
			}
			run(cmd, args)
			return nil
		}
	}
}

func unknownSubcommand(cmd *cobra.Command, args []string) error {
	if len(args) == 0 {
		return nil
	}
	msg := fmt.Sprintf("unknown command %q for %q", args[0], cmd.CommandPath())
	if s := cmd.SuggestionsFor(args[0]); len(s) > 0 {
		msg += "; did you mean " + strings.Join(s, " or ") + "?"
	} else {
		var names []string
		for _, sub := range cmd.Commands() {
			if sub.IsAvailableCommand() {
				names = append(names, sub.Name())
			}
		}
		msg += "; its commands are " + strings.Join(names, ", ")
	}
	return usageError{fmt.Errorf("%s (see '%s --help')", msg, cmd.CommandPath())}
}

// rootUsage classes cobra's own errors about the command line (unknown command at the top level,
// which cobra reports before any of our hooks run) as usage errors, keeping its suggestion.
func rootUsage(err error) error {
	if err == nil {
		return err
	}
	var u usageError
	if errors.As(err, &u) {
		return err
	}
	if msg := err.Error(); strings.HasPrefix(msg, "unknown command ") || strings.HasPrefix(msg, "unknown flag") || strings.HasPrefix(msg, "unknown shorthand flag") {
		msg = strings.ReplaceAll(strings.TrimSpace(msg), "\n\nDid you mean this?\n\t", "; did you mean ")
		msg = strings.ReplaceAll(msg, "\n\t", " or ")
		msg = strings.TrimSuffix(msg, "\n")
		if strings.Contains(msg, "did you mean") {
			msg += "?"
		}
		if strings.HasPrefix(msg, "unknown command ") {
			msg += " (see 'cfbackup --help')"
		}
		return usageError{errors.New(msg)}
	}
	return err
}

// jsonRequested reports whether --json appears in args before "--": a run whose flags did not parse
// still prints its one JSON error document when --json was asked for.
func jsonRequested(args []string) bool {
	for _, a := range args {
		switch a {
		case "--":
			return false
		case "--json", "--json=true", "--json=1":
			return true
		}
	}
	return false
}

// flagAliases maps, per command, old flag names to the one name each concept has across verbs and
// components. The old names keep working (a hidden spelling, through the flag set's normalisation)
// with a deprecation note on stderr unless -q.
var flagAliases = map[string]map[string]string{
	"backup":  {"r2-prefix": "prefix"},
	"restore": {"ids-from": "object-ids-from", "object": "key", "objects-from": "keys-from"},
}

// applyFlagAliases installs the aliases on every command's flags (after they are bound), and
// --repository, the config key's and the variable's name, as a spelling of --repo.
func applyFlagAliases(c *cobra.Command) {
	aliases := flagAliases[commandName(c)]
	norm := func(_ *pflag.FlagSet, name string) pflag.NormalizedName {
		if n, ok := aliases[name]; ok {
			return pflag.NormalizedName(n)
		}
		if name == "repository" {
			return "repo"
		}
		return pflag.NormalizedName(name)
	}
	c.Flags().SetNormalizeFunc(norm)
	c.PersistentFlags().SetNormalizeFunc(norm)
	for _, sub := range c.Commands() {
		applyFlagAliases(sub)
	}
}

// noteDeprecated tells the operator, once per old name, which old flag names the command line used.
func (f *Factory) noteDeprecated(cmd *cobra.Command) {
	aliases := flagAliases[commandName(cmd)]
	noted := map[string]bool{}
	for _, a := range f.args {
		if a == "--" {
			return
		}
		name, _, _ := strings.Cut(strings.TrimPrefix(a, "--"), "=")
		if n, ok := aliases[name]; ok && strings.HasPrefix(a, "--") && !noted[name] {
			noted[name] = true
			fmt.Fprintf(f.IO.Err, "cfbackup: --%s is deprecated: use --%s (the old name still works)\n", name, n)
		}
	}
}

// processEnviron is the process environment for the strict CFBACKUP_* check: Main passes it; Run
// (in-process tests, which inject getenv only) passes nil and the check is skipped.
func processEnviron() []string { return os.Environ() }

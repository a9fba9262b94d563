package cli

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/cfbackup/cfbackup/pkg/audit"

	"github.com/spf13/cobra"

	"github.com/cfbackup/cfbackup/pkg/engine"
	"github.com/cfbackup/cfbackup/pkg/report"
)

// ReportOptions are the flags of 'report'.
type ReportOptions struct {
	f      *Factory
	Since  string
	Format string
	Output string
}

// NewCmdReport writes the compliance report.
func NewCmdReport(f *Factory, runF func(*ReportOptions) error) *cobra.Command {
	o := &ReportOptions{f: f}
	cmd := &cobra.Command{
		Use:   "report [--since 90d] [--format text|json|csv|html] [-o FILE]",
		Short: "Compliance report: backups, failures, retention, holds, verification, audit chain",
		Long: `Summarise what the repository proves for a period (default: all history):

  - backup runs per component counted from the audit trail (successful, failed, never finished) and
    their success rate, which retention does not change; sizes and durations over time, snapshots
    removed by prune included (their prune record keeps their figures);
  - restores, test-restores, copies, approvals and break-glass restores, each its own section, and
    when each component last passed a drill (a successful test-restore; docs/REPORT.md);
  - the retention policy and what prune kept and deleted (prune/ records);
  - legal holds, active and released (holds/ records);
  - verification and test-restore coverage (verify/ records);
  - the audit chain's status, and the recipients' key fingerprints.

It reads only plaintext metadata: no identity is needed and nothing is decrypted.
--format html writes one self-contained page with inline SVG charts that opens offline; json and
csv are documented contracts (docs/CLI_JSON_OUTPUT.md); text (the default) is a short summary.
The format follows -o's extension (.html, .json, .csv) when --format is not given.`,
		Example: `  cfbackup report
  cfbackup report --since 90d --format html -o report-q3.html
  cfbackup report --since 2026-01-01 --format csv -o report.csv
  cfbackup report --since 30d --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if runF != nil {
				return runF(o)
			}
			return reportRun(cmd, o)
		},
	}
	cmd.Flags().StringVar(&o.Since, "since", "", "start of the period: a duration back from now (90d, 2w, 1d12h) or a time (2026-01-31, 2026-01-31T09:00:00Z); docs/CONFIG.md \"Times and durations\"")
	cmd.Flags().StringVar(&o.Format, "format", "", "text, json, csv or html (default: from -o's extension, else text; json with --json)")
	cmd.Flags().StringVarP(&o.Output, "output", "o", "", "write the report to FILE instead of stdout (replaced atomically)")
	reads(cmd, audit.ReadsMetadata)
	return cmd
}

func reportFormat(o *ReportOptions) (string, error) {
	format := strings.ToLower(o.Format)
	if format == "" {
		switch {
		case o.f.jsonOut:
			format = "json"
		case o.Output != "":
			switch strings.ToLower(filepath.Ext(o.Output)) {
			case ".html", ".htm":
				format = "html"
			case ".json":
				format = "json"
			case ".csv":
				format = "csv"
			default:
				format = "text"
			}
		default:
			format = "text"
		}
	}
	switch format {
	case "text", "json", "csv", "html":
		return format, nil
	}
	return "", usageError{fmt.Errorf("--format %q: use text, json, csv or html", o.Format)}
}

func reportRun(cmd *cobra.Command, o *ReportOptions) error {
	ctx := cmd.Context()
	format, err := reportFormat(o)
	if err != nil {
		return err
	}
	now := time.Now()
	since, err := parseSince(o.Since, now)
	if err != nil {
		return err
	}
	r, err := o.f.Repo(ctx)
	if err != nil {
		return err
	}
	ro := report.Options{Since: since, Now: now}
	// The configured retention policy is checked now with a dry-run prune (reads only, takes no lock).
	if ps, err := o.f.Config().RetentionPolicies(); err == nil && !ps.Empty() {
		res, err := o.f.Engine(r).Prune(ctx, engine.PruneOptions{Policies: ps, DryRun: true})
		if err != nil {
			o.f.Log().Warn("could not evaluate the retention policy for the report", "err", err)
		} else {
			ro.PolicyEvaluated, ro.PolicyViolations = true, res.Violations
		}
	}
	rep, err := report.Build(ctx, r, ro)
	if err != nil {
		return err
	}
	if !rep.Audit.OK {
		o.f.Log().Warn("the audit chain is broken; the report says where (run 'cfbackup audit verify')", "problems", len(rep.Audit.Problems))
	}
	write := func(w *bufio.Writer) error {
		var err error
		switch format {
		case "json":
			err = rep.WriteJSON(w)
		case "csv":
			err = rep.WriteCSV(w)
		case "html":
			err = rep.WriteHTML(w)
		default:
			err = rep.WriteText(w)
		}
		if err != nil {
			return err
		}
		return w.Flush()
	}
	if o.Output == "" || o.Output == "-" {
		return write(bufio.NewWriter(o.f.IO.Out))
	}
	tmp, err := os.CreateTemp(filepath.Dir(o.Output), "."+filepath.Base(o.Output)+".tmp*")
	if err != nil {
		return fmt.Errorf("write the report: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := write(bufio.NewWriter(tmp)); err != nil {
		tmp.Close()
		return fmt.Errorf("write the report: %w", err)
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write the report: %w", err)
	}
	if err := os.Rename(tmp.Name(), o.Output); err != nil {
		return fmt.Errorf("write the report: %w", err)
	}
	fmt.Fprintf(o.f.IO.Err, "Wrote the %s report to %s.\n", format, o.Output)
	return nil
}

package cli

import (
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/cfbackup/cfbackup/pkg/audit"
	"github.com/cfbackup/cfbackup/pkg/engine"
	"github.com/cfbackup/cfbackup/pkg/timespec"
)

// NewCmdAudit groups the audit-trail commands.
func NewCmdAudit(f *Factory) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "audit",
		Short: "Show and check the repository's tamper-evident audit trail",
		Long: `Every command that changes the repository or the account (init, backup, restore, key generate, and
prune, hold, copy where present) appends an audit record under audit/ in the repository: who (the
CFBACKUP_ACTOR variable, else user@host), what (command and arguments, secrets removed), when, the
result and exit code, and the snapshot ids. A run writes a "started" record before it begins and an
"ok" or "error" record when it ends, so a run that was killed still shows up. Each record carries the
SHA-256 of the one before it (docs/AUDIT.md).`,
	}
	cmd.AddCommand(newCmdAuditVerify(f), newCmdAuditList(f))
	return cmd
}

func newCmdAuditVerify(f *Factory) *cobra.Command {
	return &cobra.Command{
		Use:   "verify",
		Short: "Check the audit chain: no record deleted, edited or reordered",
		Long: `Read every audit record and check the chain: each sequence number from 1 to the newest has exactly
one record, each record hashes to the hash in its name, and each names the hash of the record before
it. A deleted, edited, reordered or forked record is reported by sequence number and object key, and
the command exits 6. Runs that started and never recorded their end (killed, crashed, or still
running) are listed too; they do not break the chain. Needs no identity.`,
		Example: `  cfbackup audit verify
  cfbackup audit verify --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			r, err := f.Repo(ctx)
			if err != nil {
				return err
			}
			// Walk, not Verify: the verdict needs no record kept, so memory stays bounded on a long trail.
			st, err := (&audit.Log{Store: r.Store}).Walk(ctx, func(audit.Record) error { return nil })
			if err != nil {
				return err
			}
			if f.jsonOut {
				if err := writeJSON(f.IO.Out, &AuditVerifyMessage{MessageType: msgAuditVerify, Status: st}); err != nil {
					return err
				}
			} else {
				printAuditStatus(f, st)
			}
			if !st.OK {
				return fmt.Errorf("%w: %w: %d problem(s) in %s", engine.ErrIntegrity, audit.ErrChain, len(st.Problems), r.Store.Location())
			}
			return nil
		},
	}
}

func printAuditStatus(f *Factory, st audit.Status) {
	out := f.IO.Out
	if st.OK {
		fmt.Fprintf(out, "Audit chain OK: %d record(s), head #%d %s.\n", st.Records, st.HeadSeq, shortHash(st.HeadHash))
	} else {
		fmt.Fprintf(out, "Audit chain BROKEN: %d record(s) read, head #%d, %d problem(s):\n", st.Records, st.HeadSeq, len(st.Problems))
		for _, p := range st.Problems {
			fmt.Fprintf(out, "  #%d %s: %s\n", p.Seq, p.Key, p.Problem)
		}
	}
	for _, g := range st.Gaps {
		fmt.Fprintf(out, "  note: #%d %s\n", g.Seq, g.Problem)
	}
	for _, u := range st.Unfinished {
		fmt.Fprintf(out, "  unfinished: #%d %s %s by %s on %s started and never recorded its end (killed, crashed or still running)\n",
			u.Seq, u.Time.Format(time.RFC3339), u.Command, u.Actor, u.Host)
	}
}

func shortHash(h string) string {
	if len(h) > 12 {
		return h[:12]
	}
	return h
}

func newCmdAuditList(f *Factory) *cobra.Command {
	var since string
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List audit records, oldest first",
		Long: `List the audit records (oldest first): sequence number, time, actor, command, result, snapshot ids.
--since limits them to a recent window (90d, 36h, or a date/time such as 2026-01-31). With --json, an
array of the stored records exactly as documented in docs/AUDIT.md. The chain is checked on the way;
problems are printed on stderr (run 'cfbackup audit verify' for the verdict and exit code).`,
		Example: `  cfbackup audit list
  cfbackup audit list --since 7d --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			from, err := parseSince(since, time.Now())
			if err != nil {
				return err
			}
			r, err := f.Repo(ctx)
			if err != nil {
				return err
			}
			recs, st, err := (&audit.Log{Store: r.Store}).Verify(ctx)
			if err != nil {
				return err
			}
			if !st.OK {
				fmt.Fprintf(f.IO.Err, "warning: the audit chain has %d problem(s); run 'cfbackup audit verify'\n", len(st.Problems))
			}
			out := []audit.Record{}
			for _, rec := range recs {
				if !rec.Time.Before(from) {
					out = append(out, rec)
				}
			}
			if f.jsonOut {
				return writeJSON(f.IO.Out, out)
			}
			for _, rec := range out {
				res := rec.Result
				if rec.Result == audit.ResultError {
					res = fmt.Sprintf("error(%d): %s", rec.ExitCode, firstLine(rec.Error))
				}
				fmt.Fprintf(f.IO.Out, "#%-5d %s  %-20s %-14s %s %s%s\n", rec.Seq, rec.Time.Format(time.RFC3339), rec.Actor, rec.Command, res, strings.Join(rec.Snapshots, ","), recordCounts(rec))
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&since, "since", "", "only records newer than this: a duration back from now (90d, 12h) or a time (2026-01-31, 2026-01-31T09:00:00Z); docs/CONFIG.md \"Times and durations\"")
	return cmd
}

// recordCounts is what a record of a run that wrote a snapshot says it holds: " (12 item(s), 1.0 MiB,
// 400 B stored)"; "" for other records (and for records written before they carried counts).
func recordCounts(rec audit.Record) string {
	if rec.Items == 0 && rec.PerComponent == nil {
		return ""
	}
	return fmt.Sprintf(" (%d item(s), %s, %s stored)", rec.Items, humanBytes(rec.Bytes), humanBytes(rec.StoredBytes))
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

// parseSince reads --since in the one time grammar (docs/CONFIG.md "Times and durations"): "" is
// everything, a bare duration counts back from now (90d, 2w, 36h).
func parseSince(s string, now time.Time) (time.Time, error) {
	if strings.TrimSpace(s) == "" {
		return time.Time{}, nil
	}
	t, err := timespec.ParseTime(s, now, nil, timespec.BarePast)
	if err != nil {
		return time.Time{}, usageError{fmt.Errorf("--since: %w", err)}
	}
	return t.Time, nil
}

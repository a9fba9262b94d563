package cli

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/cfbackup/cfbackup/pkg/engine"
	"github.com/cfbackup/cfbackup/pkg/record"
	"github.com/cfbackup/cfbackup/pkg/store"
	"github.com/cfbackup/cfbackup/pkg/store/s3"
	"github.com/cfbackup/cfbackup/pkg/timespec"
)

// HoldOptions are the flags of 'hold add|release|list'.
type HoldOptions struct {
	f        *Factory
	Snapshot string
	Reason   string
	Case     string
	Until    string
	ID       string
}

// NewCmdHold groups the legal-hold commands.
func NewCmdHold(f *Factory) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "hold",
		Short: "Put a snapshot under legal hold so nothing deletes it, release it, list holds",
		Long: `A hold keeps a snapshot whatever the retention policy says: prune never removes a held snapshot.
Every hold and release is an immutable record under holds/ naming who (CFBACKUP_ACTOR, else
user@host), when, why and the case. Where the repository is an S3 bucket with Object Lock, 'hold add'
also sets an S3 legal hold on every object the snapshot needs, so the store itself refuses to delete
them; 'hold release' clears them again (except those another active hold still needs). On R2 (no
Object Lock) the hold binds cfbackup only, and the command prints the bucket lock rule you can add.`,
	}
	cmd.AddCommand(newCmdHoldAdd(f), newCmdHoldRelease(f), newCmdHoldList(f))
	return cmd
}

func newCmdHoldAdd(f *Factory) *cobra.Command {
	o := &HoldOptions{f: f}
	cmd := &cobra.Command{
		Use:   "add SNAPSHOT --reason TEXT [--case ID] [--until TIME]",
		Short: "Place a legal hold on a snapshot",
		Long: `Place a hold on SNAPSHOT (an id, a unique prefix, or latest). --until (a time such as
2027-01-31T00:00:00Z or 2027-01-31 — local midnight —, or a duration from now such as 90d; docs/CONFIG.md
"Times and durations") ends the hold by itself; without it the hold lasts until 'hold release'.`,
		Example: `  cfbackup hold add 3f2a9c1e --reason "litigation hold" --case LEGAL-42
  cfbackup hold add latest --reason "audit 2026" --until 2027-01-31T00:00:00Z`,
		Args:        cobra.ExactArgs(1),
		Annotations: map[string]string{"mutating": "true"},
		RunE: func(cmd *cobra.Command, args []string) error {
			o.Snapshot = args[0]
			return holdAddRun(cmd, o)
		},
	}
	cmd.Flags().StringVar(&o.Reason, "reason", "", "why the snapshot is held (required)")
	cmd.Flags().StringVar(&o.Case, "case", "", "case or ticket id")
	cmd.Flags().StringVar(&o.Until, "until", "", "end of the hold: a time (2027-01-31T00:00:00Z, 2027-01-31) or a duration from now (90d); docs/CONFIG.md \"Times and durations\"")
	return cmd
}

func newCmdHoldRelease(f *Factory) *cobra.Command {
	o := &HoldOptions{f: f}
	cmd := &cobra.Command{
		Use:   "release SNAPSHOT --reason TEXT [--id HOLD]",
		Short: "Release a snapshot's holds",
		Long:  `Release the active holds of SNAPSHOT (or only hold --id). The release is recorded; the hold record stays.`,
		Example: `  cfbackup hold release 3f2a9c1e --reason "case closed"
  cfbackup hold release 3f2a9c1e --id 9d1e2f3a4b5c6d7e --reason "superseded"`,
		Args:        cobra.ExactArgs(1),
		Annotations: map[string]string{"mutating": "true"},
		RunE: func(cmd *cobra.Command, args []string) error {
			o.Snapshot = args[0]
			return holdReleaseRun(cmd, o)
		},
	}
	cmd.Flags().StringVar(&o.Reason, "reason", "", "why the hold ends (required)")
	cmd.Flags().StringVar(&o.ID, "id", "", "release only this hold (see 'hold list')")
	return cmd
}

func newCmdHoldList(f *Factory) *cobra.Command {
	all := false
	cmd := &cobra.Command{
		Use:     "list [SNAPSHOT]",
		Short:   "List holds (active ones, or --all with released and expired ones)",
		Long:    `List holds, newest last: snapshot, hold id, since, until, actor, case, reason; --json for scripts.`,
		Example: "  cfbackup hold list\n  cfbackup hold list --all --json",
		Args:    cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			r, err := f.Repo(ctx)
			if err != nil {
				return err
			}
			hs, err := f.Engine(r).ListHolds(ctx)
			if err != nil {
				return err
			}
			var out []engine.Hold
			for _, h := range hs {
				if (all || h.Active) && (len(args) == 0 || strings.HasPrefix(h.Snapshot, args[0])) {
					out = append(out, h)
				}
			}
			if f.jsonOut {
				if out == nil {
					out = []engine.Hold{}
				}
				return writeJSON(f.IO.Out, out)
			}
			if len(out) == 0 {
				fmt.Fprintln(f.IO.Out, "No holds.")
				return nil
			}
			for _, h := range out {
				until, state := "-", "active"
				if h.Until != nil {
					until = h.Until.Format(time.RFC3339)
				}
				if h.Release != nil {
					state = "released " + h.Release.Time.Format(time.RFC3339) + " by " + h.Release.Actor
				} else if !h.Active {
					state = "expired"
				}
				fmt.Fprintf(f.IO.Out, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", h.Snapshot, h.ID, h.Time.Format(time.RFC3339), until, h.Actor, h.Case, h.Reason, state)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&all, "all", false, "include released and expired holds")
	return cmd
}

// parseUntil reads --until in the one time grammar (docs/CONFIG.md "Times and durations"); a bare
// duration counts from now (90d).
func parseUntil(s string, now time.Time) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	t, err := timespec.ParseTime(s, now, nil, timespec.BareFuture)
	if err != nil {
		return time.Time{}, usageError{fmt.Errorf("--until: %w", err)}
	}
	return t.Time, nil
}

func holdAddRun(cmd *cobra.Command, o *HoldOptions) error {
	ctx := cmd.Context()
	if strings.TrimSpace(o.Reason) == "" {
		return usageError{fmt.Errorf("hold add needs --reason TEXT (the record is evidence: say why)")}
	}
	until, err := parseUntil(o.Until, time.Now())
	if err != nil {
		return err
	}
	r, err := o.f.Repo(ctx)
	if err != nil {
		return err
	}
	m, err := r.FindSnapshot(ctx, o.Snapshot, "")
	if err != nil {
		return err
	}
	eng := o.f.Engine(r)
	res, err := eng.AddHold(ctx, m, engine.HoldOptions{Reason: o.Reason, Case: o.Case, Until: until})
	if err != nil {
		return err
	}
	rule := o.r2Rule(ctx, r.Store, until)
	if o.f.jsonOut {
		return writeJSON(o.f.IO.Out, &HoldMessage{MessageType: msgHold, Action: record.HoldAdd, Snapshot: m.ID, Result: res, R2BucketLockRule: rule})
	}
	h := res.Holds[0]
	fmt.Fprintf(o.f.IO.Out, "Snapshot %s is held (hold %s, by %s). Protection: %s.\n", m.ID, h.ID, h.Actor, res.Protection)
	if rule != "" {
		fmt.Fprint(o.f.IO.Out, rule)
	}
	return nil
}

// r2Rule explains, for an S3 store without Object Lock, the bucket lock rule the operator can add.
func (o *HoldOptions) r2Rule(ctx context.Context, st store.Store, until time.Time) string {
	loc := st.Location()
	if !strings.HasPrefix(loc, "s3://") {
		return ""
	}
	if lk, ok := store.AsObjectLocker(st); ok {
		if on, err := lk.ObjectLockEnabled(ctx); err == nil && on {
			return ""
		}
	}
	bucket, prefix, _ := strings.Cut(strings.TrimPrefix(loc, "s3://"), "/")
	if prefix != "" {
		prefix += "/"
	}
	cond := `{"type":"Indefinite"}`
	if !until.IsZero() {
		cond = fmt.Sprintf(`{"type":"Date","date":%q}`, until.UTC().Format(time.RFC3339))
	}
	if !s3.IsR2(o.f.Config().S3Endpoint) {
		return "This bucket has no S3 Object Lock: create the repository's bucket with Object Lock enabled to have the store enforce holds.\n"
	}
	return fmt.Sprintf(`R2 has no per-object legal hold. To make R2 itself refuse deletes, add a bucket lock rule. It covers
every object under the prefix (all snapshots, not only this one), and prune's deletes there will fail
until it ends; anyone who may edit bucket settings can remove it. A PUT replaces the bucket's whole rule
set: merge with existing rules (GET the same URL first).
  PUT https://api.cloudflare.com/client/v4/accounts/$CLOUDFLARE_ACCOUNT_ID/r2/buckets/%s/lock
  {"rules":[{"id":"cfbackup-hold","enabled":true,"prefix":%q,"condition":%s}]}
`, bucket, prefix, cond)
}

func holdReleaseRun(cmd *cobra.Command, o *HoldOptions) error {
	ctx := cmd.Context()
	if strings.TrimSpace(o.Reason) == "" {
		return usageError{fmt.Errorf("hold release needs --reason TEXT")}
	}
	r, err := o.f.Repo(ctx)
	if err != nil {
		return err
	}
	id := o.Snapshot
	if m, err := r.FindSnapshot(ctx, o.Snapshot, ""); err == nil {
		id = m.ID
	} // a hold may outlive nothing, but its snapshot may be unreadable: release by full id then
	res, err := o.f.Engine(r).ReleaseHold(ctx, id, engine.HoldOptions{Reason: o.Reason, ID: o.ID})
	if err != nil {
		return err
	}
	if o.f.jsonOut {
		return writeJSON(o.f.IO.Out, &HoldMessage{MessageType: msgHold, Action: record.HoldRelease, Snapshot: id, Result: res})
	}
	fmt.Fprintf(o.f.IO.Out, "Released %d hold(s) on snapshot %s: %s.\n", len(res.Holds), id, res.Protection)
	return nil
}

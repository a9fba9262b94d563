package cli

import (
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/spf13/cobra"

	"github.com/cfbackup/cfbackup/pkg/engine"
	"github.com/cfbackup/cfbackup/pkg/retention"
)

// PruneOptions are the flags of 'prune'.
type PruneOptions struct {
	f                    *Factory
	Last                 int
	Hourly               int
	Daily                int
	Weekly               int
	Monthly              int
	Yearly               int
	Within               string
	Labels               []string
	RequireWithin        string
	Components           []string
	Sources              []string
	Grace                string
	DryRun               bool
	Enforce              bool
	UnsafeAllowRemoveAll bool
	// Tier and OlderThan select prune --tier (prune_tier.go).
	Tier      string
	OlderThan string

	policyFlags map[string]any
}

// NewCmdPrune removes snapshots a retention policy no longer keeps.
func NewCmdPrune(f *Factory, runF func(*PruneOptions) error) *cobra.Command {
	o := &PruneOptions{f: f}
	cmd := &cobra.Command{
		Use:   "prune [--keep-last N] [--keep-daily N] … [--dry-run]",
		Short: "Remove snapshots the retention policy no longer keeps, and the data only they used",
		Long: `Apply a retention policy: every snapshot that some rule keeps stays, every other one is removed.
Rules (a snapshot is kept when any rule keeps it):
  --keep-last N              the N newest snapshots
  --keep-hourly/daily/weekly/monthly/yearly N
                             the newest snapshot of each of the last N hours/days/ISO weeks/months/years
                             that have one, in the retention time zone (config retention.timezone, default UTC)
  --keep-within 30d          every snapshot younger than this, counted from the newest snapshot
  --keep-label k=v           every snapshot with this label
Rules apply per component and per source (each D1 database, R2 bucket, DO namespace on its own);
--component/--source limit the flags' policy to some of them (others keep everything). Without rule
flags the config file's retention: block is used (docs/RETENTION.md).

Safety:
  * A held snapshot ('cfbackup hold') is never removed.
  * Data a kept snapshot references (incremental snapshots reuse older segments) is never deleted.
  * Two phases: removed snapshots' manifests go at once; their data, and data left by crashed backups,
    is first marked and deleted by a later prune once it has been unreferenced for --grace (24h), so
    a backup running right now is never robbed of its segments.
  * prune takes the repository's exclusive lock: it waits for (or, without --retry-lock, refuses to
    run beside) backup, restore and verify, and they wait for it.
  * Every delete is checked; a prune record is written under prune/.
  * An empty policy is refused unless --unsafe-allow-remove-all.
--dry-run prints the plan and changes nothing. --enforce exits 11 when a snapshot outlives its policy
or require_within (--require-within 26h) finds no recent snapshot.
--tier CLASS --older-than 30d removes nothing: it moves the segments that only snapshots older than
that use to a cheaper S3/R2 storage class (docs/STORAGE_CLASSES.md).`,
		Example: `  cfbackup prune --keep-daily 7 --keep-weekly 4 --keep-monthly 12 --dry-run
  cfbackup prune --keep-last 48 --component d1 --source r2/media --keep-within 30d
  cfbackup prune --retry-lock 30m --json            # policy from the config file's retention: block
  cfbackup prune --keep-daily 14 --require-within 26h --enforce
  cfbackup prune --tier STANDARD_IA --older-than 30d --dry-run   # segments only old snapshots use (docs/STORAGE_CLASSES.md)`,
		Args:        cobra.NoArgs,
		Annotations: map[string]string{"mutating": "true"},
		RunE: func(cmd *cobra.Command, args []string) error {
			o.policyFlags = map[string]any{}
			cmd.Flags().Visit(func(fl *pflagFlag) {
				if strings.HasPrefix(fl.Name, "keep-") || fl.Name == "require-within" || fl.Name == "component" || fl.Name == "source" {
					o.policyFlags[strings.ReplaceAll(fl.Name, "-", "_")] = flagValue(fl)
				}
			})
			if runF != nil {
				return runF(o)
			}
			return pruneRun(cmd, o)
		},
	}
	fl := cmd.Flags()
	fl.IntVar(&o.Last, "keep-last", 0, "keep the N newest snapshots")
	fl.IntVar(&o.Hourly, "keep-hourly", 0, "keep the newest snapshot of each of the last N hours")
	fl.IntVar(&o.Daily, "keep-daily", 0, "keep the newest snapshot of each of the last N days")
	fl.IntVar(&o.Weekly, "keep-weekly", 0, "keep the newest snapshot of each of the last N ISO weeks")
	fl.IntVar(&o.Monthly, "keep-monthly", 0, "keep the newest snapshot of each of the last N months")
	fl.IntVar(&o.Yearly, "keep-yearly", 0, "keep the newest snapshot of each of the last N years")
	fl.StringVar(&o.Within, "keep-within", "", "keep every snapshot younger than this (30d, 36h, 1d12h, 1.5d), counted from the newest")
	fl.StringArrayVar(&o.Labels, "keep-label", nil, "keep every snapshot with this label key=value; repeatable")
	fl.StringVar(&o.RequireWithin, "require-within", "", "with --enforce: fail unless each source has a snapshot younger than this (e.g. 26h)")
	fl.StringSliceVar(&o.Components, "component", nil, "apply the flags' policy only to these components (d1, do, r2, config)")
	fl.StringSliceVar(&o.Sources, "source", nil, "apply the flags' policy only to these sources, component/name (e.g. d1/app)")
	fl.StringVar(&o.Grace, "grace", "24h", "how long unreferenced data waits (marked) before it is deleted (24h, 2d; docs/CONFIG.md \"Times and durations\")")
	fl.BoolVar(&o.DryRun, "dry-run", false, "print the plan; change nothing")
	fl.BoolVar(&o.Enforce, "enforce", false, "exit 11 when a snapshot outlives its policy or a required snapshot is missing")
	fl.BoolVar(&o.UnsafeAllowRemoveAll, "unsafe-allow-remove-all", false, "allow an empty policy, which removes every snapshot that is not held")
	bindTierFlags(cmd, o)
	return cmd
}

// policies builds the policy from the flags, or from the config file when no rule flag is given.
func (o *PruneOptions) policies() (retention.Policies, any, error) {
	cfgPs, err := o.f.Config().RetentionPolicies()
	if err != nil {
		return cfgPs, nil, err
	}
	for _, n := range []struct {
		name string
		v    int
	}{{"keep-last", o.Last}, {"keep-hourly", o.Hourly}, {"keep-daily", o.Daily}, {"keep-weekly", o.Weekly}, {"keep-monthly", o.Monthly}, {"keep-yearly", o.Yearly}} {
		if n.v < 0 {
			return cfgPs, nil, usageError{fmt.Errorf("--%s %d: a count must be 0 or more", n.name, n.v)}
		}
	}
	var p retention.Policy
	p.Last, p.Hourly, p.Daily, p.Weekly, p.Monthly, p.Yearly = o.Last, o.Hourly, o.Daily, o.Weekly, o.Monthly, o.Yearly
	if o.Within != "" {
		if p.Within, err = retention.ParseDuration(o.Within); err != nil {
			return cfgPs, nil, usageError{fmt.Errorf("--keep-within: %w", err)}
		}
	}
	if o.RequireWithin != "" {
		if p.RequireWithin, err = retention.ParseDuration(o.RequireWithin); err != nil {
			return cfgPs, nil, usageError{fmt.Errorf("--require-within: %w", err)}
		}
	}
	if p.Labels, err = retention.ParseLabels(o.Labels); err != nil {
		return cfgPs, nil, usageError{fmt.Errorf("--keep-label: %w", err)}
	}
	flagsGiven := !p.Empty() || p.RequireWithin > 0
	if !flagsGiven {
		if len(o.Components) > 0 || len(o.Sources) > 0 {
			return cfgPs, nil, usageError{errors.New("--component/--source limit the --keep-* flags' policy: give at least one --keep-* flag")}
		}
		return cfgPs, o.f.Config().Retention, nil
	}
	ps := retention.Policies{Location: cfgPs.Location}
	if len(o.Components) == 0 && len(o.Sources) == 0 {
		ps.Default = p
	}
	for _, c := range o.Components {
		if err := engine.ValidateComponents([]string{c}); err != nil {
			return ps, nil, usageError{err}
		}
		if ps.Components == nil {
			ps.Components = map[string]retention.Policy{}
		}
		ps.Components[c] = p
	}
	for _, s := range o.Sources {
		comp, name, ok := strings.Cut(s, "/")
		if !ok || name == "" || engine.ValidateComponents([]string{comp}) != nil {
			return ps, nil, usageError{fmt.Errorf("--source %q: write component/name, e.g. d1/app or r2/media", s)}
		}
		if ps.Sources == nil {
			ps.Sources = map[string]retention.Policy{}
		}
		ps.Sources[s] = p
	}
	return ps, o.policyFlags, nil
}

func pruneRun(cmd *cobra.Command, o *PruneOptions) error {
	if tier, err := o.tierMode(cmd); err != nil || tier {
		if err != nil {
			return err
		}
		return pruneTierRun(cmd, o)
	}
	ctx := cmd.Context()
	ps, given, err := o.policies()
	if err != nil {
		return err
	}
	grace, err := retention.ParseDuration(o.Grace)
	if err != nil {
		return usageError{fmt.Errorf("--grace: %w", err)}
	}
	if grace == 0 {
		grace = -1 // engine: 0 means the default
	}
	r, err := o.f.Repo(ctx)
	if err != nil {
		return err
	}
	eng := o.f.Engine(r)
	res, perr := eng.Prune(ctx, engine.PruneOptions{
		Policies: ps, Policy: given, DryRun: o.DryRun, Grace: grace, UnsafeAllowRemoveAll: o.UnsafeAllowRemoveAll,
		Enforce: o.Enforce, Lock: engine.LockOptions{Retry: retryLock(cmd)},
	})
	if res == nil {
		return perr
	}
	if !res.DryRun {
		// The audit record names the snapshots removed (ids only); their figures are in the prune record.
		rr := RunResult{Snapshots: []string{}}
		for _, rm := range res.Removed {
			rr.Snapshots = append(rr.Snapshots, rm.Snapshot)
		}
		o.f.SetResult(rr)
	}
	out := o.f.IO.Out
	if o.f.jsonOut {
		if err := writeJSON(out, &PruneMessage{MessageType: msgPrune, OK: perr == nil, Result: res}); err != nil {
			return err
		}
		return perr
	}
	verb, freed := "Removed", "Freed"
	if res.DryRun {
		verb, freed = "Would remove", "Would free"
		fmt.Fprintln(out, "Dry run: nothing is changed.")
	}
	kept := append([]engine.PruneKept(nil), res.Kept...)
	sort.Slice(kept, func(i, j int) bool { return kept[i].Time > kept[j].Time })
	fmt.Fprintf(out, "Keep %d snapshot(s):\n", len(kept))
	for _, k := range kept {
		fmt.Fprintf(out, "  keep    %s  %s  %s\n", k.Snapshot, k.Time, strings.Join(k.Reasons, ","))
	}
	fmt.Fprintf(out, "%s %d snapshot(s):\n", verb, len(res.Removed))
	for _, rm := range res.Removed {
		fmt.Fprintf(out, "  remove  %s  %s  %s  %s\n", rm.Snapshot, rm.Time, strings.Join(rm.Components, ","), humanBytes(rm.StoredSize))
	}
	fmt.Fprintf(out, "%s %s (%d segment(s), %d other object(s)); %s unreferenced data waits for the %s grace period (%d newly marked).\n",
		freed, humanBytes(res.BytesFreed), res.SegmentsDeleted, res.ObjectsDeleted, humanBytes(res.PendingBytes), res.Grace, res.Marked)
	if res.TempFilesDeleted > 0 {
		fmt.Fprintf(out, "Temporary files of interrupted writes older than the grace period: %d (included above).\n", res.TempFilesDeleted)
	}
	for _, sp := range res.StaleShards {
		fmt.Fprintf(out, "  stale partial (%s): %s\n", strings.ToLower(verb), sp)
	}
	for _, v := range res.Violations {
		fmt.Fprintf(out, "  VIOLATION: %s\n", v)
	}
	for _, e := range res.Errors {
		fmt.Fprintf(out, "  ERROR: %s\n", e)
	}
	if res.RecordKey != "" {
		fmt.Fprintf(out, "Record: %s\n", res.RecordKey)
	}
	if perr != nil && len(res.Removed) > 0 && !res.DryRun {
		fmt.Fprintln(out, "The snapshots listed as removed are gone; their data stays until a later prune after the grace period. Nothing else was changed.")
	}
	return perr
}

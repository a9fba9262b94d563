package cli

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/cfbackup/cfbackup/pkg/engine"
	"github.com/cfbackup/cfbackup/pkg/retention"
	"github.com/cfbackup/cfbackup/pkg/s3api"
	"github.com/cfbackup/cfbackup/pkg/store"
)

// bindTierFlags adds prune's tiering flags (docs/STORAGE_CLASSES.md).
func bindTierFlags(cmd *cobra.Command, o *PruneOptions) {
	fl := cmd.Flags()
	fl.StringVar(&o.Tier, "tier", "", "instead of applying retention, move segments only old snapshots use to this storage class ("+strings.Join(store.S3Classes, ", ")+"; R2: "+strings.Join(store.R2Classes, ", ")+")")
	fl.StringVar(&o.OlderThan, "older-than", "", "with --tier: a segment moves when every snapshot that uses it is older than this (30d, 2160h)")
}

// tierMode checks the tiering flags; true when prune --tier was asked for.
func (o *PruneOptions) tierMode(cmd *cobra.Command) (bool, error) {
	if o.Tier == "" {
		if o.OlderThan != "" {
			return false, usageError{errors.New("--older-than goes with --tier CLASS: prune --tier STANDARD_IA --older-than 30d")}
		}
		return false, nil
	}
	if o.OlderThan == "" {
		return false, usageError{errors.New("--tier needs --older-than DURATION (e.g. 30d): which snapshots count as old")}
	}
	var clash []string
	cmd.Flags().Visit(func(fl *pflagFlag) {
		if strings.HasPrefix(fl.Name, "keep-") || slices.Contains([]string{"require-within", "component", "source", "grace", "enforce", "unsafe-allow-remove-all"}, fl.Name) {
			clash = append(clash, "--"+fl.Name)
		}
	})
	if len(clash) > 0 {
		return false, usageError{fmt.Errorf("--tier moves segments and removes nothing: it does not take %s; run prune for retention and prune --tier separately", strings.Join(clash, ", "))}
	}
	return true, nil
}

func pruneTierRun(cmd *cobra.Command, o *PruneOptions) error {
	ctx := cmd.Context()
	class, err := store.CheckStorageClass(o.Tier, s3api.IsR2(o.f.Config().S3Endpoint))
	if err != nil {
		return usageError{fmt.Errorf("--tier: %w", err)}
	}
	older, err := retention.ParseDuration(o.OlderThan)
	if err != nil {
		return usageError{fmt.Errorf("--older-than: %w", err)}
	}
	r, err := o.f.Repo(ctx)
	if err != nil {
		return err
	}
	res, terr := o.f.Engine(r).Tier(ctx, engine.TierOptions{Class: class, OlderThan: older, DryRun: o.DryRun, Lock: engine.LockOptions{Retry: retryLock(cmd)}})
	if res == nil {
		return terr
	}
	out := o.f.IO.Out
	if o.f.jsonOut {
		if err := writeJSON(out, &PruneTierMessage{MessageType: msgPruneTier, OK: terr == nil, Result: res}); err != nil {
			return err
		}
		return terr
	}
	verb := "Moved"
	if res.DryRun {
		verb = "Would move"
		fmt.Fprintln(out, "Dry run: nothing is changed.")
	}
	fmt.Fprintf(out, "%d of %d snapshot(s) older than %s.\n", res.Old, res.Snapshots, o.OlderThan)
	for _, c := range slices.Sorted(maps.Keys(res.Before)) {
		n := res.Before[c]
		fmt.Fprintf(out, "  %-20s %d segment(s), %s\n", c, n.Segments, humanBytes(n.Bytes))
	}
	fmt.Fprintf(out, "%s %d segment(s) (%s) to %s; %d already there (%s); %d shared with newer snapshots stay (%s).\n",
		verb, res.Moved.Segments, humanBytes(res.Moved.Bytes), res.Class, res.Already.Segments, humanBytes(res.Already.Bytes),
		res.Shared.Segments, humanBytes(res.Shared.Bytes))
	for _, e := range res.Errors {
		fmt.Fprintf(out, "  ERROR: %s\n", e)
	}
	return terr
}

package cli

import (
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/cfbackup/cfbackup/pkg/stats"
)

// StatsOptions are the flags of 'stats'.
type StatsOptions struct {
	f      *Factory
	Growth int
}

// NewCmdStats prints the repository's storage figures.
func NewCmdStats(f *Factory, runF func(*StatsOptions) error) *cobra.Command {
	o := &StatsOptions{f: f}
	cmd := &cobra.Command{
		Use:   "stats",
		Short: "Storage figures: bytes by prefix, component and source, savings, growth",
		Long: `Measure the repository: every object stored, by prefix (segments, manifests, indexes, records);
snapshots by component and by source with their logical sizes; logical against stored bytes (what
compression and deduplication save) and what no snapshot references any more (prune collects it);
the oldest and newest snapshot, how many are on legal hold, lock objects present; and growth — the
stored bytes each of the newest --growth snapshots added, summed per day and per ISO week.

It lists the repository once and reads only plaintext manifest metadata: no identity is needed.
The compliance report's storage section is the same computation (docs/STATS.md).`,
		Example: `  cfbackup stats
  cfbackup stats --growth 60 --json | jq '.growth.weekly'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if runF != nil {
				return runF(o)
			}
			return statsRun(cmd, o)
		},
	}
	cmd.Flags().IntVar(&o.Growth, "growth", stats.DefaultGrowthSnapshots, "how many of the newest snapshots the growth figures cover")
	return cmd
}

func statsRun(cmd *cobra.Command, o *StatsOptions) error {
	if o.Growth < 1 {
		return usageError{fmt.Errorf("--growth %d: give how many of the newest snapshots to cover, at least 1 (default %d)", o.Growth, stats.DefaultGrowthSnapshots)}
	}
	ctx := cmd.Context()
	r, err := o.f.Repo(ctx)
	if err != nil {
		return err
	}
	snaps, bad, err := r.ListSnapshots(ctx)
	if err != nil {
		return err
	}
	for k, e := range bad {
		o.f.Log().Warn("unreadable or unauthenticated manifest (not counted)", "key", k, "err", e)
	}
	held, err := o.f.Engine(r).HeldSnapshots(ctx)
	if err != nil {
		return err
	}
	st, err := stats.Compute(ctx, r.Store, snaps, stats.Options{GrowthSnapshots: o.Growth, Held: held})
	if err != nil {
		return err
	}
	if o.f.jsonOut {
		return writeJSON(o.f.IO.Out, &StatsMessage{MessageType: msgStats, Stats: st})
	}
	return printStats(o.f, st)
}

func printStats(f *Factory, st *stats.Stats) error {
	w := f.IO.Out
	fmt.Fprintf(w, "Repository %s: %s in %d object(s).\n", st.Repository, humanBytes(st.TotalBytes), st.TotalObjects)
	if st.Snapshots == 0 {
		fmt.Fprintln(w, "No snapshots yet. Take one with 'cfbackup backup'.")
	} else {
		fmt.Fprintf(w, "%d snapshot(s) from %s to %s; %d on legal hold; %d lock object(s).\n", st.Snapshots,
			st.Oldest.Format("2006-01-02 15:04 UTC"), st.Newest.Format("2006-01-02 15:04 UTC"), st.Held, st.Locks)
		fmt.Fprintf(w, "Logical %s, stored once %s: %.1f%% saved by compression and deduplication; unreferenced %s.\n",
			humanBytes(st.LogicalBytes), humanBytes(st.ReferencedBytes), 100*st.SavingsRatio, humanBytes(st.UnreferencedBytes))
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "\nPREFIX\tOBJECTS\tBYTES")
	for _, p := range st.Prefixes {
		fmt.Fprintf(tw, "%s\t%d\t%s\n", p.Prefix, p.Objects, humanBytes(p.Bytes))
	}
	if len(st.Components) > 0 {
		fmt.Fprintln(tw, "\nCOMPONENT\tSNAPSHOTS\tSOURCES\tLATEST\tLOGICAL\tSTORED ADDED")
		for _, c := range st.Components {
			fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%s\t%s\n", c.Component, c.Snapshots, c.Sources, humanBytes(c.LatestSize), humanBytes(c.LogicalBytes), humanBytes(c.StoredAdded))
		}
		fmt.Fprintln(tw, "\nSOURCE\tSNAPSHOTS\tLATEST\tITEMS\tNEWEST")
		for _, s := range st.Sources {
			fmt.Fprintf(tw, "%s:%s\t%d\t%s\t%d\t%s\n", s.Component, s.Name, s.Snapshots, humanBytes(s.LatestSize), s.LatestItems, s.Newest.Format("2006-01-02 15:04 UTC"))
		}
		fmt.Fprintf(tw, "\nWEEK\tSNAPSHOTS\tSTORED ADDED\t(last %d snapshot(s))\n", st.Growth.Snapshots)
		for _, p := range st.Growth.Weekly {
			fmt.Fprintf(tw, "%s\t%d\t%s\t%s\n", p.Period, p.Snapshots, humanBytes(p.StoredAdded), strings.Repeat("#", bar(p.StoredAdded, st.Growth.Weekly)))
		}
	}
	return tw.Flush()
}

// bar scales v to at most 30 characters against the largest period.
func bar(v int64, ps []stats.Period) int {
	var top int64
	for _, p := range ps {
		top = max(top, p.StoredAdded)
	}
	if top == 0 {
		return 0
	}
	return int(30 * v / top)
}

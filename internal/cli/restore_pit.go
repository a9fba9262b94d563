package cli

import (
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/cfbackup/cfbackup/pkg/engine"
	"github.com/cfbackup/cfbackup/pkg/timespec"
)

// parseAt reads --at in the one time grammar (pkg/timespec, docs/CONFIG.md "Times and durations"):
// a bare duration is refused ("2h" might mean 02:00: write "2h ago"), and so is a time in the future.
// Point-in-time lookups use the returned time's Last(): a time written to the second covers that
// whole second, so the time 'list' prints selects the snapshot it printed.
func parseAt(s string, now time.Time) (timespec.Time, error) {
	t, err := timespec.ParseTime(s, now, nil, timespec.BareNone)
	if err != nil {
		return timespec.Time{}, fmt.Errorf("--at: %w", err)
	}
	if t.Time.After(now) {
		return timespec.Time{}, fmt.Errorf("--at %s is in the future", strings.TrimSpace(s))
	}
	return t, nil
}

// pointInTimePlan prints, for every component, the snapshot 'restore --at' would use and the skew
// between the picks (components captured at different moments).
func pointInTimePlan(cmd *cobra.Command, o *RestoreOptions, at timespec.Time) error {
	t := at.Last()
	ctx := cmd.Context()
	r, err := o.f.Repo(ctx)
	if err != nil {
		return err
	}
	var picks []PointInTimePick
	var oldest, newest time.Time
	for _, c := range engine.Components() {
		m, err := r.FindSnapshotAt(ctx, t, c)
		if err != nil {
			if strings.Contains(err.Error(), "has no") {
				continue // the component was never backed up
			}
			picks = append(picks, PointInTimePick{Component: c, Problem: err.Error()})
			continue
		}
		picks = append(picks, PointInTimePick{Component: c, Snapshot: m.ID, Time: m.Time, Behind: t.Sub(m.Time).Round(time.Second).String()})
		if oldest.IsZero() || m.Time.Before(oldest) {
			oldest = m.Time
		}
		if m.Time.After(newest) {
			newest = m.Time
		}
	}
	if len(picks) == 0 {
		return fmt.Errorf("%w: the repository has no snapshot yet", engine.ErrNotFound)
	}
	skew := newest.Sub(oldest)
	out := o.f.IO.Out
	if o.f.jsonOut {
		return writeJSON(out, &PointInTimePlanMessage{MessageType: msgPlan, DryRun: true, At: at.Time.UTC(), Components: picks, Skew: skew.String()})
	}
	fmt.Fprintf(out, "Point in time %s:\n", at.Time.UTC().Format(time.RFC3339))
	for _, p := range picks {
		if p.Problem != "" {
			fmt.Fprintf(out, "  %-6s —  %s\n", p.Component, p.Problem)
			continue
		}
		fmt.Fprintf(out, "  %-6s snapshot %s taken %s (%s before the point)\n", p.Component, p.Snapshot, p.Time.UTC().Format(time.RFC3339), p.Behind)
	}
	fmt.Fprintf(out, "Skew between components: %s.\n", skew)
	return nil
}

package cli

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/cfbackup/cfbackup/pkg/cloudflare"
	"github.com/cfbackup/cfbackup/pkg/engine"
	"github.com/cfbackup/cfbackup/pkg/manifest"
	"github.com/cfbackup/cfbackup/pkg/source/d1"
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
	type pick struct {
		Component string    `json:"component"`
		Snapshot  string    `json:"snapshot,omitempty"`
		Time      time.Time `json:"time,omitempty"`
		Behind    string    `json:"behind,omitempty"`
		Problem   string    `json:"problem,omitempty"`
	}
	var picks []pick
	var oldest, newest time.Time
	for _, c := range engine.Components() {
		m, err := r.FindSnapshotAt(ctx, t, c)
		if err != nil {
			if strings.Contains(err.Error(), "has no") {
				continue // the component was never backed up
			}
			picks = append(picks, pick{Component: c, Problem: err.Error()})
			continue
		}
		picks = append(picks, pick{Component: c, Snapshot: m.ID, Time: m.Time, Behind: t.Sub(m.Time).Round(time.Second).String()})
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
		return writeJSON(out, map[string]any{"message_type": "plan", "dry_run": true, "at": at.Time.UTC(), "components": picks, "skew": skew.String()})
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

// restoreD1TimeTravel restores a live D1 database in place to its state at --at with D1's Time Travel,
// after recording where it was (the undo bookmark) and taking a safety snapshot.
func restoreD1TimeTravel(cmd *cobra.Command, o *RestoreOptions) error {
	ctx := cmd.Context()
	if !o.InPlace || o.ToFile != "" || o.ToDatabase != "" {
		return usageError{errors.New("--time-travel restores the database itself: use it with --in-place (and --yes)")}
	}
	if o.Database == "" {
		return usageError{errors.New("--time-travel needs --d1-database NAME (the live database to rewind)")}
	}
	at, err := parseAt(o.At, time.Now())
	if err != nil {
		return usageError{err}
	}
	t := at.Last()
	cf, err := o.f.Cloudflare()
	if err != nil {
		return err
	}
	db, err := cf.ResolveDatabase(ctx, o.Database)
	if err != nil {
		return err
	}
	bm, err := cf.BookmarkAt(ctx, db.UUID, t)
	if err != nil {
		if errors.Is(err, cloudflare.ErrOutsideWindow) {
			return fmt.Errorf("%w; restore from the archive instead (drop --time-travel): cfbackup restore --at %q --d1-database %s --in-place --yes", err, o.At, db.Name)
		}
		return err
	}
	out := o.f.IO.Out
	if o.DryRun {
		if o.f.jsonOut {
			return writeJSON(out, map[string]any{"message_type": "plan", "dry_run": true, "database": db.Name, "uuid": db.UUID, "at": t.UTC(), "bookmark": bm, "method": "time-travel"})
		}
		fmt.Fprintf(out, "Would rewind D1 database %s (%s) in place with Time Travel to bookmark %s (its state at %s).\n", db.Name, db.UUID, bm, t.UTC().Format(time.RFC3339))
		return nil
	}
	if !o.Yes {
		if err := confirmByName(o.f, db.Name); err != nil {
			return err
		}
	}
	r, err := o.f.Repo(ctx)
	if err != nil {
		return err
	}
	eng := o.f.Engine(r)
	safe, err := safetySnapshot(cmd, o, eng, cf, db, "time-travel:"+bm)
	if err != nil {
		return err
	}
	res, err := cf.RestoreBookmark(ctx, db.UUID, bm)
	if err != nil {
		return fmt.Errorf("Time Travel restore of %s: %w (the database was not changed unless the API says otherwise; check with: wrangler d1 time-travel info %s)", db.Name, err, db.Name)
	}
	undo := fmt.Sprintf("wrangler d1 time-travel restore %s --bookmark=%s", db.Name, res.PreviousBookmark)
	if o.f.jsonOut {
		j := map[string]any{"message_type": "summary", "database": db.Name, "uuid": db.UUID, "at": t.UTC(), "bookmark": res.Bookmark, "previous_bookmark": res.PreviousBookmark, "undo": undo}
		if safe != nil {
			j["safety_snapshot"] = safe.ID
		}
		return writeJSON(out, j)
	}
	fmt.Fprintf(out, "Rewound D1 database %s to its state at %s (bookmark %s).\nTo undo: %s\n", db.Name, t.UTC().Format(time.RFC3339), res.Bookmark, undo)
	if safe != nil {
		fmt.Fprintf(out, "Safety snapshot of the data before the restore: %s\n", safe.ID)
	}
	return nil
}

// safetySnapshot backs up exactly the database a restore is about to overwrite, labelled pre-restore,
// so the restore can be undone from the archive too. It returns nil when --no-safety-snapshot is set.
func safetySnapshot(cmd *cobra.Command, o *RestoreOptions, eng *engine.Engine, cf *cloudflare.Client, db cloudflare.Database, restoring string) (*manifest.Manifest, error) {
	if o.NoSafety {
		fmt.Fprintf(o.f.IO.Err, "No safety snapshot (--no-safety-snapshot): only the Time Travel bookmark above can undo this restore.\n")
		return nil, nil
	}
	ctx := cmd.Context()
	plan := &engine.BackupPlan{Components: []string{d1.Component}}
	if err := eng.PlanD1(ctx, cf, plan, []string{db.UUID}); err != nil {
		return nil, fmt.Errorf("safety snapshot of %s before restoring: %w (nothing was restored; --no-safety-snapshot skips it)", db.Name, err)
	}
	labels := map[string]string{"pre-restore": db.Name, "restoring": restoring}
	m, err := eng.Backup(ctx, plan, engine.BackupOptions{Components: plan.Components, Labels: labels})
	if err != nil {
		return nil, fmt.Errorf("safety snapshot of %s before restoring: %w (nothing was restored; --no-safety-snapshot skips it)", db.Name, err)
	}
	if err := holdSafetySnapshot(ctx, eng, m); err != nil {
		eng.Log.Warn("could not hold the safety snapshot", "snapshot", m.ID, "err", err)
	}
	fmt.Fprintf(o.f.IO.Err, "Safety snapshot %s of %s taken before the restore (label pre-restore, held for %d days).\n", m.ID, db.Name, SafetyHoldDays)
	return m, nil
}

// SafetyHoldDays is how long a safety snapshot is held (out of prune's reach) by default.
const SafetyHoldDays = 7

// holdSafetySnapshot keeps a safety snapshot out of prune's reach for a week (and under an Object Lock
// legal hold where the store has one); 'cfbackup hold release' ends it earlier.
func holdSafetySnapshot(ctx context.Context, eng *engine.Engine, m *manifest.Manifest) error {
	_, err := eng.AddHold(ctx, m, engine.HoldOptions{
		Reason: "safety snapshot taken before a restore over live data",
		Until:  time.Now().Add(SafetyHoldDays * 24 * time.Hour),
	})
	return err
}

// safetyHint names the archive way back for an in-place restore.
func safetyHint(snapshot, db string) string {
	if snapshot == "" {
		return ""
	}
	return fmt.Sprintf("\n  (or from the safety snapshot: cfbackup restore %s --d1-database %s --in-place --yes)", snapshot, db)
}

package engine

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"filippo.io/age"

	"github.com/cfbackup/cfbackup/pkg/manifest"
	"github.com/cfbackup/cfbackup/pkg/repo"
	"github.com/cfbackup/cfbackup/pkg/source"
)

// SafetyHoldDays is how long a safety snapshot is held (out of prune's reach) by default.
const SafetyHoldDays = 7

// RestoreOptions choose a restore; the component's own flags are already bound to the component.
type RestoreOptions struct {
	// Snapshot is an id, a unique prefix or "latest"; At (when set) picks the newest snapshot at or
	// before it instead, or is the time a component that rewinds (source.Rewinder) goes back to.
	Snapshot   string
	At         *time.Time
	Identities []age.Identity
	// Shared flags, handed to the component (source.RestoreRequest).
	Prefix, ToDir         string
	Yes, DryRun, NoSafety bool
	// Confirm asks a person to confirm c (typing c.Name); nil refuses without --yes.
	Confirm func(c *source.Confirmation) error
	// Notes receives what the operator must read even with --json: the snapshot a point in time
	// chose, the safety snapshot and the undo command (stderr).
	Notes io.Writer
	// Gate, when set, sees the decided plan of a restore that is not a dry run before anything is
	// confirmed or written, and may refuse it (two-person approval and the test-restore gate for
	// protected targets, docs/APPROVAL.md). m is nil for a component that rewinds.
	Gate func(ctx context.Context, m *manifest.Manifest, plan source.RestorePlan) error
	// Shard, when set, restores only the objects whose key falls in this shard (restore --shard I/N,
	// docs/SHARDING.md): N processes restore a selection together.
	Shard *Shard
}

// RestoreOutcome is what a restore did (or, with DryRun, would do).
type RestoreOutcome struct {
	// Snapshot is the snapshot restored from (nil for a component that rewinds, source.Rewinder).
	Snapshot       *manifest.Manifest
	Plan           source.RestorePlan
	SafetySnapshot string
	Undo           string
	Result         *source.RestoreResult
	// BytesRead counts the plaintext bytes decrypted from the snapshot (the audit trail, notifications
	// and metrics report it); zero for a dry run and for a component that rewinds.
	BytesRead int64
}

// Restore is the one restore path every component takes: resolve the snapshot, ask the component
// for a plan, confirm an overwrite of live data (--yes or the name typed), back up what will be
// overwritten as a held safety snapshot (label pre-restore=<component>:<target>), execute, and say
// how to undo. Nothing is written before the plan is confirmed and the safety snapshot is saved.
func (e *Engine) Restore(ctx context.Context, comp source.Component, env source.Env, o RestoreOptions) (*RestoreOutcome, error) {
	name := comp.Name()
	notes := o.Notes
	if notes == nil {
		notes = io.Discard
	}
	var read atomic.Int64
	m, req, err := e.restoreRequest(ctx, comp, o, notes, &read)
	if err != nil {
		return nil, err
	}
	plan, err := comp.PlanRestore(ctx, env, req)
	if err != nil {
		return nil, err
	}
	out := &RestoreOutcome{Snapshot: m, Plan: plan}
	if o.DryRun {
		return out, nil
	}
	if o.Gate != nil {
		if err := o.Gate(ctx, m, plan); err != nil {
			return out, err
		}
	}
	if c := plan.Confirm(); c != nil && !o.Yes {
		if o.Confirm == nil {
			return nil, fmt.Errorf("%w: this restore replaces %s; add --yes to confirm (try --dry-run first)", ErrRefused, c.Prompt)
		}
		if err := o.Confirm(c); err != nil {
			return nil, err
		}
	}
	if sf := plan.Safety(); sf != nil {
		if o.NoSafety {
			fmt.Fprintf(notes, "No safety snapshot (--no-safety-snapshot): %s cannot be put back by cfbackup.\n", sf.What)
		} else {
			restoring := sf.Restoring
			if restoring == "" && m != nil {
				restoring = m.ID
			}
			sm, err := e.SafetySnapshot(ctx, name, sf, restoring)
			if err != nil {
				return nil, err
			}
			out.SafetySnapshot = sm.ID
			if sf.Undo != nil {
				out.Undo = sf.Undo(sm.ID)
			}
			fmt.Fprintf(notes, "Safety snapshot %s holds %s (label %s, held for %d days).\n", sm.ID, sf.What, repo.SafetyLabel, SafetyHoldDays)
			if out.Undo != "" {
				fmt.Fprintf(notes, "To undo this restore: %s\n", out.Undo)
			}
		}
	}
	pr := e.progress()
	res, err := plan.Execute(ctx, source.Execution{Progress: pr, SafetySnapshot: out.SafetySnapshot, Undo: out.Undo})
	out.Result = res
	out.BytesRead = read.Load()
	if err != nil {
		if out.Undo != "" {
			return out, fmt.Errorf("%w\nTo roll back what was overwritten: %s", err, out.Undo)
		}
		return out, err
	}
	return out, nil
}

// restoreRequest resolves the snapshot a restore reads and opens its catalogue. A component that
// rewinds the account's own history (source.Rewinder) reads no snapshot: it gets the point in time.
func (e *Engine) restoreRequest(ctx context.Context, comp source.Component, o RestoreOptions, notes io.Writer, read *atomic.Int64) (*manifest.Manifest, source.RestoreRequest, error) {
	req := source.RestoreRequest{Identities: o.Identities, Repo: e.Repo, Prefix: o.Prefix, ToDir: o.ToDir, Yes: o.Yes, DryRun: o.DryRun, NoSafety: o.NoSafety}
	if rw, ok := comp.(source.Rewinder); ok && rw.Rewinds() {
		req.At = o.At
		return nil, req, nil
	}
	m, err := e.resolveRestoreSnapshot(ctx, comp.Name(), o, notes)
	if err != nil {
		return nil, req, err
	}
	if len(o.Identities) == 0 {
		return nil, req, fmt.Errorf("%w: restoring needs an identity (--identity-file or CFBACKUP_IDENTITY_FILE)", ErrKey)
	}
	cat, err := e.streamCatalogue(ctx, m, o.Identities)
	if err != nil {
		return nil, req, err
	}
	if o.Shard != nil {
		cat = shardCatalogue(cat, *o.Shard)
	}
	req.Snapshot, req.Catalogue, req.Open = m, cat, e.countingOpener(m, o.Identities, read)
	return m, req, nil
}

// resolveRestoreSnapshot finds the snapshot a restore reads and checks it holds the component.
// 'latest' and a point in time prefer real backups over safety snapshots (repo.FindSnapshot), so
// restoring the newest backup again after a restore never silently means undoing it.
func (e *Engine) resolveRestoreSnapshot(ctx context.Context, component string, o RestoreOptions, notes io.Writer) (*manifest.Manifest, error) {
	var m *manifest.Manifest
	var err error
	if o.At != nil {
		if m, err = e.Repo.FindSnapshotAt(ctx, *o.At, component); err != nil {
			return nil, err
		}
		fmt.Fprintf(notes, "Point in time %s: restoring %s from snapshot %s taken at %s.\n", o.At.UTC().Format(time.RFC3339), component, m.ID, m.Time.UTC().Format(time.RFC3339))
	} else if m, err = e.Repo.FindSnapshot(ctx, o.Snapshot, component); err != nil {
		return nil, err
	}
	if err := SnapshotHas(m, component); err != nil {
		return nil, err
	}
	return e.loadChecked(ctx, m)
}

// SnapshotHas fails with ErrNotFound when a snapshot lacks the component, naming the components it
// does hold and how to find one that has it.
func SnapshotHas(m *manifest.Manifest, component string) error {
	if slices.Contains(m.Components, component) {
		return nil
	}
	return fmt.Errorf("%w: snapshot %s has no %s component (it has: %s); see the ones that do: cfbackup list --component %s",
		ErrNotFound, m.ID, component, strings.Join(m.Components, ", "), component)
}

// SafetySnapshot backs up what a restore is about to overwrite (sf.Captures) into a snapshot
// labelled pre-restore=<component>:<target> and restoring=<snapshot>, and holds it for
// SafetyHoldDays. A failure stops the restore before anything is written.
func (e *Engine) SafetySnapshot(ctx context.Context, component string, sf *source.Safety, restoring string) (*manifest.Manifest, error) {
	plan := &BackupPlan{Components: []string{component}}
	for _, c := range sf.Captures {
		plan.AddCapture(c)
	}
	labels := map[string]string{repo.SafetyLabel: component + ":" + sf.Target, "restoring": restoring}
	sm, err := e.Backup(ctx, plan, BackupOptions{Components: plan.Components, Labels: labels})
	if err != nil {
		return nil, fmt.Errorf("safety snapshot of %s: %w (nothing was restored; --no-safety-snapshot skips it)", sf.What, err)
	}
	if _, err := e.AddHold(ctx, sm, HoldOptions{
		Reason: "safety snapshot taken before a restore over live data",
		Until:  e.now().Add(SafetyHoldDays * 24 * time.Hour),
	}); err != nil {
		e.log().Warn("could not hold the safety snapshot", "snapshot", sm.ID, "err", err)
	}
	return sm, nil
}

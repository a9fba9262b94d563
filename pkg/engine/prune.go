package engine

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/cfbackup/cfbackup/pkg/errclass"
	"github.com/cfbackup/cfbackup/pkg/layout"
	"github.com/cfbackup/cfbackup/pkg/manifest"
	"github.com/cfbackup/cfbackup/pkg/record"
	"github.com/cfbackup/cfbackup/pkg/repo"
	"github.com/cfbackup/cfbackup/pkg/retention"
	"github.com/cfbackup/cfbackup/pkg/store"
)

// Prune records and marks (docs/FORMAT.md).
const (
	// PrunePrefix holds one record per prune run: prune/<20060102T150405Z>-<run-id>.json.
	PrunePrefix = record.PrunePrefix
	// MarkPrefix holds prune's first phase: marks/<20060102T150405Z>-<run-id>.json lists unreferenced
	// data objects seen at that time; a later run deletes those still unreferenced after the grace period.
	MarkPrefix = layout.Marks
	// JournalPrefix holds resume journals of backups in progress or interrupted (pkg/source/r2). No
	// manifest names them: prune marks them and deletes them after the grace period like orphan segments.
	JournalPrefix = layout.Journals
)

// ErrPolicyViolation: enforcement found a snapshot that outlives its policy or a required snapshot missing.
var ErrPolicyViolation = errclass.Policy

// DefaultGrace is how long an unreferenced object waits between being marked and being deleted: longer
// than any backup runs, so the segments of a backup in progress (not yet named by a manifest) are safe.
const DefaultGrace = 24 * time.Hour

// PruneOptions choose what prune keeps and how it deletes.
type PruneOptions struct {
	Policies retention.Policies
	// Policy is the policy as the user gave it (flags or config), recorded verbatim in the prune record.
	Policy any
	DryRun bool
	// Grace is the minimum age of an unreferenced object and of its mark before it is deleted
	// (default DefaultGrace; negative means zero).
	Grace time.Duration
	// UnsafeAllowRemoveAll allows an empty policy (which removes every unheld snapshot).
	UnsafeAllowRemoveAll bool
	// Enforce turns violations (see PruneResult.Violations) into ErrPolicyViolation.
	Enforce bool
	Actor   string
	Lock    LockOptions // Retry and TTL of the exclusive lock
}

// The prune record's types live in pkg/record, so pkg/report reads exactly what the engine writes.
type (
	// PruneKept is a kept snapshot with every reason ("last", "daily", …, "hold").
	PruneKept = record.PruneKept
	// PruneRemoved is a snapshot prune removed (or, with --dry-run, would remove).
	PruneRemoved = record.PruneRemoved
	// PruneResult is the plan and outcome of one prune run; without DryRun it is also the prune record.
	PruneResult = record.Prune
)

type markRecord struct {
	Time time.Time `json:"time"`
	Run  string    `json:"run"`
	Keys []string  `json:"keys"`
}

// Prune applies a retention policy under an exclusive lock: it removes the manifests of snapshots no
// rule keeps (never a held one), then deletes data objects (segments, indexes) that no remaining
// snapshot references once they have been marked unreferenced for at least the grace period, and
// writes a prune record. Every delete is checked; failures are collected in Errors and the error
// returned names how many.
func (e *Engine) Prune(ctx context.Context, o PruneOptions) (*PruneResult, error) {
	grace, err := e.checkPrune(&o)
	if err != nil {
		return nil, err
	}
	if !o.DryRun {
		lo := o.Lock
		lo.Kind, lo.Command, lo.Actor = LockExclusive, "prune", o.Actor
		lock, lctx, err := e.Lock(ctx, lo)
		if err != nil {
			return nil, err
		}
		defer func() { _ = lock.Release(ctx) }()
		ctx = lctx
	}
	now := e.now().UTC()
	p := &pruneRun{e: e, o: o, grace: grace, now: now, res: &PruneResult{Time: now, RunID: repo.NewSnapshotID(), Actor: actor(o.Actor), Policy: o.Policy, DryRun: o.DryRun,
		Grace: retention.FormatDuration(grace), Kept: []PruneKept{}, Removed: []PruneRemoved{}, Errors: []string{}}}
	if l, ok := e.objectLocker(ctx); ok {
		p.lk = l
	}
	snaps, bad, err := e.Repo.ListSnapshots(ctx)
	if err != nil {
		return nil, err
	}
	held, err := e.HeldSnapshots(ctx)
	if err != nil {
		return nil, fmt.Errorf("read holds (prune never runs without knowing them): %w", err)
	}
	ev, remove := p.decide(snaps, held)
	gone, retained := p.forget(ctx, remove)
	if o.Enforce {
		for _, s := range ev.Remove {
			if !held[s.ID] && !retained[s.ID] && (!gone[s.ID] || o.DryRun) {
				p.res.Violations = append(p.res.Violations, fmt.Sprintf("snapshot %s (%s) outlives its retention policy", s.ID, s.Time.UTC().Format(time.RFC3339)))
			}
		}
	}
	// Phase 1 and 2: mark unreferenced data objects, sweep those marked at least grace ago.
	if len(bad) > 0 {
		for k, err := range bad {
			p.fail("unreadable manifest %s: %v", k, err)
		}
		p.fail("no data deleted: with an unreadable manifest prune cannot know which segments it needs (fix or remove it, then run prune again)")
	} else if err := e.sweep(ctx, p.lk, o, grace, now, snaps, gone, p.res); err != nil {
		p.fail("sweep: %v", err)
	}
	e.sweepTemp(ctx, o, grace, now, p.res) // never named by a manifest: safe whatever the manifests say
	if !o.DryRun && p.lk != nil && e.Repo.Config.ObjectLock != nil {
		unkept := map[string]bool{}
		for _, m := range remove {
			unkept[m.ID] = true
		}
		e.extendRetention(ctx, p.lk, snaps, unkept, now, p.res)
	}
	return p.finish(ctx)
}

// checkPrune refuses an invalid or empty policy and a repository prune may not decide on, and
// returns the grace period to use.
func (e *Engine) checkPrune(o *PruneOptions) (time.Duration, error) {
	if err := o.Policies.Validate(); err != nil {
		return 0, fmt.Errorf("%w: %v", ErrUsage, err)
	}
	if o.Policies.Empty() && !o.UnsafeAllowRemoveAll {
		return 0, fmt.Errorf("%w: the retention policy is empty, so prune would remove every unheld snapshot: give --keep-last/--keep-daily/… (or a retention: block in the config file), or pass --unsafe-allow-remove-all if that is really meant", ErrUsage)
	}
	o.Policies.AllowRemoveAll = o.UnsafeAllowRemoveAll
	// Retention decides on manifests: only authenticated ones may count (a forged, future-dated one
	// would otherwise be what --keep-last keeps).
	if err := e.Repo.RequireWritable("prune"); err != nil {
		return 0, err
	}
	if err := e.Repo.RequireKey("prune"); err != nil {
		return 0, err
	}
	grace := o.Grace
	if grace == 0 {
		grace = DefaultGrace
	}
	return max(grace, 0), nil
}

// pruneRun is one prune's state: its options, clock and the record it fills in.
type pruneRun struct {
	e     *Engine
	o     PruneOptions
	lk    store.ObjectLocker
	grace time.Duration
	now   time.Time
	res   *PruneResult
}

func (p *pruneRun) fail(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	p.res.Errors = append(p.res.Errors, msg)
	p.e.log().Error("prune", "problem", msg)
}

// decide applies the retention policy to the snapshots: the kept ones (with reasons, and holds) go
// into the record; the unheld ones no rule keeps are returned for removal.
func (p *pruneRun) decide(snaps []*manifest.Manifest, held map[string]bool) (retention.Result, []*manifest.Manifest) {
	byID := map[string]*manifest.Manifest{}
	var in []retention.Snapshot
	for _, m := range snaps {
		byID[m.ID] = m
		s := retention.Snapshot{ID: m.ID, Time: m.Time, Labels: m.Labels}
		for _, src := range m.Sources {
			s.Groups = append(s.Groups, retention.Group{Component: src.Component, Source: src.Name})
		}
		if len(s.Groups) == 0 {
			for _, c := range m.Components {
				s.Groups = append(s.Groups, retention.Group{Component: c})
			}
		}
		in = append(in, s)
	}
	ev := retention.Evaluate(in, p.o.Policies, p.now)
	for _, v := range ev.Violations {
		p.res.Violations = append(p.res.Violations, v.Message)
	}
	for _, k := range ev.Keep {
		r := k.Reasons
		if held[k.ID] {
			r = append(r, "hold")
		}
		p.res.Kept = append(p.res.Kept, PruneKept{Snapshot: k.ID, Time: k.Time.UTC().Format(time.RFC3339), Reasons: r})
	}
	var remove []*manifest.Manifest
	for _, s := range ev.Remove {
		if held[s.ID] {
			p.res.Kept = append(p.res.Kept, PruneKept{Snapshot: s.ID, Time: s.Time.UTC().Format(time.RFC3339), Reasons: []string{"hold"}})
			continue
		}
		remove = append(remove, byID[s.ID])
	}
	sort.Slice(p.res.Kept, func(i, j int) bool { return p.res.Kept[i].Time > p.res.Kept[j].Time })
	return ev, remove
}

// forget is phase 0: the removed snapshots' manifests are deleted (their data stays until swept).
// It returns the snapshots gone and those the store still retains under Object Lock.
func (p *pruneRun) forget(ctx context.Context, remove []*manifest.Manifest) (gone, retained map[string]bool) {
	gone, retained = map[string]bool{}, map[string]bool{}
	for _, m := range remove {
		rm := PruneRemoved{Snapshot: m.ID, Time: m.Time.UTC().Format(time.RFC3339), Components: m.Components, StoredSize: m.StoredSize,
			Size: m.Size, Items: m.Items, DurationSeconds: time.Duration(m.Duration).Seconds(), ComponentSizes: componentSizes(m)}
		if p.o.DryRun {
			p.res.Removed = append(p.res.Removed, rm)
			gone[m.ID] = true
			continue
		}
		if err := p.e.deleteChecked(ctx, p.lk, manifest.Key(m.Time, m.ID)); err != nil {
			if errors.Is(err, store.ErrObjectLocked) {
				// Its Object Lock retention has not run out: the store keeps it, and so do we.
				p.e.log().Info("snapshot still under Object Lock retention; kept until it ends", "snapshot", m.ID)
				p.res.Kept = append(p.res.Kept, PruneKept{Snapshot: m.ID, Time: m.Time.UTC().Format(time.RFC3339), Reasons: []string{"object-lock"}})
				retained[m.ID] = true
				continue
			}
			p.fail("remove snapshot %s: %v", m.ID, err)
			continue
		}
		p.e.log().Info("snapshot removed", "snapshot", m.ID, "time", m.Time)
		p.res.Removed = append(p.res.Removed, rm)
		gone[m.ID] = true
	}
	return gone, retained
}

// finish writes the prune record (not for a dry run) and turns problems and, under --enforce,
// violations into the error.
func (p *pruneRun) finish(ctx context.Context) (*PruneResult, error) {
	res := p.res
	if !p.o.DryRun {
		res.RecordKey = layout.PruneRecordKey(p.now, res.RunID)
		if err := putJSON(ctx, p.e.Repo.Store, res.RecordKey, res); err != nil {
			p.fail("write prune record %s: %v", res.RecordKey, err)
			res.RecordKey = ""
		}
	}
	if len(res.Errors) > 0 {
		return res, fmt.Errorf("prune finished with %d problem(s): %s", len(res.Errors), strings.Join(res.Errors, "; "))
	}
	if p.o.Enforce && len(res.Violations) > 0 {
		return res, fmt.Errorf("%w: %s", ErrPolicyViolation, strings.Join(res.Violations, "; "))
	}
	return res, nil
}
func (e *Engine) sweep(ctx context.Context, lk store.ObjectLocker, o PruneOptions, grace time.Duration, now time.Time, snaps []*manifest.Manifest, gone map[string]bool, res *PruneResult) error {
	referenced := map[string]bool{}
	for _, m := range snaps {
		if gone[m.ID] {
			continue
		}
		for _, k := range SnapshotObjects(m) {
			referenced[k] = true
		}
	}
	if err := e.protectPartials(ctx, o.DryRun, now, snaps, referenced, res); err != nil {
		return err
	}
	objs := map[string]store.ObjectInfo{}
	for _, p := range layout.Swept() {
		if err := e.Repo.Store.List(ctx, p, func(oi store.ObjectInfo) error {
			if !referenced[oi.Key] {
				objs[oi.Key] = oi
			}
			return nil
		}); err != nil {
			return fmt.Errorf("list %s: %w", p, err)
		}
	}
	marks, markedAt, err := e.readMarks(ctx)
	if err != nil {
		return err
	}
	if err := e.markFresh(ctx, o.DryRun, now, objs, marks, markedAt, res); err != nil {
		return err
	}
	// In a dry run, the segments of the snapshots it would remove count as pending.
	if o.DryRun {
		for _, m := range snaps {
			if !gone[m.ID] {
				continue
			}
			for _, s := range m.Segments {
				if _, ok := objs[s.Key]; !ok && !referenced[s.Key] {
					objs[s.Key] = store.ObjectInfo{Key: s.Key, Size: s.Size, ModTime: now}
					markedAt[s.Key] = now
				}
			}
		}
	}
	deleted, err := e.deleteSwept(ctx, lk, o.DryRun, grace, now, objs, markedAt, res)
	if err != nil || o.DryRun {
		return err
	}
	// A mark is done when none of its keys is still waiting (deleted, gone, or referenced again).
	for mk, mr := range marks {
		done := true
		for _, k := range mr.Keys {
			if _, waiting := objs[k]; waiting && !deleted[k] {
				done = false
				break
			}
		}
		if done {
			if err := e.deleteChecked(ctx, lk, mk); err != nil {
				res.Errors = append(res.Errors, fmt.Sprintf("delete finished mark %s: %v", mk, err))
			}
		}
	}
	e.log().Info("prune sweep", "segments_deleted", res.SegmentsDeleted, "objects_deleted", res.ObjectsDeleted, "bytes_freed", res.BytesFreed, "marked", res.Marked, "pending_bytes", res.PendingBytes)
	return nil
}

// readMarks reads the existing marks and, per key, when it was first seen unreferenced.
func (e *Engine) readMarks(ctx context.Context) (map[string]markRecord, map[string]time.Time, error) {
	var markKeys []string
	if err := e.Repo.Store.List(ctx, MarkPrefix, func(oi store.ObjectInfo) error {
		if strings.HasSuffix(oi.Key, layout.JSONSuffix) {
			markKeys = append(markKeys, oi.Key)
		}
		return nil
	}); err != nil {
		return nil, nil, fmt.Errorf("list marks: %w", err)
	}
	markedAt := map[string]time.Time{}
	marks := map[string]markRecord{}
	for _, mk := range markKeys {
		var mr markRecord
		if err := readJSON(ctx, e.Repo.Store, mk, &mr); err != nil {
			return nil, nil, fmt.Errorf("read mark %s: %w", mk, err)
		}
		marks[mk] = mr
		for _, k := range mr.Keys {
			if t, ok := markedAt[k]; !ok || mr.Time.Before(t) {
				markedAt[k] = mr.Time
			}
		}
	}
	return marks, markedAt, nil
}

// markFresh records the unreferenced objects not marked before in a new mark (phase 1).
func (e *Engine) markFresh(ctx context.Context, dryRun bool, now time.Time, objs map[string]store.ObjectInfo, marks map[string]markRecord, markedAt map[string]time.Time, res *PruneResult) error {
	var fresh []string
	for k := range objs {
		if _, ok := markedAt[k]; !ok {
			fresh = append(fresh, k)
			markedAt[k] = now
		}
	}
	sort.Strings(fresh)
	res.Marked = len(fresh)
	if len(fresh) == 0 || dryRun {
		return nil
	}
	mk := layout.MarkKey(now, res.RunID)
	mr := markRecord{Time: now, Run: res.RunID, Keys: fresh}
	if err := putJSON(ctx, e.Repo.Store, mk, mr); err != nil {
		return fmt.Errorf("write mark %s: %w", mk, err)
	}
	marks[mk] = mr
	return nil
}

// deleteSwept deletes (or, in a dry run, counts) the unreferenced objects marked and untouched for
// at least grace (phase 2), and returns the keys deleted.
func (e *Engine) deleteSwept(ctx context.Context, lk store.ObjectLocker, dryRun bool, grace time.Duration, now time.Time, objs map[string]store.ObjectInfo, markedAt map[string]time.Time, res *PruneResult) (map[string]bool, error) {
	keys := make([]string, 0, len(objs))
	for k := range objs {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	deleted := map[string]bool{}
	pr := e.progress()
	if !dryRun {
		pr.Start("prune", int64(len(keys)))
		defer pr.Finish()
	}
	count := func(k string, size int64) {
		res.BytesFreed += size
		if layout.IsSegmentKey(k) {
			res.SegmentsDeleted++
		} else {
			res.ObjectsDeleted++
		}
	}
	for _, k := range keys {
		oi := objs[k]
		if now.Sub(markedAt[k]) < grace || now.Sub(oi.ModTime) < grace {
			res.PendingBytes += oi.Size
			continue
		}
		if dryRun {
			count(k, oi.Size)
			continue
		}
		if err := ctx.Err(); err != nil {
			return deleted, err
		}
		if err := e.deleteChecked(ctx, lk, k); err != nil {
			if errors.Is(err, store.ErrObjectLocked) {
				res.PendingBytes += oi.Size // under retention: a later prune deletes it
				continue
			}
			res.Errors = append(res.Errors, fmt.Sprintf("delete %s: %v", k, err))
			continue
		}
		deleted[k] = true
		pr.Add(1)
		count(k, oi.Size)
	}
	return deleted, nil
}

// sweepTemp removes the temporary files that writes killed before publishing their object left in
// the store (only stores that write through temporary files have any: store.TempCollector). No key
// names them and List never shows them, so no mark is needed: a file untouched for the grace period
// belongs to no write in progress (a write keeps its file's modification time fresh).
func (e *Engine) sweepTemp(ctx context.Context, o PruneOptions, grace time.Duration, now time.Time, res *PruneResult) {
	tc, ok := store.AsTempCollector(e.Repo.Store)
	if !ok {
		return
	}
	var old []store.TempFile
	if err := tc.ListTemp(ctx, func(tf store.TempFile) error {
		if now.Sub(tf.ModTime) >= grace {
			old = append(old, tf)
		} else {
			res.PendingBytes += tf.Size
		}
		return nil
	}); err != nil {
		res.Errors = append(res.Errors, fmt.Sprintf("list temporary files: %v", err))
		return
	}
	for _, tf := range old {
		if !o.DryRun {
			if err := tc.RemoveTemp(ctx, tf.Name); err != nil {
				res.Errors = append(res.Errors, fmt.Sprintf("remove temporary file %s: %v", tf.Name, err))
				continue
			}
		}
		res.TempFilesDeleted++
		res.BytesFreed += tf.Size
	}
}

// deleteChecked deletes key — every version of it where the bucket has Object Lock (a plain DELETE
// there only hides the bytes) — and confirms it is gone. An object already gone is not an error.
func (e *Engine) deleteChecked(ctx context.Context, lk store.ObjectLocker, key string) error {
	var err error
	if lk != nil {
		err = lk.DeleteVersions(ctx, key)
	} else {
		err = e.Repo.Store.Delete(ctx, key)
	}
	_, serr := e.Repo.Store.Stat(ctx, key)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		if errors.Is(serr, store.ErrNotFound) {
			return nil // the delete happened; only its answer was lost
		}
		return err
	}
	if serr == nil {
		return fmt.Errorf("delete %s reported success but the object is still there", key)
	} else if !errors.Is(serr, store.ErrNotFound) {
		return fmt.Errorf("check delete of %s: %w", key, serr)
	}
	return nil
}

// extendRetention keeps kept snapshots under Object Lock: every object of a kept snapshot whose
// retention ends within half the repository's period gets it extended to a full period from now.
func (e *Engine) extendRetention(ctx context.Context, lk store.ObjectLocker, snaps []*manifest.Manifest, unkept map[string]bool, now time.Time, res *PruneResult) {
	ol := e.Repo.Config.ObjectLock
	seen := map[string]bool{}
	for _, m := range snaps {
		if unkept[m.ID] {
			continue
		}
		for _, k := range SnapshotObjects(m) {
			if seen[k] {
				continue
			}
			seen[k] = true
			_, until, err := lk.Retention(ctx, k)
			if err != nil {
				res.Errors = append(res.Errors, fmt.Sprintf("read retention of %s: %v", k, err))
				continue
			}
			if until.After(now.Add(ol.Period() / 2)) {
				continue
			}
			if err := lk.SetRetention(ctx, k, ol.Mode, now.Add(ol.Period())); err != nil {
				res.Errors = append(res.Errors, fmt.Sprintf("extend retention of %s: %v", k, err))
				continue
			}
			res.RetentionExtended++
		}
	}
}

// componentSizes is a snapshot's logical size per component, as its prune record keeps it.
func componentSizes(m *manifest.Manifest) map[string]int64 {
	out := map[string]int64{}
	for _, s := range m.Sources {
		out[s.Component] += s.Size
	}
	return out
}

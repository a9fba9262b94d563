package engine

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/cfbackup/cfbackup/pkg/layout"
	"github.com/cfbackup/cfbackup/pkg/manifest"
	"github.com/cfbackup/cfbackup/pkg/record"
	"github.com/cfbackup/cfbackup/pkg/repo"
	"github.com/cfbackup/cfbackup/pkg/store"
)

// HoldPrefix is where legal holds are recorded (record.HoldPrefix; docs/FORMAT.md).
const HoldPrefix = record.HoldPrefix

// HoldRecord is one hold or release record; its type lives in pkg/record so pkg/report reads exactly
// what the engine writes.
type HoldRecord = record.Hold

// Hold is an add record with its release, if any.
type Hold struct {
	HoldRecord
	Release *HoldRecord `json:"release,omitempty"`
	// Active: not released and not past Until.
	Active bool `json:"active"`
}

// HoldOptions are the arguments of hold add / release.
type HoldOptions struct {
	Reason string
	Case   string
	Until  time.Time // zero: until released
	Actor  string
	// ID picks one hold to release (default: every active hold of the snapshot).
	ID string
}

// HoldResult reports what a hold command changed, including the Object Lock legal holds it set or
// cleared (none on stores without Object Lock: Protection then says what protects the data).
type HoldResult struct {
	Holds      []HoldRecord `json:"holds"`
	Objects    int          `json:"objects"`
	LegalHolds int          `json:"legal_holds_changed"`
	Protection string       `json:"protection"`
}

// ListHolds reads every hold record, oldest first. Records that cannot be read are errors: a hold
// must never be silently ignored.
func (e *Engine) ListHolds(ctx context.Context) ([]Hold, error) {
	var keys []string
	if err := e.Repo.Store.List(ctx, HoldPrefix, func(oi store.ObjectInfo) error {
		if strings.HasSuffix(oi.Key, layout.JSONSuffix) {
			keys = append(keys, oi.Key)
		}
		return nil
	}); err != nil {
		return nil, fmt.Errorf("list holds: %w", err)
	}
	adds := map[string]*Hold{}
	var releases []HoldRecord
	for _, k := range keys {
		var r HoldRecord
		if err := readJSON(ctx, e.Repo.Store, k, &r); err != nil {
			return nil, fmt.Errorf("read hold %s: %w", k, err)
		}
		switch r.Action {
		case record.HoldAdd:
			h := Hold{HoldRecord: r}
			adds[r.Snapshot+"/"+r.ID] = &h
		case record.HoldRelease:
			releases = append(releases, r)
		default:
			return nil, fmt.Errorf("hold record %s: unknown action %q", k, r.Action)
		}
	}
	for _, r := range releases {
		if h, ok := adds[r.Snapshot+"/"+r.ID]; ok {
			r := r
			h.Release = &r
		}
	}
	now := e.now()
	out := make([]Hold, 0, len(adds))
	for _, h := range adds {
		h.Active = h.Release == nil && (h.Until == nil || h.Until.After(now))
		out = append(out, *h)
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].Time.Equal(out[j].Time) {
			return out[i].Time.Before(out[j].Time)
		}
		return out[i].ID < out[j].ID
	})
	return out, nil
}

// HeldSnapshots is the set of snapshot ids with an active hold.
func (e *Engine) HeldSnapshots(ctx context.Context) (map[string]bool, error) {
	hs, err := e.ListHolds(ctx)
	if err != nil {
		return nil, err
	}
	out := map[string]bool{}
	for _, h := range hs {
		if h.Active {
			out[h.Snapshot] = true
		}
	}
	return out, nil
}

// SnapshotObjects lists every object a snapshot needs: its manifest, every segment it references
// (its own and older ones) and its side objects.
func SnapshotObjects(m *manifest.Manifest) []string {
	keys := []string{manifest.Key(m.Time, m.ID)}
	for _, s := range m.Segments {
		keys = append(keys, s.Key)
	}
	for _, o := range m.SideObjects() {
		keys = append(keys, o.Key)
	}
	return keys
}

// AddHold records a hold on a snapshot and, where the store has S3 Object Lock, sets a legal hold on
// every object the snapshot needs.
func (e *Engine) AddHold(ctx context.Context, m *manifest.Manifest, o HoldOptions) (*HoldResult, error) {
	if strings.TrimSpace(o.Reason) == "" {
		return nil, fmt.Errorf("%w: a hold needs --reason TEXT (it is evidence: say why)", ErrUsage)
	}
	now := e.now().UTC()
	if !o.Until.IsZero() && !o.Until.After(now) {
		return nil, fmt.Errorf("%w: --until %s is in the past", ErrUsage, o.Until.UTC().Format(time.RFC3339))
	}
	rec := HoldRecord{ID: repo.NewSnapshotID(), Snapshot: m.ID, Reason: o.Reason, Case: o.Case, Actor: actor(o.Actor), Time: now, Action: record.HoldAdd}
	if !o.Until.IsZero() {
		u := o.Until.UTC()
		rec.Until = &u
	}
	res := &HoldResult{Holds: []HoldRecord{rec}}
	keys := SnapshotObjects(m)
	res.Objects = len(keys)
	if lk, ok := e.objectLocker(ctx); ok {
		// Legal holds first: if one fails, no record claims a protection that is not there.
		for _, k := range keys {
			if err := lk.SetLegalHold(ctx, k, true); err != nil {
				return res, fmt.Errorf("set legal hold on %s: %w (%d of %d objects already held; 'cfbackup hold release' clears them)", k, err, res.LegalHolds, len(keys))
			}
			res.LegalHolds++
		}
		res.Protection = fmt.Sprintf("S3 Object Lock legal hold on all %d objects: the store refuses to delete them until the hold is released", len(keys))
	} else {
		res.Protection = "recorded hold only: cfbackup prune will not delete this snapshot, but the store itself does not enforce it (" + e.storeLockAdvice() + ")"
	}
	key := layout.HoldKey(m.ID, rec.ID)
	if err := putJSON(ctx, e.Repo.Store, key, rec); err != nil {
		return res, fmt.Errorf("write hold record: %w", err)
	}
	e.log().Info("hold added", "snapshot", m.ID, "hold", rec.ID, "actor", rec.Actor, "legal_holds", res.LegalHolds)
	return res, nil
}

// ReleaseHold records a release of the snapshot's active holds (or of o.ID) and clears the Object
// Lock legal hold on each object no other active hold still needs.
func (e *Engine) ReleaseHold(ctx context.Context, snapshotID string, o HoldOptions) (*HoldResult, error) {
	if strings.TrimSpace(o.Reason) == "" {
		return nil, fmt.Errorf("%w: releasing a hold needs --reason TEXT", ErrUsage)
	}
	hs, err := e.ListHolds(ctx)
	if err != nil {
		return nil, err
	}
	var targets []Hold
	stillHeld := map[string]bool{}
	for _, h := range hs {
		if !h.Active {
			continue
		}
		if h.Snapshot == snapshotID && (o.ID == "" || h.ID == o.ID) {
			targets = append(targets, h)
		} else {
			stillHeld[h.Snapshot] = true
		}
	}
	if len(targets) == 0 {
		which := "no active hold"
		if o.ID != "" {
			which = "no active hold " + o.ID
		}
		return nil, fmt.Errorf("%w: snapshot %s has %s (see 'cfbackup hold list')", ErrNotFound, snapshotID, which)
	}
	now := e.now().UTC()
	res := &HoldResult{}
	for _, h := range targets {
		rec := HoldRecord{ID: h.ID, Snapshot: snapshotID, Reason: o.Reason, Actor: actor(o.Actor), Time: now, Action: record.HoldRelease}
		key := layout.HoldReleaseKey(snapshotID, h.ID)
		if err := putJSON(ctx, e.Repo.Store, key, rec); err != nil {
			return res, fmt.Errorf("write release record: %w", err)
		}
		res.Holds = append(res.Holds, rec)
	}
	lk, ok := e.objectLocker(ctx)
	if !ok {
		res.Protection = "recorded hold released; prune may now delete the snapshot when its policy allows"
		return res, nil
	}
	if stillHeld[snapshotID] {
		res.Protection = "another hold on this snapshot is still active: its legal holds stay"
		return res, nil
	}
	snaps, _, err := e.Repo.ListSnapshots(ctx)
	if err != nil {
		return res, err
	}
	needed := map[string]bool{}
	var mine []string
	for _, m := range snaps {
		if stillHeld[m.ID] {
			for _, k := range SnapshotObjects(m) {
				needed[k] = true
			}
		}
		if m.ID == snapshotID {
			mine = SnapshotObjects(m)
		}
	}
	res.Objects = len(mine)
	for _, k := range mine {
		if needed[k] {
			continue
		}
		if err := lk.SetLegalHold(ctx, k, false); err != nil {
			return res, fmt.Errorf("clear legal hold on %s: %w (the release is recorded; run 'cfbackup hold release' again to retry clearing)", k, err)
		}
		res.LegalHolds++
	}
	res.Protection = fmt.Sprintf("legal hold cleared on %d object(s); %d stay held for other snapshots' holds", res.LegalHolds, len(mine)-res.LegalHolds)
	return res, nil
}

// objectLocker returns the store's Object Lock capability when the bucket has Object Lock enabled.
func (e *Engine) objectLocker(ctx context.Context) (store.ObjectLocker, bool) {
	lk, ok := store.AsObjectLocker(e.Repo.Store)
	if !ok {
		return nil, false
	}
	on, err := lk.ObjectLockEnabled(ctx)
	if err != nil {
		e.log().Warn("could not read the bucket's Object Lock configuration", "err", err)
		return nil, false
	}
	return lk, on
}

// storeLockAdvice says what the operator can add where the store has no Object Lock.
func (e *Engine) storeLockAdvice() string {
	loc := e.Repo.Store.Location()
	if strings.HasPrefix(loc, "s3://") {
		return "this bucket has no S3 Object Lock; on R2 add a bucket lock rule: 'cfbackup hold add' prints it, see docs/RETENTION.md"
	}
	return "a local directory cannot be made immutable by cfbackup; protect it with file system permissions or snapshots"
}

// R2LockRule is the Cloudflare R2 bucket lock rule (PUT /accounts/{acct}/r2/buckets/{bucket}/lock)
// that keeps objects under prefix for days; the operator applies it, cfbackup only prints it.
func R2LockRule(prefix string, days int) string {
	return fmt.Sprintf(`{"rules":[{"id":"cfbackup-retention","enabled":true,"prefix":%q,"condition":{"type":"Age","maxAgeSeconds":%d}}]}`,
		prefix, days*86400)
}

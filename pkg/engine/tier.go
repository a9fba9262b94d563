package engine

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/cfbackup/cfbackup/pkg/errclass"
	"github.com/cfbackup/cfbackup/pkg/manifest"
	"github.com/cfbackup/cfbackup/pkg/store"
)

// TierOptions choose which segments prune --tier moves and where.
type TierOptions struct {
	// Class is the storage class to move segments to (store.CheckStorageClass'd by the caller).
	Class string
	// OlderThan: a segment moves only when every snapshot that references it is older than this.
	OlderThan time.Duration
	DryRun    bool
	Actor     string
	Lock      LockOptions // Retry and TTL of the exclusive lock
}

// TierClassCount is how many segments (and ciphertext bytes) are in one storage class.
type TierClassCount struct {
	Segments int   `json:"segments"`
	Bytes    int64 `json:"bytes"`
}

// TierResult is the plan and outcome of one prune --tier run.
type TierResult struct {
	Time      time.Time `json:"time"`
	Class     string    `json:"class"`
	OlderThan string    `json:"older_than"`
	DryRun    bool      `json:"dry_run"`
	// Snapshots is how many snapshots there are, Old how many are older than the threshold.
	Snapshots int `json:"snapshots"`
	Old       int `json:"old"`
	// Shared counts segments of old snapshots that a newer snapshot references too (incremental
	// backups): they stay where they are.
	Shared TierClassCount `json:"shared"`
	// Before counts the candidate segments (referenced only by old snapshots) by the class they were
	// in when the run looked at them.
	Before map[string]TierClassCount `json:"before"`
	// Moved counts segments moved to Class (with DryRun: that would be moved); Already those in it.
	Moved   TierClassCount `json:"moved"`
	Already TierClassCount `json:"already"`
	// Errors lists segments that could not be moved (an archived one must be restored first).
	Errors []string `json:"errors"`
}

// ErrTierFailed: some segments could not be moved; the others were (a re-run finishes the job).
var ErrTierFailed = errclass.New(errclass.Failure, "some segments could not be moved to the storage class")

// Tier moves the segments that only snapshots older than o.OlderThan reference to o.Class, each with
// a server-side copy onto itself, under the exclusive lock (so no backup adds a reference while it
// decides). A segment a newer snapshot shares stays; held snapshots are tiered like any other (a
// hold forbids deletion, not a cheaper class: the bytes stay). It refuses a store without classes
// and a bucket with Object Lock, where a copy in place would add a version beside the locked one
// (docs/STORAGE_CLASSES.md: use a lifecycle rule there). Re-running it is safe: a segment already in
// the class is skipped, so an interrupted run resumes where it stopped.
func (e *Engine) Tier(ctx context.Context, o TierOptions) (*TierResult, error) {
	tr, err := e.checkTier(ctx, o)
	if err != nil {
		return nil, err
	}
	if !o.DryRun {
		lo := o.Lock
		lo.Kind, lo.Command, lo.Actor = LockExclusive, "prune --tier", o.Actor
		lock, lctx, err := e.Lock(ctx, lo)
		if err != nil {
			return nil, err
		}
		defer func() { _ = lock.Release(ctx) }()
		ctx = lctx
	}
	snaps, bad, err := e.Repo.ListSnapshots(ctx)
	if err != nil {
		return nil, err
	}
	if len(bad) > 0 {
		return nil, fmt.Errorf("%w: %d manifest(s) cannot be read, so which segments newer snapshots share is unknown: fix or remove them (cfbackup verify), then run prune --tier again", store.ErrTierRefused, len(bad))
	}
	now := e.now().UTC()
	res := &TierResult{Time: now, Class: o.Class, OlderThan: o.OlderThan.String(), DryRun: o.DryRun,
		Snapshots: len(snaps), Before: map[string]TierClassCount{}, Errors: []string{}}
	cands := tierCandidates(snaps, now.Add(-o.OlderThan), res)
	for _, s := range cands {
		if err := ctx.Err(); err != nil {
			return res, err
		}
		e.tierOne(ctx, tr, s, o, res)
	}
	if len(res.Errors) > 0 {
		return res, fmt.Errorf("%w: %d of %d: %s", ErrTierFailed, len(res.Errors), len(cands), res.Errors[0])
	}
	return res, nil
}

// checkTier refuses what prune --tier cannot do before anything is read.
func (e *Engine) checkTier(ctx context.Context, o TierOptions) (store.Tierer, error) {
	if o.Class == "" {
		return nil, fmt.Errorf("%w: --tier needs a storage class", ErrUsage)
	}
	if o.OlderThan < 0 {
		return nil, fmt.Errorf("%w: --older-than must not be negative", ErrUsage)
	}
	if err := e.Repo.RequireWritable("prune --tier"); err != nil {
		return nil, err
	}
	// Which snapshots share a segment is decided on manifests: only authenticated ones may count.
	if err := e.Repo.RequireKey("prune --tier"); err != nil {
		return nil, err
	}
	tr, ok := store.AsTierer(e.Repo.Store)
	if !ok {
		return nil, fmt.Errorf("%w: %s has no storage classes (a local directory keeps every object alike): nothing to move", store.ErrTierRefused, e.Repo.Store.Location())
	}
	if _, on := e.objectLocker(ctx); on {
		return nil, fmt.Errorf("%w: the bucket of %s has S3 Object Lock: a copy in place would add a new, unlocked version beside the locked one; use a lifecycle transition rule on segments/ instead (docs/STORAGE_CLASSES.md)", store.ErrTierRefused, e.Repo.Store.Location())
	}
	return tr, nil
}

// tierCandidates returns, sorted by key, the segments referenced by snapshots older than cutoff and by
// no newer one; it counts old snapshots and shared segments into res.
func tierCandidates(snaps []*manifest.Manifest, cutoff time.Time, res *TierResult) []segmentRef {
	newer := map[string]bool{}
	old := map[string]segmentRef{}
	for _, m := range snaps {
		if !m.Time.Before(cutoff) {
			for _, s := range m.Segments {
				newer[s.Key] = true
			}
			continue
		}
		res.Old++
		for _, s := range m.Segments {
			old[s.Key] = segmentRef{key: s.Key, size: s.Size}
		}
	}
	out := make([]segmentRef, 0, len(old))
	for k, s := range old {
		if newer[k] {
			res.Shared.Segments++
			res.Shared.Bytes += s.size
			continue
		}
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].key < out[j].key })
	return out
}

// maxCopySize is the largest object S3's CopyObject copies in one request.
const maxCopySize = 5 << 30

type segmentRef struct {
	key  string
	size int64
}

// tierOne moves one segment unless it is in the class already, counting it into res.
func (e *Engine) tierOne(ctx context.Context, tr store.Tierer, s segmentRef, o TierOptions, res *TierResult) {
	server, recorded, err := tr.StorageClass(ctx, s.key)
	if err != nil {
		res.Errors = append(res.Errors, fmt.Sprintf("%s: %v", s.key, err))
		return
	}
	// A server without classes answers STANDARD for everything; the metadata the copy left says
	// whether the move was done.
	current := server
	if server == store.ClassStandard && recorded != "" {
		current = recorded
	}
	addClassCount(res.Before, current, s.size)
	if current == o.Class {
		res.Already.Segments++
		res.Already.Bytes += s.size
		return
	}
	if s.size > maxCopySize {
		res.Errors = append(res.Errors, fmt.Sprintf("%s is larger than the 5 GiB a copy in place takes: use a lifecycle rule (docs/STORAGE_CLASSES.md)", s.key))
		return
	}
	if store.IsArchiveClass(current) {
		res.Errors = append(res.Errors, fmt.Sprintf("%s is in %s: it cannot be copied before it is restored (docs/STORAGE_CLASSES.md \"Reading from a cold class\")", s.key, current))
		return
	}
	if !o.DryRun {
		if err := tr.SetStorageClass(ctx, s.key, o.Class); err != nil {
			res.Errors = append(res.Errors, fmt.Sprintf("%s: %v", s.key, err))
			return
		}
		e.log().Debug("segment moved", "key", s.key, "from", current, "to", o.Class)
	}
	res.Moved.Segments++
	res.Moved.Bytes += s.size
}

func addClassCount(m map[string]TierClassCount, class string, n int64) {
	c := m[class]
	c.Segments++
	c.Bytes += n
	m[class] = c
}

package engine

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"filippo.io/age"

	"github.com/cfbackup/cfbackup/pkg/manifest"
	"github.com/cfbackup/cfbackup/pkg/store"
)

// MergeOptions name the run to merge.
type MergeOptions struct {
	Run    string
	Shards int
	// Identities open inline catalogues of partials an older cfbackup wrote (mergeCatalogues); a run
	// with streamed catalogues merges without any.
	Identities []age.Identity
	// KeepPartials leaves the partial manifests in place after the merge (prune removes them later).
	KeepPartials bool
}

// MergeResult is what a merge did.
type MergeResult struct {
	Run    string
	Shards int
	// Snapshot is the run's snapshot: written by this merge, or found (AlreadyMerged).
	Snapshot      *manifest.Manifest
	AlreadyMerged bool
	// PartialsRemoved counts the partial manifests this merge deleted once the snapshot was saved.
	PartialsRemoved int
}

// MergeShards writes the snapshot of a complete sharded run: all N partials present, of one run and
// one shard count, each authenticated, with the same components, buckets, prefixes and labels. The
// snapshot's id derives from the run id and its time is the earliest shard's, so every merger of the
// run writes the same key and the conditional create lets one succeed: a merger that finds the
// snapshot there (it lost the race, or the run was merged before) returns it with AlreadyMerged.
func (e *Engine) MergeShards(ctx context.Context, o MergeOptions) (*MergeResult, error) {
	if err := ValidateRunID(o.Run); err != nil {
		return nil, err
	}
	if o.Shards < 1 || o.Shards > MaxShards {
		return nil, fmt.Errorf("%w: --shards %d: use 1 to %d, the N of the run's --shard I/N", ErrUsage, o.Shards, MaxShards)
	}
	if err := e.Repo.RequireWritable("merging shards"); err != nil {
		return nil, err
	}
	if err := e.Repo.RequireKey("merging shards"); err != nil {
		return nil, err
	}
	res := &MergeResult{Run: o.Run, Shards: o.Shards}
	if m, err := e.RunSnapshot(ctx, o.Run); err != nil || m != nil {
		res.Snapshot, res.AlreadyMerged = m, m != nil
		return res, err
	}
	m, keys, err := e.mergeRun(ctx, o)
	if err == nil {
		err = e.Repo.SaveManifest(ctx, m)
	}
	if err != nil {
		// Another merger may have won (and removed the partials) while this one read them.
		if done, ferr := e.RunSnapshot(ctx, o.Run); ferr == nil && done != nil {
			res.Snapshot, res.AlreadyMerged = done, true
			return res, nil
		}
		return nil, err
	}
	res.Snapshot = m
	if !o.KeepPartials {
		for _, k := range keys {
			if err := e.Repo.Store.Delete(ctx, k); err != nil && !errors.Is(err, store.ErrNotFound) {
				e.log().Warn("could not remove a merged partial manifest (prune removes it later)", "key", k, "err", err)
				continue
			}
			res.PartialsRemoved++
		}
	}
	return res, nil
}

// mergeRun reads and checks the run's partials and builds the merged manifest (not yet saved).
func (e *Engine) mergeRun(ctx context.Context, o MergeOptions) (*manifest.Manifest, []string, error) {
	all, err := e.runPartials(ctx, o.Run)
	if err != nil {
		return nil, nil, err
	}
	if err := mixedCounts(o.Run, o.Shards, all); err != nil {
		return nil, nil, err
	}
	var missing []string
	keys := make([]string, 0, o.Shards)
	for i := 1; i <= o.Shards; i++ {
		if k, ok := all[o.Shards][i]; ok {
			keys = append(keys, k)
		} else {
			missing = append(missing, strconv.Itoa(i))
		}
	}
	if len(missing) > 0 {
		return nil, nil, fmt.Errorf("%w: run %q has %d of %d shard(s); missing: %s. Run the missing shard(s) with --run %s, then merge again (nothing was merged)",
			ErrShardIncomplete, o.Run, o.Shards-len(missing), o.Shards, strings.Join(missing, ", "), o.Run)
	}
	parts := make([]*shardPartial, 0, len(keys))
	for _, k := range keys {
		p, err := e.loadPartial(ctx, k)
		if err != nil {
			return nil, nil, err
		}
		parts = append(parts, p)
	}
	m, err := mergeManifests(o.Run, parts)
	if err != nil {
		return nil, nil, err
	}
	rcp, err := e.Repo.Recipients()
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %v", ErrKey, err)
	}
	if err := mergeCatalogues(parts, o.Identities, m, rcp); err != nil {
		return nil, nil, err
	}
	m.Tool = e.Tool
	return m, keys, nil
}

// shardShape is what every partial of a run must agree on.
func shardShape(m *manifest.Manifest) string {
	var b strings.Builder
	fmt.Fprintf(&b, "components=%s;", strings.Join(m.Components, ","))
	for _, k := range slices.Sorted(maps.Keys(m.Labels)) {
		fmt.Fprintf(&b, "label %q=%q;", k, m.Labels[k])
	}
	for _, s := range m.Sources {
		fmt.Fprintf(&b, "source %s %q prefix %q;", s.Component, s.ID, s.Prefix)
	}
	return b.String()
}

// mergeManifests builds the run's manifest from its partials (in shard order): one source per
// bucket with the shards' counts summed, every segment once, every side object, and the labels
// that let a later shard find its own index (shardView).
func mergeManifests(run string, parts []*shardPartial) (*manifest.Manifest, error) {
	first := parts[0].Manifest
	shape := shardShape(first)
	m := &manifest.Manifest{
		Format: manifest.FormatVersion, ID: RunSnapshotID(run), Time: first.Time, Host: first.Host, Actor: first.Actor,
		Components: first.Components, Labels: map[string]string{},
	}
	maps.Copy(m.Labels, first.Labels)
	m.Sources = make([]manifest.Source, len(first.Sources))
	ids := make([]string, len(parts))
	seen := map[string]bool{}
	var end time.Time
	for pi, p := range parts {
		pm := p.Manifest
		if got := shardShape(pm); got != shape {
			return nil, fmt.Errorf("%w: shard %d/%d of run %q backed up something else than shard 1 (components, buckets, prefixes or labels differ)", ErrShardMixed, p.Shard, p.Shards, run)
		}
		ids[pi] = pm.ID
		m.Shards = append(m.Shards, shardSummary(p))
		if pm.Time.Before(m.Time) {
			m.Time = pm.Time
		}
		if t := pm.Time.Add(time.Duration(pm.Duration)); t.After(end) {
			end = t
		}
		for i, s := range pm.Sources {
			mergeSource(&m.Sources[i], s, pi == 0)
		}
		for _, s := range pm.Segments {
			if !seen[s.ID] {
				seen[s.ID] = true
				m.Segments = append(m.Segments, s)
			}
		}
		m.Objects = append(m.Objects, pm.Objects...)
		m.Items += pm.Items
		m.Size += pm.Size
		m.StoredSize += pm.StoredSize
	}
	// Not truncated: every merger reads the same partials, so the earliest shard's time is the same
	// for all of them, and two runs started within one second still order by time, not by id.
	m.Time = m.Time.UTC()
	m.Duration = manifest.Duration(end.Sub(m.Time))
	m.Labels[LabelShardRun] = run
	m.Labels[LabelShardCount] = strconv.Itoa(len(parts))
	m.Labels[LabelShardPartials] = strings.Join(ids, ",")
	return m, nil
}

// shardSummary is what the merged manifest keeps of a partial (manifest.ShardRun).
func shardSummary(p *shardPartial) manifest.ShardRun {
	pm := p.Manifest
	r := manifest.ShardRun{Shard: fmt.Sprintf("%d/%d", p.Shard, p.Shards), Partial: pm.ID, Host: pm.Host, Time: pm.Time.UTC(),
		Duration: pm.Duration, Items: pm.Items, Size: pm.Size, StoredSize: pm.StoredSize}
	for _, s := range pm.Sources {
		r.Reused += s.Reused
	}
	return r
}

// mergeSource adds one shard's summary of a bucket to the merged one. The merged source names no
// index: each shard's index is among the snapshot's objects, found by LabelShardPartials.
func mergeSource(dst *manifest.Source, s manifest.Source, first bool) {
	if first {
		*dst = s
		dst.Index = ""
		return
	}
	dst.Items += s.Items
	dst.Size += s.Size
	dst.Reused += s.Reused
	dst.Skipped += s.Skipped
	if dst.Parent != s.Parent {
		dst.Parent = ""
	}
}

// mergeCatalogues writes the merged catalogue into m: the shards' catalogue objects listed in shard
// order. Streamed catalogues are side objects named in each partial's MAC'd manifest, so the merge
// is a concatenation of lists: no identity, no re-encryption, memory independent of the item count.
// Partials with an inline catalogue (written by a cfbackup before streamed catalogues) are opened with
// the identities and their items sealed into one inline catalogue, as before; a run is one or the other.
func mergeCatalogues(parts []*shardPartial, ids []age.Identity, m *manifest.Manifest, rcp []age.Recipient) error {
	streamed := 0
	var total int64
	for _, p := range parts {
		if p.Manifest.Streamed() {
			streamed++
		}
	}
	if streamed == len(parts) {
		for _, p := range parts {
			for _, co := range p.Manifest.CatalogueObjects {
				m.CatalogueObjects = append(m.CatalogueObjects, co)
				total += co.Items
			}
		}
		if total != m.Items {
			return fmt.Errorf("%w: the shards' catalogue objects hold %d items, their manifests say %d", ErrIntegrity, total, m.Items)
		}
		return nil
	}
	if streamed != 0 {
		return fmt.Errorf("%w: some shards of the run wrote streamed catalogues and some inline ones (different cfbackup versions): rerun the run's shards with one version", ErrShardMixed)
	}
	if len(ids) == 0 {
		return fmt.Errorf("%w: the run's partials carry inline catalogues (an older cfbackup wrote them): merge on a host with the identity", ErrKey)
	}
	var all manifest.Catalogue
	for _, p := range parts {
		c, err := OpenCatalogue(p.Manifest, ids)
		if err != nil {
			return fmt.Errorf("shard %d/%d: %w", p.Shard, p.Shards, err)
		}
		all.Items = append(all.Items, c.Items...)
	}
	if int64(len(all.Items)) != m.Items {
		return fmt.Errorf("%w: the shards' catalogues hold %d items, their manifests say %d", ErrIntegrity, len(all.Items), m.Items)
	}
	return m.SealCatalogue(&all, rcp)
}

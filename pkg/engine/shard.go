package engine

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/cfbackup/cfbackup/pkg/errclass"
	"github.com/cfbackup/cfbackup/pkg/layout"
	"github.com/cfbackup/cfbackup/pkg/manifest"
	"github.com/cfbackup/cfbackup/pkg/repo"
	"github.com/cfbackup/cfbackup/pkg/store"
)

// Sharded backups (docs/SHARDING.md): N processes each back up the keys of one shard of a bucket into
// a partial manifest under shards/<run>/; once all N have committed, a merge writes them as one
// snapshot whose id derives from the run id, with a conditional create.

// MaxShards bounds --shard's N: every shard lists the whole bucket, so more shards cost more LISTs.
const MaxShards = 1024

// ShardableComponent is the one component whose key space a sharded run splits.
const ShardableComponent = "r2"

// Labels of a merged snapshot: the run, the shard count and the partial ids in shard order (a shard of
// a later run finds its parent index by them).
const (
	LabelShardRun      = "shard-run"
	LabelShardCount    = "shard-count"
	LabelShardPartials = "shard-partials"
)

// purposePartial is the MAC purpose of partial manifests: a partial moved under snapshots/ is not a
// snapshot (its MAC does not verify as one), so nobody can make "latest" mean one shard.
const purposePartial = "shard-partial"

// partialFormat is the format of the partial document this build writes and reads.
const partialFormat = 1

var (
	// ErrShardIncomplete: not every shard of the run has committed yet; nothing was merged.
	ErrShardIncomplete = errclass.New(errclass.Incomplete, "sharded run is incomplete")
	// ErrShardMixed: the run's partials disagree (shard count, components, buckets, prefixes, labels).
	ErrShardMixed = errclass.New(errclass.Refused, "sharded run mixes partials of different runs or shard counts")
	// ErrShardUnauthenticated: a partial does not authenticate with the writer secret.
	ErrShardUnauthenticated = errclass.New(errclass.Integrity, "partial manifest does not authenticate")
)

// Shard is shard I of N of a sharded run.
type Shard struct{ I, N int }

func (s Shard) String() string { return strconv.Itoa(s.I) + "/" + strconv.Itoa(s.N) }

// ParseShard reads "I/N" (1 ≤ I ≤ N ≤ MaxShards).
func ParseShard(v string) (Shard, error) {
	a, b, ok := strings.Cut(v, "/")
	i, err1 := strconv.Atoi(a)
	n, err2 := strconv.Atoi(b)
	if !ok || err1 != nil || err2 != nil || n < 1 || n > MaxShards || i < 1 || i > n {
		return Shard{}, fmt.Errorf("%w: --shard %q: use I/N with 1 ≤ I ≤ N ≤ %d, e.g. --shard 1/3 (a Kubernetes Indexed Job passes $((JOB_COMPLETION_INDEX+1))/N)", ErrUsage, v, MaxShards)
	}
	return Shard{i, n}, nil
}

// ShardOf is the shard (1…n) of a key: the first 8 bytes of SHA-256(key), big-endian, mod n, plus one.
// It depends on the key alone — not on listing order, prefix or host — so it is stable across runs
// (each shard's incremental parent covers the same keys) and balanced whatever the key names.
func ShardOf(key string, n int) int {
	sum := sha256.Sum256([]byte(key))
	return int(binary.BigEndian.Uint64(sum[:8])%uint64(n)) + 1
}

// Keeps reports whether key belongs to this shard.
func (s Shard) Keeps(key string) bool { return ShardOf(key, s.N) == s.I }

var runIDPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)

// ValidateRunID checks a --run value: it becomes part of object keys.
func ValidateRunID(run string) error {
	if run == "" {
		return fmt.Errorf("%w: --shard needs --run ID (or CFBACKUP_SHARD_RUN), the same for every shard of one run: the Job's name in Kubernetes, ${{ github.run_id }} in GitHub Actions", ErrUsage)
	}
	if !runIDPattern.MatchString(run) {
		return fmt.Errorf("%w: --run %q: use 1 to 128 letters, digits, '.', '_' or '-', starting with a letter or digit", ErrUsage, run)
	}
	return nil
}

// RunSnapshotID is the id of the snapshot a run's merge writes: derived from the run id, so every
// merger of one run writes the same key and the conditional create lets exactly one succeed.
func RunSnapshotID(run string) string {
	sum := sha256.Sum256([]byte("cfbackup shard run v1\x00" + run))
	return hex.EncodeToString(sum[:8])
}

// shardPartial is the document under shards/<run>/<I>-of-<N>.json: a manifest of the shard's part,
// with the run it belongs to, authenticated with the writer secret (purposePartial).
type shardPartial struct {
	Format   int                `json:"format"`
	Run      string             `json:"run"`
	Shard    int                `json:"shard"`
	Shards   int                `json:"shards"`
	Manifest *manifest.Manifest `json:"manifest"`
	MAC      string             `json:"mac,omitempty"`
}

// savePartial writes the partial with a conditional create; store.ErrExists (wrapped) when the shard
// was committed already (by a retried pod or a racing run of the same id).
func (e *Engine) savePartial(ctx context.Context, run string, sh Shard, m *manifest.Manifest) error {
	if err := e.Repo.RequireKey("writing a partial manifest"); err != nil {
		return err
	}
	m.Format = manifest.FormatVersion
	raw, err := json.Marshal(&shardPartial{Format: partialFormat, Run: run, Shard: sh.I, Shards: sh.N, Manifest: m})
	if err != nil {
		return err
	}
	signed, err := e.Repo.Key().Sign(purposePartial, raw)
	if err != nil {
		return err
	}
	key := layout.ShardPartialKey(run, sh.I, sh.N)
	if err := e.Repo.Store.Put(ctx, key, bytes.NewReader(signed), store.PutOptions{IfNotExists: true}); err != nil {
		return fmt.Errorf("write partial manifest %s: %w", key, err)
	}
	m.Auth = manifest.AuthOK
	return nil
}

// maxPartialSize bounds a partial read before it is parsed (as a manifest is bounded).
const maxPartialSize = 256 << 20

// loadPartial reads and authenticates one partial and checks it against its key.
func (e *Engine) loadPartial(ctx context.Context, key string) (*shardPartial, error) {
	run, i, n, ok := layout.ParseShardPartialKey(key)
	if !ok {
		return nil, fmt.Errorf("%w: %s is not a partial manifest's key", manifest.ErrFormat, key)
	}
	rc, err := e.Repo.Store.Open(ctx, key, 0, -1)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	raw, err := io.ReadAll(io.LimitReader(store.ContextReader(ctx, rc), maxPartialSize+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", key, err)
	}
	if len(raw) > maxPartialSize {
		return nil, fmt.Errorf("%s: %w: larger than %d MiB", key, manifest.ErrFormat, maxPartialSize>>20)
	}
	if err := e.Repo.Key().Verify(purposePartial, raw); err != nil {
		return nil, fmt.Errorf("%w: %s: %v: it was made or changed without this repository's writer secret", ErrShardUnauthenticated, key, err)
	}
	var p shardPartial
	if err := json.Unmarshal(raw, &p); err != nil || p.Manifest == nil {
		return nil, fmt.Errorf("%w: %s: not a partial manifest", manifest.ErrFormat, key)
	}
	if p.Format != partialFormat || p.Manifest.Format > manifest.FormatVersion {
		return nil, fmt.Errorf("%w: %s has format %d (manifest %d): upgrade cfbackup", manifest.ErrVersion, key, p.Format, p.Manifest.Format)
	}
	if p.Run != run || p.Shard != i || p.Shards != n {
		return nil, fmt.Errorf("%w: %s records run %q shard %d/%d, not what its key says", ErrShardMixed, key, p.Run, p.Shard, p.Shards)
	}
	p.Manifest.Auth = manifest.AuthOK
	return &p, nil
}

// runPartials lists the keys of a run's partials by shard count: {n: {i: key}}.
func (e *Engine) runPartials(ctx context.Context, run string) (map[int]map[int]string, error) {
	out := map[int]map[int]string{}
	err := e.Repo.Store.List(ctx, layout.ShardRunPrefix(run), func(oi store.ObjectInfo) error {
		r, i, n, ok := layout.ParseShardPartialKey(oi.Key)
		if !ok || r != run {
			return nil
		}
		if out[n] == nil {
			out[n] = map[int]string{}
		}
		out[n][i] = oi.Key
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", layout.ShardRunPrefix(run), err)
	}
	return out, nil
}

// RunSnapshot returns the snapshot a run's merge wrote (authenticated), or nil when there is none.
func (e *Engine) RunSnapshot(ctx context.Context, run string) (*manifest.Manifest, error) {
	id := RunSnapshotID(run)
	var found string
	err := e.Repo.Store.List(ctx, layout.Snapshots, func(oi store.ObjectInfo) error {
		if layout.IsManifestKey(oi.Key) && manifest.IDFromKey(oi.Key) == id {
			found = oi.Key
		}
		return nil
	})
	if err != nil || found == "" {
		return nil, err
	}
	t, ok := manifest.TimeFromKey(found)
	if !ok {
		return nil, fmt.Errorf("%w: %s", manifest.ErrFormat, found)
	}
	return e.Repo.LoadManifest(ctx, &manifest.Manifest{ID: id, Time: t, Summary: true})
}

// shardView is what Snapshots shows the captures of shard sh: in a merged snapshot of a run with the
// same shard count, each bucket's index is this shard's own (its keys are this shard's keys); a
// snapshot of another shard count offers no index (this shard backs its objects up in full, said in
// the log); an unsharded snapshot's index covers every key and serves as it is.
func shardView(sh Shard, warn func(msg string, args ...any)) func([]*manifest.Manifest) []*manifest.Manifest {
	return func(snaps []*manifest.Manifest) []*manifest.Manifest {
		out := make([]*manifest.Manifest, 0, len(snaps))
		told := map[string]bool{}
		for _, m := range snaps {
			run, sharded := m.Labels[LabelShardRun]
			if !sharded || repo.IsSafetySnapshot(m) {
				out = append(out, m)
				continue
			}
			c := *m
			c.Sources = slices.Clone(m.Sources)
			parts := strings.Split(m.Labels[LabelShardPartials], ",")
			same := m.Labels[LabelShardCount] == strconv.Itoa(sh.N) && len(parts) == sh.N
			for i := range c.Sources {
				src := &c.Sources[i]
				if src.Component != ShardableComponent {
					continue
				}
				src.Index = ""
				if same {
					key := layout.R2IndexKey(parts[sh.I-1], src.ID)
					if slices.ContainsFunc(m.Objects, func(o manifest.Object) bool { return o.Key == key }) {
						src.Index = key
					}
				} else if !told[src.ID] {
					warn("the newest snapshot of the bucket was taken with another shard count: this shard backs up its objects in full",
						"bucket", src.ID, "snapshot", m.ID, "run", run, "shards", m.Labels[LabelShardCount], "shard", sh.String())
				}
				told[src.ID] = true
			}
			out = append(out, &c)
		}
		return out
	}
}

// shardRun is what Backup does differently for one shard: the session keeps the shard's keys and
// sees the shard's parents, and the manifest is saved as a partial.
type shardRun struct {
	run string
	sh  Shard
}

// saver is how Backup commits: the snapshot's manifest, or — for a shard, whose session then keeps
// the shard's keys and sees the shard's parents — its partial.
func (e *Engine) saver(o BackupOptions, sess *Session) func(context.Context, *manifest.Manifest) error {
	sr := o.shard
	if sr == nil {
		return e.Repo.SaveManifest
	}
	sess.Shard = sr.sh.Keeps
	sess.SnapshotView = shardView(sr.sh, e.log().Warn)
	return func(ctx context.Context, m *manifest.Manifest) error { return e.saveShard(ctx, sr, m) }
}

// ShardBackupResult is what one shard's backup did.
type ShardBackupResult struct {
	Run   string
	Shard Shard
	// Partial is the shard's partial manifest (nil when Committed or Merged said there was nothing
	// to do); PartialKey is where it is.
	Partial    *manifest.Manifest
	PartialKey string
	// AlreadyCommitted: another process committed this shard first (its data stands; this run's
	// segments were removed). AlreadyMerged: the run was merged before this shard started.
	AlreadyCommitted bool
	AlreadyMerged    bool
	// Present is how many of the run's N shards have committed, seen after this one committed.
	Present int
}

// BackupShard backs up shard sh of a run: only the keys of the shard, into a partial manifest (not a
// snapshot). It does nothing when the run was merged already, and keeps the first commit when the
// shard is committed twice; it refuses a run whose partials have another shard count.
func (e *Engine) BackupShard(ctx context.Context, plan *BackupPlan, o BackupOptions, run string, sh Shard) (*ShardBackupResult, error) {
	if err := ValidateRunID(run); err != nil {
		return nil, err
	}
	for _, c := range plan.Components {
		if c != ShardableComponent {
			return nil, fmt.Errorf("%w: --shard splits the keys of R2 buckets only (--component %s); back up %s in a run of its own", ErrUsage, ShardableComponent, c)
		}
	}
	if err := e.Repo.RequireKey("a sharded backup"); err != nil {
		return nil, err
	}
	res := &ShardBackupResult{Run: run, Shard: sh, PartialKey: layout.ShardPartialKey(run, sh.I, sh.N)}
	if m, err := e.RunSnapshot(ctx, run); err != nil {
		return nil, err
	} else if m != nil {
		res.AlreadyMerged, res.Present = true, sh.N
		return res, nil
	}
	parts, err := e.runPartials(ctx, run)
	if err != nil {
		return nil, err
	}
	if err := mixedCounts(run, sh.N, parts); err != nil {
		return nil, err
	}
	if _, ok := parts[sh.N][sh.I]; ok {
		res.AlreadyCommitted = true
	} else {
		o.shard = &shardRun{run: run, sh: sh}
		m, err := e.Backup(ctx, plan, o)
		switch {
		case errors.Is(err, store.ErrExists) && errors.Is(err, errPartialExists):
			res.AlreadyCommitted = true
		case err != nil:
			return nil, err
		default:
			res.Partial = m
		}
	}
	if parts, err = e.runPartials(ctx, run); err != nil {
		return nil, err
	}
	res.Present = len(parts[sh.N])
	return res, nil
}

// errPartialExists marks the conditional create of a partial that found one there.
var errPartialExists = errors.New("the shard was committed by another process")

// saveShard is Backup's commit for a shard: the partial, and errPartialExists when it lost a race.
func (e *Engine) saveShard(ctx context.Context, sr *shardRun, m *manifest.Manifest) error {
	err := e.savePartial(ctx, sr.run, sr.sh, m)
	if errors.Is(err, store.ErrExists) {
		return fmt.Errorf("%w: %w", errPartialExists, err)
	}
	return err
}

// mixedCounts refuses a run that holds partials of a shard count other than n.
func mixedCounts(run string, n int, parts map[int]map[int]string) error {
	var other []string
	for k := range parts {
		if k != n {
			other = append(other, strconv.Itoa(k))
		}
	}
	if len(other) == 0 {
		return nil
	}
	slices.Sort(other)
	return fmt.Errorf("%w: run %q already has partials of %s shard(s), not %d: use a new --run ID for a different shard count (cfbackup prune removes the stale partials)",
		ErrShardMixed, run, strings.Join(other, ", "), n)
}

// shardCatalogue keeps the items of a catalogue that shard sh restores: objects whose key falls in
// it (the same ShardOf as the backup's), and every item that is not a keyed object.
func shardCatalogue(c *manifest.Catalogue, sh Shard) *manifest.Catalogue {
	// A filtered view, streamed like the catalogue it wraps: no per-item state is kept.
	return manifest.StreamSelected(func(sel *manifest.Selection, fn func(manifest.Item) error) error {
		return c.EachSelected(sel, func(it manifest.Item) error {
			if it.Object == nil || sh.Keeps(it.Object.Key) {
				return fn(it)
			}
			return nil
		})
	})
}

// Package engine orchestrates backup, verify and restore over a repository, the sources and the
// archive. The CLI commands are thin over it, so everything a command does can be driven from a test
// with real stores and the project's Cloudflare test server.
package engine

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"log/slog"
	"maps"
	"os"
	"os/user"
	"slices"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	"filippo.io/age"

	"github.com/cfbackup/cfbackup/pkg/archive"
	"github.com/cfbackup/cfbackup/pkg/errclass"
	"github.com/cfbackup/cfbackup/pkg/layout"
	"github.com/cfbackup/cfbackup/pkg/manifest"
	"github.com/cfbackup/cfbackup/pkg/record"
	"github.com/cfbackup/cfbackup/pkg/repo"
	"github.com/cfbackup/cfbackup/pkg/seal"
	"github.com/cfbackup/cfbackup/pkg/source"
	"github.com/cfbackup/cfbackup/pkg/store"
)

// The engine's error classes (pkg/errclass): every error a command returns wraps one, and the CLI maps
// classes, never package sentinels, to exit codes.
var (
	// ErrIntegrity: stored data does not match its recorded hashes or counts.
	ErrIntegrity = errclass.Integrity
	// ErrKey: no identity, or no identity that opens the data.
	ErrKey = errclass.Key
	// ErrNotFound: the thing asked for is not in the snapshot or the account.
	ErrNotFound = errclass.NotFound
	// ErrUsage: an option value is malformed.
	ErrUsage = errclass.Usage
	// ErrRefused: the target exists or holds data; nothing was changed.
	ErrRefused = errclass.Refused
)

// Progress receives byte counts of long-running work (pkg/source).
type Progress = source.Progress

type noProgress = source.NoProgress

// Engine binds a repository to a clock, a logger and a progress sink.
type Engine struct {
	Repo     *repo.Repo
	Log      *slog.Logger
	Now      func() time.Time
	Progress Progress
	// Tool is recorded in manifests ("cfbackup v1.2.3").
	Tool string
	// PinnedRecipients, when set, are the only recipients this host encrypts to
	// (CFBACKUP_RECIPIENTS / recipients_file): a repository listing others is refused.
	PinnedRecipients []string
}

func (e *Engine) log() *slog.Logger {
	if e.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return e.Log
}

func (e *Engine) now() time.Time {
	if e.Now == nil {
		return time.Now()
	}
	return e.Now()
}

func (e *Engine) progress() Progress {
	if e.Progress == nil {
		return noProgress{}
	}
	return e.Progress
}

// BackupOptions select what one backup captures.
type BackupOptions struct {
	Components []string
	Labels     map[string]string
	DryRun     bool
	Actor      string
	// StorageClass is the S3 storage class of the new segments ("" the bucket's default), and
	// ComponentClasses overrides it per component name; stores without classes ignore both.
	StorageClass     string
	ComponentClasses map[string]string
	// Concurrency bounds how many captures run at once (0: DefaultConcurrency; 1: one after
	// another, in plan order, on one archive writer).
	Concurrency int

	shard *shardRun // set by BackupShard: the manifest is one shard's partial (shard.go)
}

// concurrency is how many of captures run at once.
func (o BackupOptions) concurrency(captures int) int {
	c := o.Concurrency
	if c <= 0 {
		c = DefaultConcurrency
	}
	return max(1, min(c, captures))
}

// classFor is the storage class of component's segments.
func (o BackupOptions) classFor(component string) string {
	if c, ok := o.ComponentClasses[component]; ok && c != "" {
		return c
	}
	return o.StorageClass
}

// BackupPlan is what a backup would do (pkg/source).
type BackupPlan = source.BackupPlan

// Capture backs up one source into the snapshot being written (pkg/source).
type Capture = source.Capture

// Components lists every component this build can back up: the registered ones (pkg/source).
func Components() []string { return source.Names() }

// ValidateComponents checks --component values.
func ValidateComponents(comps []string) error {
	all := Components()
	for _, c := range comps {
		if !slices.Contains(all, c) {
			return fmt.Errorf("%w: unknown component %q (components: %s)", ErrUsage, c, strings.Join(all, ", "))
		}
	}
	return nil
}

// Session is what a Capture sees of the snapshot being written (pkg/source).
type Session = source.Session

// Backup captures the plan into a new snapshot. Segments are written first, the manifest last with a
// conditional create: if anything fails or the context is cancelled, no snapshot appears and earlier
// snapshots are untouched (only unreferenced segment objects may remain, for prune to collect).
func (e *Engine) Backup(ctx context.Context, plan *BackupPlan, o BackupOptions) (*manifest.Manifest, error) {
	start := e.now()
	// Encrypt only to an authenticated recipient list (and, when pinned, only to the pinned one).
	if err := e.Repo.RequireWritable("backup"); err != nil {
		return nil, err
	}
	if err := e.Repo.RequireKey("backup"); err != nil {
		return nil, err
	}
	if err := e.Repo.CheckRecipients(e.PinnedRecipients); err != nil {
		return nil, err
	}
	rcp, err := e.Repo.Recipients()
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrKey, err)
	}
	if len(plan.Captures()) == 0 {
		return nil, fmt.Errorf("%w: nothing to back up", ErrNotFound)
	}
	cr := &captureRun{classFor: o.classFor, newWriter: func(compressors int) (*archive.Writer, error) {
		return archive.NewWriter(ctx, archive.WriterOptions{
			Store:       e.Repo.Store,
			Recipients:  rcp,
			SegmentSize: e.Repo.Config.SegmentSize,
			ChunkSize:   e.Repo.Config.ChunkSize,
			Concurrency: compressors,
		})
	}}
	committed := false
	defer func() {
		if !committed {
			cr.abort()
		}
	}()
	m := &manifest.Manifest{
		Format:     manifest.FormatVersion,
		ID:         repo.NewSnapshotID(),
		Components: plan.Components,
		Labels:     o.Labels,
		Host:       hostname(),
		Actor:      actor(o.Actor),
		Tool:       e.Tool,
	}
	// The dump's size is unknown in advance (SQL text is larger than the database file), so the bar
	// shows bytes and rate rather than a percentage.
	pr := e.progress()
	pr.Start("backup", -1)
	conc := o.concurrency(len(plan.Captures()))
	if conc > 1 {
		pr = &lockedProgress{p: pr}
	}
	sess := &Session{SnapshotID: m.ID, Repo: e.Repo, Log: e.log(), Progress: pr, Recipients: rcp}
	defer sess.Close()
	save := e.saver(o, sess)
	if err := cr.run(ctx, sess, plan.Captures(), conc); err != nil {
		pr.Finish()
		return nil, err
	}
	pr.Finish()
	segs, err := cr.close()
	if err != nil {
		return nil, fmt.Errorf("store segments: %w", err)
	}
	got, err := sess.Collected()
	if err != nil {
		return nil, err
	}
	m.Sources = got.Sources
	m.Objects = got.Objects
	m.Segments = segs
	for _, s := range segs {
		m.StoredSize += s.Size
		delete(got.Refs, s.ID)
	}
	refIDs := make([]string, 0, len(got.Refs))
	for id := range got.Refs {
		refIDs = append(refIDs, id)
	}
	sort.Strings(refIDs)
	for _, id := range refIDs {
		m.Segments = append(m.Segments, got.Refs[id])
	}
	m.Items, m.Size = got.Items, got.Size
	if err := e.storeCatalogue(ctx, m, got.Catalogues); err != nil {
		return nil, err
	}
	m.Time = start.UTC()
	m.Duration = manifest.Duration(e.now().Sub(start))
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := save(ctx, m); err != nil {
		return nil, err
	}
	m.SetStore(e.Repo.Store)
	committed = true
	sess.Committed(ctx, m)
	return m, nil
}

// storeCatalogue stores the catalogue spools, in order, as the snapshot's catalogue objects (each
// with a conditional create, before the manifest that names them).
func (e *Engine) storeCatalogue(ctx context.Context, m *manifest.Manifest, spools []*source.CatalogueSpool) error {
	for _, sp := range spools {
		if sp.Items() == 0 {
			continue
		}
		n := len(m.CatalogueObjects)
		cos, err := sp.Store(ctx, e.Repo.Store, func(i int) string { return layout.CatalogueKey(m.ID, n+i) })
		if err != nil {
			return fmt.Errorf("store the catalogue: %w", err)
		}
		m.CatalogueObjects = append(m.CatalogueObjects, cos...)
	}
	return nil
}

// VerifyOptions choose how deep verify reads.
type VerifyOptions struct {
	// ReadData decrypts and hashes every item (needs identities).
	ReadData bool
	// Subset limits ReadData to some segments: "n/t" (the n-th of t groups) or "x%" (a random x percent).
	Subset     string
	Identities []age.Identity
	// Rand picks the random subset; default a time-seeded source.
	Rand func(n int) int
	// Record stores the result under verify/ so reports can show verification coverage over time.
	Record bool
	// Select, when set, chooses the segments to check instead of Subset, in every mode: verify --all
	// checks each segment once in the whole repository, and only its slice (verify_all.go).
	Select func(archive.SegmentInfo) bool
	// All and Slice are recorded with the result (record.Verify).
	All   bool
	Slice string
}

// VerifyPrefix is where verification results are recorded: verify/<UTC time>-<snapshot id>.json.
const VerifyPrefix = record.VerifyPrefix

func (e *Engine) recordVerify(ctx context.Context, res *VerifyResult) error {
	// The record is plaintext: keep segment keys, but never item or table names (invariant 3). Item
	// problems become counts by failure kind; a test-restore's problems are such counts already.
	rec := *res
	rec.Problems = []string{}
	if res.Mode == "test-restore" || strings.HasPrefix(res.Mode, "test-restore ") {
		rec.Problems = append(rec.Problems, res.Problems...)
	} else {
		items := map[string]int{}
		for i, p := range res.Problems {
			if strings.HasPrefix(p, "segment ") {
				rec.Problems = append(rec.Problems, p)
			} else {
				items[res.ProblemKind(i, FailureError)]++
			}
		}
		if len(items) > 0 {
			rec.Problems = append(rec.Problems, "item and object problems: "+failureSummary(items))
		}
	}
	if !rec.OK && rec.FailureKind == "" {
		rec.FailureKind = FailureError
	}
	b, err := json.MarshalIndent(&rec, "", "  ")
	if err != nil {
		return err
	}
	key := layout.VerifyRecordKey(res.Time, res.Snapshot)
	return e.Repo.Store.Put(ctx, key, bytes.NewReader(append(b, '\n')), store.PutOptions{IfNotExists: true})
}

// VerifyResult is one snapshot's verification outcome; its type lives in pkg/record, so pkg/report
// reads exactly what the engine records under verify/.
type VerifyResult = record.Verify

// Verify checks a snapshot. The quick mode needs no identity: every segment exists with its recorded
// size and ciphertext SHA-256. ReadData also decrypts every (selected) item and checks its SHA-256.
// Problems are collected, not stopped at; the error wraps ErrIntegrity when there is any.
func (e *Engine) Verify(ctx context.Context, m *manifest.Manifest, o VerifyOptions) (*VerifyResult, error) {
	start := e.now()
	m, err := e.loadChecked(ctx, m)
	if err != nil {
		return nil, err
	}
	res := &VerifyResult{Snapshot: m.ID, Mode: "quick", SegmentsTotal: len(m.Segments), Problems: []string{}}
	res.Authenticity = string(m.Auth)
	if m.Auth == manifest.AuthLegacy {
		e.log().Warn("snapshot not authenticated: repository format 1 (run 'cfbackup migrate')", "snapshot", m.ID)
	}
	selected, err := subset(len(m.Segments), o.Subset, o.Rand)
	if err != nil {
		return nil, err
	}
	if o.Select != nil {
		selected = func(i int) bool { return o.Select(m.Segments[i]) }
	}
	res.All, res.Slice = o.All, o.Slice
	if o.ReadData {
		res.Mode = "read-data"
		if o.Subset != "" {
			res.Mode = "read-data-subset " + o.Subset
		}
		if len(o.Identities) == 0 {
			return nil, fmt.Errorf("%w: --read-data needs an identity: set --identity-file or CFBACKUP_IDENTITY_FILE", ErrKey)
		}
	}
	pr := e.progress()
	var total int64
	for i, s := range m.Segments {
		if selected(i) || (!o.ReadData && o.Select == nil) {
			total += s.Size
		}
	}
	pr.Start("verify", total)
	defer pr.Finish()
	if !o.ReadData {
		if err := e.verifyQuick(ctx, m, o.Select, res, pr); err != nil {
			return nil, err
		}
	} else if err := e.verifyData(ctx, m, selected, o.Identities, res, pr); err != nil {
		return nil, err
	}
	// What the next backup relies on is checked too, so damage there is found by the scheduled verify
	// rather than by a backup falling back to a full one: side objects (R2 indexes) by their recorded
	// hash, and — with an identity — the writer secret against the repository's key.
	for _, ob := range m.SideObjects() {
		if o.ReadData && isCatalogue(m, ob.Key) {
			continue // read whole and checked (size, SHA-256, items) by the read-data pass
		}
		if err := verifyObject(ctx, e.Repo.Store, ob); err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			fail(res, FailureKindOf(err, FailureError), fmt.Sprintf("object %s: %v", ob.Key, err))
		}
	}
	if o.ReadData && e.Repo.Key() != nil && !e.Repo.Legacy() {
		if secret, err := e.Repo.WriterSecret(ctx, o.Identities); err != nil {
			fail(res, FailureKindOf(err, FailureError), fmt.Sprintf("%s: %v", repo.WriterKeyKey, err))
		} else if id := seal.NewKey(secret).ID(); id != e.Repo.Key().ID() {
			fail(res, FailureIntegrity, fmt.Sprintf("%s: holds the secret with key id %s, but the repository authenticates with %s: it was replaced", repo.WriterKeyKey, id, e.Repo.Key().ID()))
		}
	}
	res.DurationMillis = e.now().Sub(start).Milliseconds()
	res.Time = start.UTC()
	res.OK = len(res.Problems) == 0
	if o.Record {
		if err := e.recordVerify(ctx, res); err != nil {
			e.log().Warn("could not record the verification result", "err", err)
		}
	}
	if len(res.Problems) > 0 {
		return res, fmt.Errorf("%w: snapshot %s: %d problem(s): %s", ErrIntegrity, m.ID, len(res.Problems), strings.Join(res.Problems, "; "))
	}
	return res, nil
}

// verifyQuick checks each segment's size and ciphertext SHA-256 (those sel chooses, when set).
func (e *Engine) verifyQuick(ctx context.Context, m *manifest.Manifest, sel func(archive.SegmentInfo) bool, res *VerifyResult, pr Progress) error {
	for _, s := range m.Segments {
		if sel != nil && !sel(s) {
			continue
		}
		res.Segments++
		if err := archive.VerifySegment(ctx, e.Repo.Store, s); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if errors.Is(err, store.ErrArchived) {
				// Not damage: the segment must be restored first; stop with the fix (exit 8).
				return err
			}
			fail(res, FailureKindOf(err, FailureError), fmt.Sprintf("segment %s: %v", s.Key, err))
		}
		res.BytesRead += s.Size
		pr.Add(int(s.Size))
	}
	return nil
}

func isCatalogue(m *manifest.Manifest, key string) bool {
	for _, c := range m.CatalogueObjects {
		if c.Key == key {
			return true
		}
	}
	return false
}

// verifyObject reads a side object whole and checks its recorded size and SHA-256.
func verifyObject(ctx context.Context, st store.Store, ob manifest.Object) error {
	rc, err := st.Open(ctx, ob.Key, 0, -1)
	if err != nil {
		return err
	}
	defer rc.Close()
	h := sha256.New()
	n, err := io.Copy(h, io.LimitReader(store.ContextReader(ctx, rc), ob.Size+1))
	if err != nil {
		return err
	}
	if n != ob.Size {
		return fmt.Errorf("%w: %d bytes, recorded %d", archive.ErrIntegrity, n, ob.Size)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != ob.SHA256 {
		return fmt.Errorf("%w: SHA-256 %s, recorded %s", archive.ErrIntegrity, got, ob.SHA256)
	}
	return nil
}

// verifyWindow is how many items verify --read-data holds at once: the catalogue is read as a
// stream and checked window by window, so memory does not grow with the snapshot.
var verifyWindow = 32768

// verifyData streams the catalogue and checks the items that have chunks in the selected segments,
// a window of items at a time (verifyWindowData). Every selected segment is read at least once; a
// segment that holds items of two windows is read once per window.
func (e *Engine) verifyData(ctx context.Context, m *manifest.Manifest, selected func(int) bool, ids []age.Identity, res *VerifyResult, pr Progress) error {
	chosen := map[string]bool{}
	for i, s := range m.Segments {
		if selected(i) {
			chosen[s.ID] = true
		}
	}
	read := map[string]bool{}
	proof := e.newChunkProof(ctx, ids)
	var win []manifest.Item
	err := m.EachItem(ctx, e.Repo.Store, ids, func(it manifest.Item) error {
		for _, c := range slices.Concat(it.Chunks, it.Lists) {
			if chosen[c.Segment] {
				win = append(win, it)
				break
			}
		}
		if len(win) < verifyWindow {
			return nil
		}
		err := e.verifyWindowData(ctx, m, win, chosen, read, proof, ids, res, pr)
		clear(win)
		win = win[:0]
		return err
	})
	if err == nil {
		err = e.verifyWindowData(ctx, m, win, chosen, read, proof, ids, res, pr)
	}
	if err != nil {
		var nm *age.NoIdentityMatchError
		if errors.As(err, &nm) || errors.Is(err, store.ErrArchived) || ctx.Err() != nil {
			return keyErr(err)
		}
		fail(res, FailureKindOf(err, FailureError), fmt.Sprintf("catalogue: %v", err))
	}
	// Selected segments no item points into are still read: their damage matters to nobody today,
	// but verify vouches for every segment it was asked to check.
	for _, s := range m.Segments {
		if chosen[s.ID] && !read[s.ID] {
			if err := e.verifyWindowData(ctx, m, nil, map[string]bool{s.ID: true}, read, proof, ids, res, pr); err != nil {
				return err
			}
		}
	}
	return nil
}

// verifyWindowData reads each selected segment the window's items point into once, sequentially:
// archive.ReadSegment checks the ciphertext hash and hands over every tar entry, and item hashes are
// accumulated across segments in order. Whatever this fast path cannot confirm — an item only partly
// inside the selected segments, or a mismatch (which can also be an orphaned chunk of a retried
// export stored under the same name) — is checked again with ranged reads (archive.OpenItem) before
// it is reported. With no items, it reads the chosen segments (those not read yet) for their hashes.
func (e *Engine) verifyWindowData(ctx context.Context, m *manifest.Manifest, items []manifest.Item, chosen, read map[string]bool, proof *chunkProof, ids []age.Identity, res *VerifyResult, pr Progress) error {
	type chunkRef struct{ item, chunk int }
	type itemState struct {
		h    hash.Hash
		next int
		size int64
	}
	entries := map[string][]chunkRef{}
	want := map[string]bool{}
	states := make([]*itemState, len(items))
	for i, it := range items {
		states[i] = &itemState{h: sha256.New()}
		if len(it.Lists) > 0 { // its chunks are known once its lists are read: read every chosen segment
			proof.expectLists(it.Lists)
			maps.Copy(want, chosen)
		}
		for ci, c := range it.Chunks {
			k := c.Segment + "\x00" + archive.ChunkEntry(it.Name, c, ci, len(it.Chunks))
			entries[k] = append(entries[k], chunkRef{i, ci})
			want[c.Segment] = chosen[c.Segment]
		}
	}
	for _, s := range m.Segments {
		if !chosen[s.ID] || (items != nil && !want[s.ID]) || (items == nil && read[s.ID]) {
			continue
		}
		err := archive.ReadSegment(ctx, e.Repo.Store, s, ids, func(name string, r io.Reader) error {
			r, proved := proof.wrap(s.ID, name, r)
			defer proved()
			// Every item waiting for this entry gets it (items that share a chunk read it once).
			var ws []io.Writer
			var got []*itemState
			for _, ref := range entries[s.ID+"\x00"+name] {
				if st := states[ref.item]; st.next == ref.chunk {
					ws, got = append(ws, st.h), append(got, st)
				}
			}
			n, err := io.Copy(io.MultiWriter(append(ws, io.Discard)...), r)
			for _, st := range got {
				st.size += n
				st.next++
			}
			return err
		})
		if !read[s.ID] {
			read[s.ID] = true
			res.Segments++
			res.BytesRead += s.Size
			pr.Add(int(s.Size))
		}
		if err != nil {
			if errors.Is(err, store.ErrArchived) || ctx.Err() != nil {
				// Not damage, and every other archived segment would say the same: stop with the fix.
				return err
			}
			fail(res, FailureKindOf(err, FailureError), fmt.Sprintf("segment %s: %v", s.Key, err))
		}
	}
	segs := m.SegmentMap()
	for i, st := range states {
		res.Items++
		it := items[i]
		if st.next == len(it.Chunks) && st.size == it.Size && hex.EncodeToString(st.h.Sum(nil)) == it.SHA256 || proof.proves(it) {
			continue
		}
		rc, err := archive.OpenItem(ctx, e.Repo.Store, segs, ids, it.ItemRef)
		if err == nil {
			_, err = io.Copy(io.Discard, rc)
			rc.Close()
		}
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			fail(res, FailureKindOf(err, FailureError), fmt.Sprintf("item %s (%s %s): %v", it.Name, it.Component, it.Table, err))
		}
	}
	proof.endWindow()
	return nil
}

// ValidateSubset checks a --read-data-subset value before any work starts.
func ValidateSubset(spec string) error {
	_, err := subset(1, spec, nil)
	return err
}

// subset parses "n/t" or "x%" into a segment filter.
func subset(n int, spec string, rnd func(int) int) (func(int) bool, error) {
	if spec == "" {
		return func(int) bool { return true }, nil
	}
	if strings.HasSuffix(spec, "%") {
		var pct float64
		if _, err := fmt.Sscanf(strings.TrimSuffix(spec, "%"), "%g", &pct); err != nil || pct <= 0 || pct > 100 {
			return nil, fmt.Errorf("%w: --read-data-subset %q: give a percentage between 0 and 100, like 10%%", ErrUsage, spec)
		}
		if rnd == nil {
			seed := time.Now().UnixNano()
			rnd = func(k int) int {
				seed = seed*6364136223846793005 + 1442695040888963407
				return int(uint64(seed)>>33) % k
			}
		}
		want := int(float64(n)*pct/100 + 0.999999)
		if want < 1 && n > 0 {
			want = 1
		}
		perm := make([]int, n)
		for i := range perm {
			perm[i] = i
		}
		for i := n - 1; i > 0; i-- {
			j := rnd(i + 1)
			perm[i], perm[j] = perm[j], perm[i]
		}
		pick := map[int]bool{}
		for _, i := range perm[:want] {
			pick[i] = true
		}
		return func(i int) bool { return pick[i] }, nil
	}
	var k, t int
	if _, err := fmt.Sscanf(spec, "%d/%d", &k, &t); err != nil || t < 1 || k < 1 || k > t {
		return nil, fmt.Errorf("%w: --read-data-subset %q: use n/t with 1 ≤ n ≤ t (e.g. 1/5) or a percentage (e.g. 10%%)", ErrUsage, spec)
	}
	return func(i int) bool { return i%t == k-1 }, nil
}

// Opener binds archive.OpenItem to a snapshot for the sources' restore functions. Bytes read are
// reported to the progress sink (see StartProgress).
func (e *Engine) Opener(m *manifest.Manifest, ids []age.Identity) source.Opener {
	return e.countingOpener(m, ids, nil)
}

// countingOpener is Opener that also adds the plaintext bytes read to n (when not nil): a restore
// reports how much it decrypted to the audit trail, notifications and metrics.
func (e *Engine) countingOpener(m *manifest.Manifest, ids []age.Identity, n *atomic.Int64) source.Opener {
	// One archive.Opener for all items: it reads each segment's header once, not once per item.
	op := archive.NewOpener(e.Repo.Store, m.SegmentMap(), ids)
	pr := e.progress()
	return func(ctx context.Context, ref archive.ItemRef) (io.ReadCloser, error) {
		rc, err := op.Open(ctx, ref)
		if err != nil {
			return nil, err
		}
		return progressReader{rc, pr, n}, nil
	}
}

// StartProgress shows progress of work the caller drives (a restore) and returns the function that ends it.
func (e *Engine) StartProgress(label string, total int64) (finish func()) {
	pr := e.progress()
	pr.Start(label, total)
	return pr.Finish
}

type progressReader struct {
	io.ReadCloser
	pr Progress
	n  *atomic.Int64
}

func (p progressReader) add(n int) {
	p.pr.Add(n)
	if p.n != nil {
		p.n.Add(int64(n))
	}
}

// ReadAll reads the whole item (archive.WholeReader) and reports it as read.
func (p progressReader) ReadAll(b *archive.Buffers) ([]byte, error) {
	wr, ok := p.ReadCloser.(archive.WholeReader)
	if !ok {
		return nil, errors.New("engine: this reader cannot read items whole")
	}
	data, err := wr.ReadAll(b)
	if len(data) > 0 {
		p.add(len(data))
	}
	return data, err
}

// Parts reads the item in parts (archive.PartReader: chunks decoded straight into the caller's
// buffers) and reports what is read; a reader without it is read as it is.
func (p progressReader) Parts(b *archive.Buffers) io.Reader {
	pr, ok := p.ReadCloser.(archive.PartReader)
	if !ok {
		return p
	}
	return progressParts{pr.Parts(b), p}
}

// progressParts reports the bytes an archive.PartReader's reader gives.
type progressParts struct {
	r io.Reader
	p progressReader
}

func (q progressParts) Read(b []byte) (int, error) {
	n, err := q.r.Read(b)
	if n > 0 {
		q.p.add(n)
	}
	return n, err
}

var _ archive.PartReader = progressReader{} // restores of large objects rely on it

func (p progressReader) Read(b []byte) (int, error) {
	n, err := p.ReadCloser.Read(b)
	if n > 0 {
		p.add(n)
	}
	return n, err
}

// loadChecked reads m whole (a listing holds summaries only) and refuses one this host could not
// authenticate: verify and test-restore are evidence, so they never vouch for a manifest unchecked.
func (e *Engine) loadChecked(ctx context.Context, m *manifest.Manifest) (*manifest.Manifest, error) {
	m, err := e.Repo.LoadManifest(ctx, m)
	if err != nil {
		return nil, err
	}
	if m.Auth == manifest.AuthUnchecked {
		return nil, e.Repo.RequireKey("checking a snapshot")
	}
	return m, nil
}

// streamCatalogue is a snapshot's catalogue for the sources' restore and test-restore plans: for a
// streamed catalogue an iterator (each Each reads the catalogue objects again, one record at a time,
// checked as manifest.EachItem says), after a check that the identities open it; for an older
// inline one, the catalogue decrypted whole as before.
func (e *Engine) streamCatalogue(ctx context.Context, m *manifest.Manifest, ids []age.Identity) (*manifest.Catalogue, error) {
	if !m.Streamed() {
		return OpenCatalogue(m, ids)
	}
	if len(ids) == 0 {
		return nil, fmt.Errorf("%w: restoring needs an identity: set --identity-file or CFBACKUP_IDENTITY_FILE", ErrKey)
	}
	if err := m.CheckIdentity(ctx, e.Repo.Store, ids); err != nil {
		return nil, keyErr(err)
	}
	cat := m.Stream(ctx, e.Repo.Store, ids)
	return cat.Wrap(func(sel *manifest.Selection, fn func(manifest.Item) error) error {
		return keyErr(cat.EachSelected(sel, fn))
	}), nil
}

// OpenCatalogue decrypts a snapshot's catalogue, classifying key errors.
func OpenCatalogue(m *manifest.Manifest, ids []age.Identity) (*manifest.Catalogue, error) {
	if len(ids) == 0 {
		return nil, fmt.Errorf("%w: restoring needs an identity: set --identity-file or CFBACKUP_IDENTITY_FILE", ErrKey)
	}
	c, err := m.OpenCatalogue(ids)
	if err != nil {
		return nil, keyErr(err)
	}
	return c, nil
}

func keyErr(err error) error {
	var nm *age.NoIdentityMatchError
	if errors.As(err, &nm) {
		return fmt.Errorf("%w: the identity does not open this repository's data (wrong key file?): %v", ErrKey, err)
	}
	return err
}

// SourcesOf lists a snapshot's sources of one component, sorted by name.
func SourcesOf(m *manifest.Manifest, component string) []manifest.Source {
	return source.SourcesOf(m, component)
}

func hostname() string {
	h, _ := os.Hostname()
	return h
}

func actor(explicit string) string {
	if explicit != "" {
		return explicit
	}
	if a := os.Getenv("CFBACKUP_ACTOR"); a != "" {
		return a
	}
	name := "unknown"
	if u, err := user.Current(); err == nil {
		name = u.Username
	}
	return name + "@" + hostname()
}

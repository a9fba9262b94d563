package r2

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/cfbackup/cfbackup/pkg/archive"
	"github.com/cfbackup/cfbackup/pkg/errclass"
	"github.com/cfbackup/cfbackup/pkg/layout"
	"github.com/cfbackup/cfbackup/pkg/manifest"
	"github.com/cfbackup/cfbackup/pkg/source"
	"github.com/cfbackup/cfbackup/pkg/store"
)

// Resume. While a bucket is backed up, every segment whose upload completed is reported by the
// archive writer (archive.Writer.OnSegment); the objects whose every chunk lies in completed segments
// are then written to a journal object, journal/<snapshot-id>/<bucket>/<seq>.idx, encrypted like the
// incremental index (docs/FORMAT.md, "Journal"). A backup that never commits (cancelled, killed,
// failed) leaves its journal and those segments behind. The next backup of the bucket reads the
// journals of such runs written after its parent snapshot and reuses an entry like a parent index
// entry — same key, size and ETag — provided its segments still exist with their recorded size. It
// then references those segments, so only what is missing is downloaded. Once a backup commits, its
// own journal and the journals it read are deleted; prune deletes any journal left for longer than
// its grace period, and the unreferenced segments with it.

// JournalPrefix is where resume journals are stored.
const JournalPrefix = layout.Journals

// JournalVersion is the JSON journal's version field.
const JournalVersion = 1

const journalMagic = "CFBR2JN1"

// journalInterval is how often the capture loop writes journal entries for objects settled after
// their segment completed (segment completions write at once).
const journalInterval = 2 * time.Second

// JournalKey is where the seq-th journal object of a run's bucket is stored.
func JournalKey(snapshotID, bucket string, seq int) string {
	return layout.JournalKey(snapshotID, bucket, seq)
}

// Journal is one decrypted journal object: objects stored in completed segments by a run that may
// not have committed, with those segments' plaintext descriptions (normally in a manifest).
type Journal struct {
	Version  int       `json:"version"`
	Snapshot string    `json:"snapshot"`
	Bucket   string    `json:"bucket"`
	Seq      int       `json:"seq"`
	Time     time.Time `json:"time"`
	// Entries are keyed like the index's (see indexKeys.entryID).
	Entries  map[string]manifest.Item       `json:"entries"`
	Segments map[string]archive.SegmentInfo `json:"segments"`
}

func (k indexKeys) sealJournal(j *Journal) ([]byte, error) { return k.sealJSON(journalMagic, j) }

// ErrJournal: a journal cannot be read with this writer secret (another secret, or damage).
var ErrJournal = errclass.New(errclass.Failure, "resume journal unreadable")

func (k indexKeys) openJournal(b []byte) (*Journal, error) {
	var j Journal
	if err := k.openJSON(b, journalMagic, "an r2 journal", ErrJournal, &j); err != nil {
		return nil, err
	}
	if j.Version != JournalVersion {
		return nil, fmt.Errorf("%w: version %d, this cfbackup reads %d", ErrJournal, j.Version, JournalVersion)
	}
	return &j, nil
}

// resumer is one bucket capture's view of resume: the journals of earlier uncommitted runs it may
// reuse from, and the journal this run writes. A nil *resumer (no writer secret) does nothing.
type resumer struct {
	ctx    context.Context
	st     store.Store
	ik     indexKeys
	bucket string
	self   string
	log    *slog.Logger
	now    func() time.Time

	// from earlier runs
	prior   map[string]manifest.Item
	segs    map[string]archive.SegmentInfo
	present map[string]bool // segment key → stored with its recorded size (Stat, cached)
	read    []string        // journal keys read: superseded once this run commits
	runs    map[string]bool

	// this run's journal
	mu      sync.Mutex
	done    map[string]archive.SegmentInfo
	waiting []manifest.Item
	dropped int64 // settled objects not journaled (journalMaxWaiting)
	seq     int
	last    time.Time
	warned  bool
	writeMu sync.Mutex
}

// newResumer reads the journals of earlier uncommitted runs of the bucket written after the parent
// snapshot (any, when there is none), subscribes to the session's completed segments to keep this
// run's journal, and deletes the journals once the snapshot commits. Problems reading journals are
// warnings: the backup then downloads what it would have reused.
func newResumer(ctx context.Context, s *source.Session, bucket string, ik indexKeys, parent *parentIndex, log *slog.Logger) *resumer {
	r := &resumer{ctx: ctx, st: s.Repo.Store, ik: ik, bucket: bucket, self: s.SnapshotID, log: log, now: time.Now,
		prior: map[string]manifest.Item{}, segs: map[string]archive.SegmentInfo{}, present: map[string]bool{},
		runs: map[string]bool{}, done: map[string]archive.SegmentInfo{}}
	r.last = r.now()
	var after time.Time
	if parent != nil {
		after = parent.time
	}
	if err := r.load(ctx, after); err != nil {
		if ctx.Err() == nil {
			log.Warn("cannot read the resume journals: objects of interrupted backups are downloaded again", "bucket", bucket, "err", err)
		}
		r.prior, r.read = map[string]manifest.Item{}, nil
	}
	if n := len(r.prior); n > 0 {
		runs := make([]string, 0, len(r.runs))
		for id := range r.runs {
			runs = append(runs, id)
		}
		sort.Strings(runs)
		log.Info("resuming from interrupted backups", "bucket", bucket, "runs", strings.Join(runs, ","), "journaled_objects", n)
	}
	s.Writer.OnSegment(r.segmentDone)
	s.AfterCommit(r.commit)
	return r
}

// load reads every readable journal of the bucket from runs without a manifest, oldest first, so a
// newer run's entry for a key replaces an older one.
func (r *resumer) load(ctx context.Context, after time.Time) error {
	committed := map[string]bool{}
	if err := r.st.List(ctx, layout.Snapshots, func(oi store.ObjectInfo) error {
		if id := manifest.IDFromKey(oi.Key); id != "" {
			committed[id] = true
		}
		return nil
	}); err != nil {
		return err
	}
	var keys []string
	if err := r.st.List(ctx, JournalPrefix, func(oi store.ObjectInfo) error {
		run, bucket, ok := layout.ParseJournalKey(oi.Key)
		if ok && bucket == r.bucket && run != r.self && !committed[run] {
			keys = append(keys, oi.Key)
		}
		return nil
	}); err != nil {
		return err
	}
	var js []*Journal
	for _, k := range keys {
		b, err := readSmall(ctx, r.st, k)
		if err != nil {
			if errors.Is(err, store.ErrNotFound) {
				continue // deleted meanwhile (its run committed, or prune)
			}
			return err
		}
		j, err := r.ik.openJournal(b)
		if err == nil && j.Bucket != r.bucket {
			err = fmt.Errorf("%w: journal of bucket %q", ErrJournal, j.Bucket)
		}
		if err != nil {
			r.log.Warn("ignoring a resume journal", "key", k, "err", err)
			continue
		}
		r.read = append(r.read, k)
		if !j.Time.After(after) {
			continue // older than the parent snapshot: superseded
		}
		js = append(js, j)
	}
	sort.SliceStable(js, func(a, b int) bool {
		if !js[a].Time.Equal(js[b].Time) {
			return js[a].Time.Before(js[b].Time)
		}
		return js[a].Seq < js[b].Seq
	})
	for _, j := range js {
		for id, g := range j.Segments {
			r.segs[id] = g
		}
		for id, it := range j.Entries {
			r.prior[id] = it
		}
		if len(j.Entries) > 0 {
			r.runs[j.Snapshot] = true
		}
	}
	return nil
}

// readSmall reads a whole side object (at most 1 GiB).
func readSmall(ctx context.Context, st store.Store, key string) ([]byte, error) {
	rc, err := st.Open(ctx, key, 0, -1)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(io.LimitReader(store.ContextReader(ctx, rc), 1<<30))
}

// reuse returns an interrupted run's entry for the object when key, size and ETag match and every
// segment it points into is still stored with its recorded size; those segments are referenced.
func (r *resumer) reuse(ctx context.Context, s *source.Session, ik indexKeys, bucket string, ob Object) (manifest.Item, bool) {
	if r == nil || len(r.prior) == 0 {
		return manifest.Item{}, false
	}
	it, ok := r.prior[ik.entryID(bucket, ob.Key)]
	if !ok || it.Object == nil || it.Object.Key != ob.Key || it.Size != ob.Size || it.Object.ETag != ob.ETag || len(it.Chunks) == 0 {
		return manifest.Item{}, false
	}
	var segs []archive.SegmentInfo
	for _, c := range it.Chunks {
		g, ok := r.segs[c.Segment]
		if !ok || !r.stored(ctx, g) {
			return manifest.Item{}, false
		}
		segs = append(segs, g)
	}
	s.Reference(segs...)
	return it, true
}

func (r *resumer) stored(ctx context.Context, g archive.SegmentInfo) bool {
	if ok, seen := r.present[g.Key]; seen {
		return ok
	}
	fi, err := r.st.Stat(ctx, g.Key)
	ok := err == nil && fi.Size == g.Size && g.Key == archive.SegmentKey(g.ID)
	if !ok && ctx.Err() == nil {
		r.log.Warn("a resume journal's segment is missing or damaged: its objects are downloaded again", "bucket", r.bucket, "segment", g.Key, "err", err)
	}
	if ctx.Err() == nil {
		r.present[g.Key] = ok
	}
	return ok
}

// settled records an object whose place in the archive is known; it is journaled once all its
// segments have completed. Called from the capture loop.
func (r *resumer) settled(it manifest.Item) {
	if r == nil {
		return
	}
	r.mu.Lock()
	if len(r.waiting) >= journalMaxWaiting {
		// The open segment holds more objects than a journal keeps waiting for it (small objects in
		// a large segment): these are not journaled, so memory stays bounded; an interrupted run
		// downloads them again.
		if r.dropped++; r.dropped == 1 {
			r.log.Info("resume journal: the open segment holds many small objects; the next ones are not journaled until it completes", "bucket", r.bucket, "waiting", len(r.waiting))
		}
		r.mu.Unlock()
		return
	}
	r.waiting = append(r.waiting, it)
	due := r.now().Sub(r.last) >= journalInterval
	r.mu.Unlock()
	if due {
		r.flush()
	}
}

// journalMaxWaiting bounds the objects held for the journal until their segment completes. A
// segment (512 MiB by default) usually completes every few thousand objects; only with very small
// objects does the bound apply, and then the objects beyond it are simply not resumable.
var journalMaxWaiting = 16384

// segmentDone is the writer's OnSegment callback.
func (r *resumer) segmentDone(g archive.SegmentInfo) {
	r.mu.Lock()
	r.done[g.ID] = g
	r.mu.Unlock()
	r.flush()
}

// flush writes one journal object with every waiting object whose segments have all completed.
func (r *resumer) flush() {
	r.writeMu.Lock()
	defer r.writeMu.Unlock()
	r.mu.Lock()
	r.last = r.now()
	j := &Journal{Version: JournalVersion, Snapshot: r.self, Bucket: r.bucket, Time: r.now().UTC(),
		Entries: map[string]manifest.Item{}, Segments: map[string]archive.SegmentInfo{}}
	keep := r.waiting[:0]
	for _, it := range r.waiting {
		ready := true
		for _, c := range it.Chunks {
			if _, ok := r.done[c.Segment]; !ok {
				ready = false
				break
			}
		}
		if !ready {
			keep = append(keep, it)
			continue
		}
		j.Entries[r.ik.entryID(r.bucket, it.Object.Key)] = it
		for _, c := range it.Chunks {
			j.Segments[c.Segment] = r.done[c.Segment]
		}
	}
	clear(r.waiting[len(keep):])
	r.waiting = keep
	if len(j.Entries) == 0 || r.ctx.Err() != nil {
		r.mu.Unlock()
		return
	}
	r.seq++
	j.Seq = r.seq
	r.mu.Unlock()
	b, err := r.ik.sealJournal(j)
	if err == nil {
		err = r.st.Put(r.ctx, JournalKey(r.self, r.bucket, j.Seq), bytes.NewReader(b), store.PutOptions{IfNotExists: true})
	}
	if err != nil && r.ctx.Err() == nil && !r.warned {
		r.warned = true
		r.log.Warn("cannot write the resume journal: if this backup is interrupted, the next one downloads these objects again", "bucket", r.bucket, "err", err)
	}
}

// commit runs after the manifest is saved: this run's journal and the ones it read are no longer
// needed (the new snapshot is every later backup's parent).
func (r *resumer) commit(ctx context.Context, _ *manifest.Manifest) {
	keys := append([]string(nil), r.read...)
	err := r.st.List(ctx, layout.JournalPrefix(r.self, r.bucket), func(oi store.ObjectInfo) error {
		keys = append(keys, oi.Key)
		return nil
	})
	for _, k := range keys {
		if derr := r.st.Delete(ctx, k); derr != nil && !errors.Is(derr, store.ErrNotFound) && err == nil {
			err = derr
		}
	}
	if err != nil {
		r.log.Warn("could not delete resume journals (prune removes them after its grace period)", "bucket", r.bucket, "err", err)
	}
}

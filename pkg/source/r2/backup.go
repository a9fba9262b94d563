package r2

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cfbackup/cfbackup/pkg/archive"
	"github.com/cfbackup/cfbackup/pkg/errclass"
	"github.com/cfbackup/cfbackup/pkg/layout"
	"github.com/cfbackup/cfbackup/pkg/manifest"
	"github.com/cfbackup/cfbackup/pkg/repo"
	"github.com/cfbackup/cfbackup/pkg/source"
)

// Defaults of a bucket backup.
const (
	// DefaultConcurrency is the number of object GETs in flight.
	DefaultConcurrency = 8
	// SmallObject is the largest object prefetched into memory by the GET workers; larger objects are
	// streamed straight into the archive writer when their turn comes.
	SmallObject = 4 << 20
	// PrefetchBudget is the least the prefetched objects (fetched, being fetched, waiting for the
	// compressors) may hold; the budget is prefetchBudget(workers).
	PrefetchBudget = 24 << 20
	// PrefetchPerWorker is the budget each GET worker brings: one SmallObject being fetched and
	// 2 MiB of objects fetched and waiting for the compressors. Over a slow link an object holds
	// its share for as long as it takes to arrive (a 4 MiB object at 12.5 MB/s a connection:
	// 0.34 s), so filling a link takes as many bytes in flight as the link carries in that time;
	// 24 MiB for 8 workers kept them waiting for budget with a 50 MB/s link about half used;
	// 48 MiB used about 70 % of it (docs/BENCHMARKS.md "The slow-link backup and the restore's
	// buffers").
	PrefetchPerWorker = 6 << 20
	// MaxPrefetchBudget caps the budget of many workers.
	MaxPrefetchBudget = 128 << 20
)

// prefetchBudget is the prefetch budget of a backup with conc GET workers: PrefetchPerWorker each,
// at least PrefetchBudget, at most MaxPrefetchBudget. It bounds the memory of prefetched objects
// by the workers, never by the data; the backup's memory limit counts it (setMemoryLimit).
func prefetchBudget(conc int) int64 {
	return min(max(PrefetchBudget, int64(conc)*PrefetchPerWorker), MaxPrefetchBudget)
}

// BackupOptions select what one bucket backup captures.
type BackupOptions struct {
	Bucket string
	Prefix string
	// Concurrency is the number of parallel GETs (default DefaultConcurrency).
	Concurrency int
	// Strict fails the backup when an object vanishes between listing and GET (default: skip it
	// with a warning and count it in the source summary).
	Strict bool
	// WriterSecret keys the incremental index. Without it every object is downloaded and no index is
	// written (a warning says so); the backup is still complete.
	WriterSecret []byte
	Log          *slog.Logger
	// Progress receives bytes as they are read from the bucket (or reused).
	Progress func(int)
	// PrefetchBudget overrides the prefetch budget, prefetchBudget(Concurrency) (tests).
	PrefetchBudget int64
	// BeforeGet is called before each object GET (tests delete objects or cancel here).
	BeforeGet func(key string)
	// Keys, when set, limits the backup to these keys (under Prefix): a restore's safety snapshot of
	// exactly the objects it overwrites. Keys absent from the bucket are left out.
	Keys []string
}

// SafetyLabel marks a snapshot that holds only the objects a restore overwrote; it is never the
// parent of an incremental backup (its index covers those objects only).
const SafetyLabel = repo.SafetyLabel

// Stats are counters of one bucket backup, for summaries and benchmarks.
type Stats struct {
	Objects, Reused, Skipped, Fetched int64
	Bytes, FetchedBytes               int64
	// GETs counts object body GETs (atomically updated): one per object fetched (and per retry).
	GETs int64
	// RangeGETs counts the further ranged GETs of large objects read in chunks (atomically updated).
	RangeGETs int64
	// Resumed counts the objects (also in Reused) taken from an interrupted backup's journal.
	Resumed int64
}

// IndexKey is where a snapshot's index of one bucket is stored.
func IndexKey(snapshotID, bucket string) string {
	return layout.R2IndexKey(snapshotID, bucket)
}

// Backup captures one bucket into the session: lists it, reuses unchanged objects from the parent
// snapshot's index, fetches the rest in parallel in key order, writes this snapshot's index and adds
// the source and its items.
func Backup(ctx context.Context, c *Client, s *source.Session, o BackupOptions) (Stats, error) {
	bb := &bucketBackup{c: c, s: s, o: o, log: o.Log, progress: o.Progress}
	if bb.log == nil {
		bb.log = slog.New(slog.DiscardHandler)
	}
	if bb.progress == nil {
		bb.progress = func(int) {}
	}
	conc := o.Concurrency
	if conc <= 0 {
		conc = DefaultConcurrency
	}
	ls, err := spoolListing(ctx, c, o, s.Shard)
	if err != nil {
		return bb.st, fmt.Errorf("list bucket %s: %w", o.Bucket, err)
	}
	defer ls.remove()
	bb.ls = ls
	if err := bb.incremental(ctx); err != nil {
		return bb.st, err
	}
	defer bb.parent.close()
	if err := bb.startIndex(); err != nil {
		return bb.st, err
	}
	defer bb.dropIndex()
	win := make([]Object, 0, min(int64(backupWindow), ls.n))
	err = ls.each(func(ob Object) error {
		win = append(win, ob)
		if len(win) < backupWindow {
			return nil
		}
		err := bb.window(ctx, win, conc)
		clear(win)
		win = win[:0]
		return err
	})
	if err == nil && len(win) > 0 {
		err = bb.window(ctx, win, conc)
	}
	if err != nil {
		return bb.stopped(), err
	}
	err = bb.finish(ctx) // before stopped(): finish counts the objects
	return bb.stopped(), err
}

// backupWindow is how many listed objects a bucket backup works on at once: their reuse decisions,
// fetches and items. Memory is O(window) whatever the bucket's size; the GET pipeline drains at
// each window's end, which costs little at this size.
var backupWindow = 16384

// window backs up one window of the listing (in key order) and hands its items, in that order, to
// the catalogue and the index.
func (bb *bucketBackup) window(ctx context.Context, objs []Object, conc int) error {
	bb.objs = objs
	fetch := bb.reuse(ctx)
	bb.pf = newPrefetcher(ctx, bb.c, bb.o, bb.objs, fetch, conc, &bb.st)
	// Objects go into the archive as their GETs complete, not in key order: one slow object no
	// longer holds the budget of every object fetched after it (docs/R2.md "Backing up"). Items
	// keep their place in the window (bb.items[i]), so the catalogue and the index stay in key order.
	for range fetch {
		n, ok := bb.pf.readyClaim()
		if !ok {
			return bb.pf.ctx.Err()
		}
		skipped, err := bb.fetch(ctx, n, fetch[n])
		if err != nil {
			return err
		}
		if skipped {
			continue
		}
		if err := bb.settle(256); err != nil {
			return err
		}
	}
	if err := bb.settle(0); err != nil {
		return err
	}
	bb.pf.stop()
	out := bb.items[:0]
	for _, it := range bb.items {
		if it.Object != nil {
			out = append(out, it)
		}
	}
	bb.st.Objects += int64(len(out))
	if err := bb.addIndex(out); err != nil {
		return fmt.Errorf("write the incremental index: %w", err)
	}
	bb.s.AddItems(out...)
	clear(bb.items)
	bb.items, bb.objs = nil, nil
	return nil
}

// bucketBackup is one bucket's backup in progress.
type bucketBackup struct {
	c        *Client
	s        *source.Session
	o        BackupOptions
	log      *slog.Logger
	progress func(int)
	st       Stats

	ls     *listSpool
	objs   []Object // the window being backed up
	ik     indexKeys
	parent *parentIndex
	res    *resumer
	items  []manifest.Item // by position in the window; Object nil: skipped
	pf     *prefetcher
	queue  []waitingItem
	ix     *indexSpool // this snapshot's index being written (nil without the writer secret)
}

type waitingItem struct {
	i int
	p *archive.PendingItem
}

// stopped reads the counters only after every prefetch worker has ended (they update GETs).
func (bb *bucketBackup) stopped() Stats {
	if bb.pf != nil {
		bb.pf.stop()
	}
	return bb.st
}

// incremental loads the parent snapshot's index and the resume journal when this host has the
// writer secret; without it, or with an unusable index, every object is backed up in full.
func (bb *bucketBackup) incremental(ctx context.Context) error {
	if len(bb.o.WriterSecret) == 0 {
		bb.log.Warn("no writer secret: backing up every object in full and writing no incremental index (set CFBACKUP_WRITER_KEY_FILE)", "bucket", bb.o.Bucket)
		return nil
	}
	bb.ik = deriveKeys(bb.o.WriterSecret)
	parent, err := loadParent(ctx, bb.s, bb.o.Bucket, bb.o.Prefix, bb.ik, bb.log)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		bb.log.Warn("cannot use the parent snapshot's index: backing up every object in full", "bucket", bb.o.Bucket, "err", err)
		parent = nil
	}
	bb.parent = parent
	bb.res = newResumer(ctx, bb.s, bb.o.Bucket, bb.ik, parent, bb.log)
	return nil
}

// reuse takes unchanged objects from the parent's index or the resume journal and returns the
// indexes of the objects to fetch.
func (bb *bucketBackup) reuse(ctx context.Context) []int {
	bb.items = make([]manifest.Item, len(bb.objs))
	var fetch []int
	for i, ob := range bb.objs {
		if bb.parent != nil {
			if it, ok := bb.parent.reuse(ob); ok {
				bb.s.Reference(bb.parent.segsOf(it)...)
				bb.reused(i, it, false)
				continue
			}
		}
		if it, ok := bb.res.reuse(ctx, bb.s, bb.ik, bb.o.Bucket, ob); ok {
			bb.reused(i, it, true)
			continue
		}
		fetch = append(fetch, i)
	}
	return fetch
}

func (bb *bucketBackup) reused(i int, it manifest.Item, resumed bool) {
	it.Source = bb.o.Bucket
	bb.items[i] = it
	bb.st.Reused++
	if resumed {
		bb.st.Resumed++
	}
	bb.st.Bytes += it.Size
	bb.progress(int(it.Size))
}

// settle waits for queued items until at most keep remain; items already placed are settled early
// too, so the resume journal can list them.
func (bb *bucketBackup) settle(keep int) error {
	for len(bb.queue) > keep || (len(bb.queue) > 0 && bb.res != nil && bb.queue[0].p.Ready()) {
		w := bb.queue[0]
		bb.queue = bb.queue[1:]
		ref, err := w.p.Wait()
		if err != nil {
			return err
		}
		bb.items[w.i].ItemRef = ref
		bb.res.settled(bb.items[w.i])
	}
	return nil
}

// fetch writes the n-th object to fetch (objs[i]) into the archive, retrying twice; an object
// deleted since the listing is skipped (reported true) unless --strict.
func (bb *bucketBackup) fetch(ctx context.Context, n, i int) (bool, error) {
	ob := bb.objs[i]
	name := ItemName(bb.o.Bucket, bb.ls.path(ob.Key))
	var p *archive.PendingItem
	var meta manifest.ObjectMeta
	var err error
	for attempt := 0; ; attempt++ {
		var size int64
		p, meta, size, err = bb.write(ctx, n, ob, name)
		if err == nil {
			bb.st.Fetched++
			bb.st.FetchedBytes += size
			bb.st.Bytes += size
			break
		}
		if errors.Is(err, ErrVanished) || ctx.Err() != nil || attempt >= 2 || !retryable(err) {
			break
		}
		bb.log.Warn("retrying object", "bucket", bb.o.Bucket, "err", err)
		bb.pf.refetch(n, errors.Is(err, ErrChanged))
	}
	if errors.Is(err, ErrVanished) && ctx.Err() == nil {
		if bb.o.Strict {
			return false, fmt.Errorf("%w: %s (--strict): %v", errclass.NotFound, ErrVanished, err)
		}
		bb.log.Warn("object deleted between listing and GET: skipped", "bucket", bb.o.Bucket, "err", err)
		bb.st.Skipped++
		return true, nil
	}
	if err != nil {
		if ctx.Err() != nil {
			return false, ctx.Err()
		}
		return false, fmt.Errorf("back up bucket %s: %w", bb.o.Bucket, err)
	}
	meta.Key = ob.Key
	m := meta
	bb.items[i] = manifest.Item{Component: Component, Source: bb.o.Bucket, Kind: "object", Object: &m}
	bb.queue = append(bb.queue, waitingItem{i, p})
	return false, nil
}

// write hands one object to the archive writer from what the prefetcher has: ranged GETs under way
// (large), nothing (ranges refused, or grown since listing: streamed now) or a buffer (small).
func (bb *bucketBackup) write(ctx context.Context, n int, ob Object, name string) (*archive.PendingItem, manifest.ObjectMeta, int64, error) {
	res := bb.pf.result(n)
	switch {
	case res.err != nil:
		return nil, manifest.ObjectMeta{}, 0, res.err
	case res.body != nil:
		meta, size := res.body.meta, res.body.size
		p, err := bb.s.Writer.WriteItemAsync(name, &exactReader{r: res.body, left: size, progress: bb.progress})
		res.body.Close()
		return p, meta, size, err
	case res.buf == nil:
		atomic.AddInt64(&bb.st.GETs, 1)
		if bb.o.BeforeGet != nil {
			bb.o.BeforeGet(ob.Key)
		}
		body, size, meta, err := bb.c.Get(ctx, bb.o.Bucket, ob.Key)
		if err != nil {
			return nil, meta, size, err
		}
		p, err := bb.s.Writer.WriteItemAsync(name, &exactReader{r: body, left: size, progress: bb.progress})
		body.Close()
		return p, meta, size, err
	default:
		size := int64(len(res.buf.b)) // before the write: the writer gives the buffer back when done
		bb.progress(int(size))
		// The writer compresses the prefetch buffer in place and gives it back when done.
		buf := res.buf
		p, err := bb.s.Writer.WriteItemBytes(name, buf.b, func() { bb.pf.release(buf) })
		return p, res.meta, size, err
	}
}

// finish stores this snapshot's incremental index (with the writer secret) and adds the source; the
// items went to the session window by window.
func (bb *bucketBackup) finish(ctx context.Context) error {
	o := bb.o
	src := manifest.Source{Component: Component, ID: o.Bucket, Name: o.Bucket, Items: bb.st.Objects, Size: bb.st.Bytes, Reused: bb.st.Reused, Skipped: bb.st.Skipped, Prefix: o.Prefix}
	if bb.parent != nil {
		src.Parent = bb.parent.snapshot
	}
	if bb.ix != nil {
		key := IndexKey(bb.s.SnapshotID, o.Bucket)
		if err := bb.storeIndex(ctx, key); err != nil {
			return fmt.Errorf("store the incremental index: %w", err)
		}
		src.Index = key
	}
	bb.s.AddSource(src)
	return nil
}

// indexSpool is this snapshot's index (format 2) written page by page into a temporary file as the
// windows' items arrive (in key order), then stored: memory holds one page.
type indexSpool struct {
	f  *os.File
	bw *bufio.Writer
	w  *indexWriter
	v1 []manifest.Item // writeV1Index (tests) only
}

// startIndex opens the index spool when this host has the writer secret and the listing is sorted
// (the index's order); an unsorted listing gets no index, and the next backup is a full one.
func (bb *bucketBackup) startIndex() error {
	if len(bb.o.WriterSecret) == 0 {
		return nil
	}
	if !bb.ls.sorted && !writeV1Index {
		bb.log.Warn("the bucket's listing is not in key order: no incremental index is written (the next backup downloads every object)", "bucket", bb.o.Bucket)
		return nil
	}
	f, err := os.CreateTemp("", "cfbackup-r2-index-*")
	if err != nil {
		return err
	}
	ix := &indexSpool{f: f, bw: bufio.NewWriterSize(f, 256<<10)}
	if !writeV1Index {
		if ix.w, err = bb.ik.newIndexWriter(ix.bw, bb.o.Bucket); err != nil {
			f.Close()
			os.Remove(f.Name())
			return err
		}
	}
	bb.ix = ix
	return nil
}

func (bb *bucketBackup) dropIndex() {
	if bb.ix != nil && bb.ix.f != nil {
		bb.ix.f.Close()
		os.Remove(bb.ix.f.Name())
		bb.ix.f = nil
	}
}

func (bb *bucketBackup) addIndex(items []manifest.Item) error {
	if bb.ix == nil {
		return nil
	}
	if writeV1Index {
		bb.ix.v1 = append(bb.ix.v1, items...)
		return nil
	}
	for _, it := range items {
		if err := bb.ix.w.Add(it); err != nil {
			return err
		}
	}
	return nil
}

// storeIndex finishes the index and stores it as the snapshot's side object.
func (bb *bucketBackup) storeIndex(ctx context.Context, key string) error {
	if writeV1Index { // tests: a parent written by cfbackup before format 2
		ix := &Index{Version: IndexVersion, Bucket: bb.o.Bucket, Entries: make(map[string]manifest.Item, len(bb.ix.v1))}
		for _, it := range bb.ix.v1 {
			ix.Entries[bb.ik.entryID(bb.o.Bucket, it.Object.Key)] = it
		}
		b, err := bb.ik.seal(ix)
		if err != nil {
			return err
		}
		return bb.s.PutObject(ctx, key, b)
	}
	if err := bb.ix.w.Close(); err != nil {
		return err
	}
	if err := bb.ix.bw.Flush(); err != nil {
		return err
	}
	return bb.s.PutObjectFile(ctx, key, bb.ix.f)
}

// writeV1Index makes backups write format 1 (tests of reading what earlier versions wrote).
var writeV1Index = false

func retryable(err error) bool {
	return !errors.Is(err, ErrAccessDenied) && !errors.Is(err, ErrNoSuchBucket) && !errors.Is(err, archive.ErrClosed)
}

// exactReader fails unless the body has exactly the length the GET announced.
type exactReader struct {
	r        io.Reader
	left     int64
	progress func(int)
}

func (e *exactReader) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	e.left -= int64(n)
	if n > 0 {
		e.progress(n)
	}
	if e.left < 0 {
		return n, fmt.Errorf("object body longer than its Content-Length")
	}
	if err == io.EOF && e.left > 0 {
		return n, io.ErrUnexpectedEOF
	}
	return n, err
}

// parentIndex is the newest earlier snapshot of the bucket and its index, read as a stream in key
// order alongside the (sorted) listing: a merge-join that holds one index page, never a map of
// the bucket.
type parentIndex struct {
	snapshot string
	time     time.Time
	body     io.Closer
	stream   entryStream
	cur      *manifest.Item // the first entry not yet passed; nil at the end
	failed   bool
	log      *slog.Logger
	segs     map[string]archive.SegmentInfo
}

// lookup advances the index to key and returns its entry. Keys are asked in ascending order; one
// asked out of order (a listing that is not sorted) is simply not found, and fetched again. An index
// that fails part-way is a warning: the entries already read were authenticated, the objects after
// it are fetched.
func (p *parentIndex) lookup(key string) (manifest.Item, bool) {
	for !p.failed && p.cur != nil && p.cur.Object.Key < key {
		p.advance()
	}
	if p.failed || p.cur == nil || p.cur.Object.Key != key {
		return manifest.Item{}, false
	}
	return *p.cur, true
}

func (p *parentIndex) advance() {
	it, more, err := p.stream.Next()
	switch {
	case err != nil:
		p.log.Warn("the parent snapshot's index failed part-way: the objects after this point are fetched in full", "snapshot", p.snapshot, "err", err)
		p.failed, p.cur = true, nil
	case !more:
		p.cur = nil
	default:
		p.cur = &it
	}
}

func (p *parentIndex) close() {
	if p != nil && p.body != nil {
		p.body.Close()
		p.body = nil
	}
}

func (p *parentIndex) reuse(ob Object) (manifest.Item, bool) {
	it, ok := p.lookup(ob.Key)
	if !ok || it.Object == nil || it.Object.Key != ob.Key || it.Size != ob.Size || it.Object.ETag != ob.ETag || len(it.Chunks) == 0 {
		return manifest.Item{}, false
	}
	for i, c := range it.Chunks {
		g, ok := p.segs[c.Segment]
		if !ok {
			return manifest.Item{}, false
		}
		it.Chunks[i].Segment = g.ID // one string per segment, not one per object
	}
	// Share the listing's strings and the constants: at millions of objects every copy counts.
	it.Component, it.Kind, it.Object.Key, it.Object.ETag = Component, "object", ob.Key, ob.ETag
	return it, true
}

func (p *parentIndex) segsOf(it manifest.Item) []archive.SegmentInfo {
	var out []archive.SegmentInfo
	for _, c := range it.Chunks {
		out = append(out, p.segs[c.Segment])
	}
	return out
}

// loadParent finds the newest snapshot with this bucket and opens its index; nil when there is none.
// The parent covers the prefix being backed up when it can: a snapshot of only --prefix P as
// the parent of a whole-bucket backup would make it fetch everything outside P again.
func loadParent(ctx context.Context, s *source.Session, bucket, prefix string, ik indexKeys, log *slog.Logger) (*parentIndex, error) {
	r := s.Repo
	snaps, err := s.Snapshots(ctx)
	if err != nil {
		return nil, err
	}
	var pick []*manifest.Manifest
	for _, m := range snaps {
		src, ok := m.SourceByName(Component, bucket)
		if _, partial := m.Labels[SafetyLabel]; ok && !partial && strings.HasPrefix(prefix, src.Prefix) {
			pick = append(pick, m)
			break
		}
	}
	if len(pick) == 0 {
		pick = snaps
	}
	for _, m := range pick {
		src, ok := m.SourceByName(Component, bucket)
		if _, partial := m.Labels[SafetyLabel]; !ok || partial {
			continue
		}
		if src.Index == "" {
			return nil, fmt.Errorf("snapshot %s has no index of bucket %s (it was written without the writer secret)", m.ID, bucket)
		}
		body, err := source.OpenSnapshotObject(ctx, r.Store, m, src.Index)
		if err != nil {
			return nil, err
		}
		stream, err := ik.openIndexStream(body, bucket)
		if err != nil {
			body.Close()
			return nil, fmt.Errorf("index %s: %w", src.Index, err)
		}
		p := &parentIndex{snapshot: m.ID, time: m.Time, body: body, stream: stream, log: log, segs: m.SegmentMap()}
		p.advance()
		if p.failed {
			body.Close()
			return nil, fmt.Errorf("index %s could not be read", src.Index)
		}
		return p, nil
	}
	return nil, nil
}

// prefetcher runs the GET workers: they claim objects in key order and, within PrefetchBudget, fetch
// small ones into buffers and start large ones as ranged GETs (rangedBody); the writer takes them in
// the order they are ready (readyClaim), so what holds the budget is the GETs in flight and the objects
// waiting for the compressors, not objects that finished early and wait behind a slow one.
type prefetcher struct {
	ctx    context.Context
	cancel context.CancelFunc
	c      *Client
	o      BackupOptions
	objs   []Object
	fetch  []int
	st     *Stats
	conc   int

	mu        sync.Mutex
	cond      *sync.Cond
	next      int
	turn      int // the claim whose turn it is to take budget
	budget    int64
	limit     int64 // the whole budget
	results   []chan fetched
	ready     chan int // the claims whose result is in results, in the order they were ready
	wg        sync.WaitGroup
	free      [][]byte
	freeBytes int64
	ranges    [][]byte // kept range buffers (cap RangeChunk), at most rangeKeepBytes
}

// freeListBytes bounds the prefetch buffers kept for reuse, but for range buffers (rangeKeepBytes).
// Which are kept matters more than how many: when a full list turned away whatever came back, most
// objects of a 1 GiB backup of mixed sizes were read into new buffers, and allocating, clearing and
// collecting them (and the runtime returning the memory to the OS under the backup's memory limit)
// cost ~0.5 CPU s a GiB (docs/BENCHMARKS.md "What bounds the rest"). The list keeps the largest
// (putFree), and a buffer serves an object of at least half its size (alloc), so a small object
// never pins a large buffer.
const freeListBytes = 16 << 20

// rangeKeepBytes bounds the range buffers kept for the next large object, apart from the free list:
// one large object's set (RangeStreams buffers of RangeChunk, all of one size, so any fits). When
// they shared the 8 MiB free list with small objects' buffers, most of a large object's four 4 MiB
// buffers were allocated anew, and clearing them (the runtime zeroes every large allocation) took
// 2.5 s of CPU in a 4 GiB backup (docs/R2.md "Benchmark"). The backup's memory limit counts them.
const rangeKeepBytes = RangeStreams * RangeChunk

type fetched struct {
	buf  *pbuf       // a small object's body
	body *rangedBody // a large object's, being fetched; both nil: the writer streams it with one GET
	meta manifest.ObjectMeta
	err  error
}

type pbuf struct {
	b    []byte
	cost int64
}

func newPrefetcher(ctx context.Context, c *Client, o BackupOptions, objs []Object, fetch []int, conc int, st *Stats) *prefetcher {
	ctx, cancel := context.WithCancel(ctx)
	budget := prefetchBudget(conc)
	if o.PrefetchBudget > 0 {
		budget = o.PrefetchBudget
	}
	p := &prefetcher{ctx: ctx, cancel: cancel, c: c, o: o, objs: objs, fetch: fetch, st: st, budget: budget, limit: budget, conc: conc,
		results: make([]chan fetched, len(fetch)), ready: make(chan int, len(fetch))}
	p.cond = sync.NewCond(&p.mu)
	for i := range p.results {
		p.results[i] = make(chan fetched, 1)
	}
	for w := 0; w < conc; w++ {
		p.wg.Add(1)
		go p.worker()
	}
	context.AfterFunc(ctx, func() {
		p.mu.Lock()
		p.cond.Broadcast()
		p.mu.Unlock()
	})
	return p
}

func cost(size int64) int64 { return max(size, 4<<10) }

func (p *prefetcher) worker() {
	defer p.wg.Done()
	for {
		// Claim the next object and its share of the budget in key order, so the writer (which
		// consumes in key order) always finds the next object fetched or being fetched.
		p.mu.Lock()
		if p.next >= len(p.fetch) || p.ctx.Err() != nil {
			p.mu.Unlock()
			return
		}
		n := p.next
		p.next++
		ob := p.objs[p.fetch[n]]
		// Budget is granted strictly in claim order (turn): were a later object to take it first,
		// the writer could wait forever for an earlier one that cannot get any. A large object
		// holds its range buffers' worth until the writer has read it.
		need := min(cost(ob.Size), p.limit)
		if ob.Size > SmallObject {
			need = p.rangeNeed()
		}
		for (p.turn != n || p.budget < need) && p.ctx.Err() == nil {
			p.cond.Wait()
		}
		p.budget -= need
		p.turn++
		p.cond.Broadcast()
		p.mu.Unlock()
		if ob.Size > SmallObject {
			p.results[n] <- p.getLarge(ob, need)
		} else {
			p.results[n] <- p.get(ob, need)
		}
		p.ready <- n
	}
}

// readyClaim waits for a claim whose result is ready and returns it; false once the prefetcher is stopped
// or its context ended. Each claim is returned once (a refetch's result is not announced again).
func (p *prefetcher) readyClaim() (int, bool) {
	select {
	case n := <-p.ready:
		return n, true
	case <-p.ctx.Done():
		return 0, false
	}
}

// rangeNeed is the budget a large object's range buffers take: RangeStreams chunks (no more
// streams than GET workers), fewer or smaller ones under a small budget.
func (p *prefetcher) rangeNeed() int64 {
	streams := int64(min(RangeStreams, p.conc))
	return min(streams*RangeChunk, p.limit)
}

// getLarge starts the ranged GETs of a large object into need bytes of buffers; the writer's Close
// of the body gives buffers and budget back. A server that ignores ranges, or an object now empty,
// makes the writer stream it instead.
func (p *prefetcher) getLarge(ob Object, need int64) fetched {
	if p.o.BeforeGet != nil {
		p.o.BeforeGet(ob.Key)
	}
	chunk := min(need, RangeChunk)
	bufs := make([][]byte, need/chunk)
	for i := range bufs {
		bufs[i] = p.allocRange(int(chunk))
	}
	giveBack := func(bufs [][]byte) { p.giveBack(bufs, need) }
	rb, ranged, err := startRanged(p.ctx, p.c, p.o.Bucket, ob.Key, bufs, &p.wg, &p.st.GETs, &p.st.RangeGETs, giveBack)
	if err != nil || !ranged {
		giveBack(bufs)
		if errors.Is(err, ErrRangeNotSatisfiable) {
			err = nil
		}
		return fetched{err: err}
	}
	return fetched{body: rb}
}

// giveBack returns a large object's budget and keeps its buffers for reuse (rangeKeepBytes, putFree).
func (p *prefetcher) giveBack(bufs [][]byte, need int64) {
	p.mu.Lock()
	p.budget += need
	for _, b := range bufs {
		if cap(b) == RangeChunk && int64(len(p.ranges)+1)*RangeChunk <= rangeKeepBytes {
			p.ranges = append(p.ranges, b)
			continue
		}
		p.putFree(b)
	}
	p.cond.Broadcast()
	p.mu.Unlock()
}

func (p *prefetcher) get(ob Object, need int64) fetched {
	if p.o.BeforeGet != nil {
		p.o.BeforeGet(ob.Key)
	}
	atomic.AddInt64(&p.st.GETs, 1)
	body, size, meta, err := p.c.Get(p.ctx, p.o.Bucket, ob.Key)
	if err == nil && size > SmallObject {
		body.Close()
		return fetched{} // it grew since listing: let the writer stream it
	}
	buf := &pbuf{cost: need}
	if err == nil {
		buf.b = p.alloc(int(size))
		_, err = io.ReadFull(body, buf.b)
		if err == nil {
			if k, _ := body.Read(make([]byte, 1)); k != 0 {
				err = fmt.Errorf("object body longer than its Content-Length")
			}
		}
		body.Close()
	}
	if err != nil {
		p.release(buf)
		return fetched{err: err}
	}
	return fetched{buf: buf, meta: meta}
}

// alloc reuses the smallest free buffer that fits, or allocates one of archive.BufferClass size so
// that it fits many later objects too (exact sizes made almost every object allocate and zero anew).
func (p *prefetcher) alloc(n int) []byte {
	p.mu.Lock()
	defer p.mu.Unlock()
	best := -1
	for i, b := range p.free {
		if cap(b) >= n && cap(b) <= max(2*n, minKeep) && (best < 0 || cap(b) < cap(p.free[best])) {
			best = i
		}
	}
	if best >= 0 {
		return p.takeFree(best)[:n]
	}
	return make([]byte, n, archive.BufferClass(n))
}

// minKeep is the smallest buffer kept for reuse: smaller ones cost little to allocate.
const minKeep = 64 << 10

// putFree keeps b for reuse. Past freeListBytes the smallest kept buffers go (to the GC): the
// largest are what most bytes of a bucket pass through, and what costs most to allocate and clear.
func (p *prefetcher) putFree(b []byte) {
	if cap(b) < minKeep {
		return
	}
	p.free = append(p.free, b)
	p.freeBytes += int64(cap(b))
	for p.freeBytes > freeListBytes {
		small := 0
		for i, f := range p.free {
			if cap(f) < cap(p.free[small]) {
				small = i
			}
		}
		p.takeFree(small)
	}
}

// takeFree removes the i-th kept buffer from the free list and returns it.
func (p *prefetcher) takeFree(i int) []byte {
	b := p.free[i]
	last := len(p.free) - 1
	p.free[i] = p.free[last]
	p.free[last] = nil
	p.free = p.free[:last]
	p.freeBytes -= int64(cap(b))
	return b
}

// allocRange is a range buffer of n bytes: a kept one when n is RangeChunk, else alloc's.
func (p *prefetcher) allocRange(n int) []byte {
	p.mu.Lock()
	if k := len(p.ranges); n == RangeChunk && k > 0 {
		b := p.ranges[k-1]
		p.ranges[k-1] = nil
		p.ranges = p.ranges[:k-1]
		p.mu.Unlock()
		return b[:n]
	}
	p.mu.Unlock()
	return p.alloc(n)
}

// result waits for the n-th object's fetch.
func (p *prefetcher) result(n int) fetched {
	select {
	case r := <-p.results[n]:
		return r
	case <-p.ctx.Done():
		return fetched{err: p.ctx.Err()}
	}
}

// refetch makes the n-th object's next result a fresh GET (after a failed read); stream asks for
// one GET stream instead of ranges (the object changed while it was read in ranges).
func (p *prefetcher) refetch(n int, stream bool) {
	ob := p.objs[p.fetch[n]]
	if stream {
		p.results[n] <- fetched{}
		return
	}
	// The writer waits for this object alone: take the budget without waiting (objects after it may
	// hold it all), going over by at most one object's share.
	p.mu.Lock()
	need := cost(ob.Size)
	if ob.Size > SmallObject {
		need = p.rangeNeed()
	}
	p.budget -= need
	p.mu.Unlock()
	if ob.Size > SmallObject {
		p.results[n] <- p.getLarge(ob, need)
	} else {
		p.results[n] <- p.get(ob, need)
	}
}

func (p *prefetcher) release(b *pbuf) {
	if b == nil {
		return
	}
	p.mu.Lock()
	p.budget += b.cost
	// Keep the buffer for reuse if it is among the largest (putFree: at most freeListBytes in all).
	p.putFree(b.b)
	b.b = nil // a retained *pbuf (a pending item's job) must not keep the bytes alive
	p.cond.Broadcast()
	p.mu.Unlock()
}

func (p *prefetcher) stop() {
	p.cancel()
	p.wg.Wait()
}

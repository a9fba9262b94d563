package r2

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
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
	"github.com/cfbackup/cfbackup/pkg/store"
)

// Defaults of a bucket backup.
const (
	// DefaultConcurrency is the number of object GETs in flight.
	DefaultConcurrency = 8
	// SmallObject is the largest object prefetched into memory by the GET workers; larger objects are
	// streamed straight into the archive writer when their turn comes.
	SmallObject = 4 << 20
	// PrefetchBudget bounds the bytes of prefetched objects waiting for the writer.
	PrefetchBudget = 24 << 20
)

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
	// PrefetchBudget overrides PrefetchBudget (tests).
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

// onlyKeys keeps the listed objects whose key is in keys.
func onlyKeys(objs []Object, keys []string) []Object {
	want := make(map[string]bool, len(keys))
	for _, k := range keys {
		want[k] = true
	}
	out := objs[:0]
	for _, ob := range objs {
		if want[ob.Key] {
			out = append(out, ob)
		}
	}
	return out
}

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
	var st Stats
	log := o.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	progress := o.Progress
	if progress == nil {
		progress = func(int) {}
	}
	conc := o.Concurrency
	if conc <= 0 {
		conc = DefaultConcurrency
	}
	var objs []Object
	if err := c.List(ctx, o.Bucket, o.Prefix, func(ob Object) error {
		objs = append(objs, ob)
		return nil
	}); err != nil {
		return st, fmt.Errorf("list bucket %s: %w", o.Bucket, err)
	}
	if len(o.Keys) > 0 {
		objs = onlyKeys(objs, o.Keys)
	}
	keys := make([]string, len(objs))
	for i, ob := range objs {
		keys[i] = ob.Key
	}
	paths := EncodePaths(keys)

	var ik indexKeys
	var parent *parentIndex
	if len(o.WriterSecret) == 0 {
		log.Warn("no writer secret: backing up every object in full and writing no incremental index (set CFBACKUP_WRITER_KEY_FILE)", "bucket", o.Bucket)
	} else {
		ik = deriveKeys(o.WriterSecret)
		var err error
		parent, err = loadParent(ctx, s, o.Bucket, o.Prefix, ik)
		if err != nil {
			if ctx.Err() != nil {
				return st, ctx.Err()
			}
			log.Warn("cannot use the parent snapshot's index: backing up every object in full", "bucket", o.Bucket, "err", err)
			parent = nil
		}
	}
	var res *resumer
	if len(o.WriterSecret) > 0 {
		res = newResumer(ctx, s, o.Bucket, ik, parent, log)
	}

	// Decide reuse; the rest is fetched.
	items := make([]*manifest.Item, len(objs))
	var fetch []int
	for i, ob := range objs {
		if parent != nil {
			if it, ok := parent.reuse(ik.entryID(o.Bucket, ob.Key), ob); ok {
				s.Reference(parent.segsOf(it)...)
				it.Source = o.Bucket
				items[i] = &it
				st.Reused++
				st.Bytes += it.Size
				progress(int(it.Size))
				continue
			}
		}
		if it, ok := res.reuse(ctx, s, ik.entryID(o.Bucket, ob.Key), ob); ok {
			it.Source = o.Bucket
			items[i] = &it
			st.Reused++
			st.Resumed++
			st.Bytes += it.Size
			progress(int(it.Size))
			continue
		}
		fetch = append(fetch, i)
	}

	pf := newPrefetcher(ctx, c, o, objs, fetch, conc, &st)
	defer pf.stop()
	// stopped reads the counters only after every prefetch worker has ended (they update GETs).
	stopped := func() Stats { pf.stop(); return st }
	type waiting struct {
		i int
		p *archive.PendingItem
	}
	var queue []waiting
	settle := func(keep int) error {
		// Items already placed are settled early too, so the resume journal can list them.
		for len(queue) > keep || (len(queue) > 0 && res != nil && queue[0].p.Ready()) {
			w := queue[0]
			queue = queue[1:]
			ref, err := w.p.Wait()
			if err != nil {
				return err
			}
			items[w.i].ItemRef = ref
			res.settled(*items[w.i])
		}
		return nil
	}
	for n, i := range fetch {
		ob := objs[i]
		name := ItemName(o.Bucket, paths[ob.Key])
		var p *archive.PendingItem
		var meta manifest.ObjectMeta
		var err error
		for attempt := 0; ; attempt++ {
			var r io.Reader
			var size int64
			res := pf.result(n)
			if res.err == nil && res.body != nil { // large: ranged GETs already under way
				meta, size = res.body.meta, res.body.size
				p, err = s.Writer.WriteItemAsync(name, &exactReader{r: res.body, left: size, progress: progress})
				res.body.Close()
			} else if res.err == nil && res.buf == nil { // ranges refused, or grown since listing: stream it now
				var body io.ReadCloser
				atomic.AddInt64(&st.GETs, 1)
				if o.BeforeGet != nil {
					o.BeforeGet(ob.Key)
				}
				body, size, meta, err = c.Get(ctx, o.Bucket, ob.Key)
				if err == nil {
					r = &exactReader{r: body, left: size, progress: progress}
					p, err = s.Writer.WriteItemAsync(name, r)
					body.Close()
				}
			} else if res.err == nil {
				meta, size = res.meta, int64(len(res.buf.b))
				progress(len(res.buf.b))
				// The writer compresses the prefetch buffer in place and gives it back when done.
				buf := res.buf
				p, err = s.Writer.WriteItemBytes(name, buf.b, func() { pf.release(buf) })
			} else {
				err = res.err
			}
			if err == nil {
				st.Fetched++
				st.FetchedBytes += size
				st.Bytes += size
				break
			}
			if errors.Is(err, ErrVanished) || ctx.Err() != nil || attempt >= 2 || !retryable(err) {
				break
			}
			log.Warn("retrying object", "bucket", o.Bucket, "err", err)
			pf.refetch(n, errors.Is(err, ErrChanged))
		}
		if errors.Is(err, ErrVanished) && ctx.Err() == nil {
			if o.Strict {
				return stopped(), fmt.Errorf("%w: %s (--strict): %v", errclass.NotFound, ErrVanished, err)
			}
			log.Warn("object deleted between listing and GET: skipped", "bucket", o.Bucket, "err", err)
			st.Skipped++
			continue
		}
		if err != nil {
			if ctx.Err() != nil {
				return stopped(), ctx.Err()
			}
			return stopped(), fmt.Errorf("back up bucket %s: %w", o.Bucket, err)
		}
		meta.Key = ob.Key
		m := meta
		items[i] = &manifest.Item{Component: Component, Source: o.Bucket, Kind: "object", Object: &m}
		queue = append(queue, waiting{i, p})
		if err := settle(256); err != nil {
			return stopped(), err
		}
	}
	if err := settle(0); err != nil {
		return stopped(), err
	}
	var out []manifest.Item
	for _, it := range items {
		if it != nil {
			out = append(out, *it)
		}
	}
	st.Objects = int64(len(out))
	src := manifest.Source{Component: Component, ID: o.Bucket, Name: o.Bucket, Items: st.Objects, Size: st.Bytes, Reused: st.Reused, Skipped: st.Skipped, Prefix: o.Prefix}
	if parent != nil {
		src.Parent = parent.snapshot
	}
	if len(o.WriterSecret) > 0 {
		ix := &Index{Version: IndexVersion, Bucket: o.Bucket, Entries: make(map[string]manifest.Item, len(out))}
		for _, it := range out {
			ix.Entries[ik.entryID(o.Bucket, it.Object.Key)] = it
		}
		b, err := ik.seal(ix)
		if err != nil {
			return stopped(), err
		}
		key := IndexKey(s.SnapshotID, o.Bucket)
		if err := s.PutObject(ctx, key, b); err != nil {
			return stopped(), fmt.Errorf("store the incremental index: %w", err)
		}
		src.Index = key
	}
	s.Add(src, out...)
	return stopped(), nil
}

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

// parentIndex is the newest earlier snapshot of the bucket and its decrypted index.
type parentIndex struct {
	snapshot string
	time     time.Time
	ix       *Index
	segs     map[string]archive.SegmentInfo
}

func (p *parentIndex) reuse(id string, ob Object) (manifest.Item, bool) {
	it, ok := p.ix.Entries[id]
	if !ok || it.Object == nil || it.Object.Key != ob.Key || it.Size != ob.Size || it.Object.ETag != ob.ETag || len(it.Chunks) == 0 {
		return manifest.Item{}, false
	}
	for _, c := range it.Chunks {
		if _, ok := p.segs[c.Segment]; !ok {
			return manifest.Item{}, false
		}
	}
	return it, true
}

func (p *parentIndex) segsOf(it manifest.Item) []archive.SegmentInfo {
	var out []archive.SegmentInfo
	for _, c := range it.Chunks {
		out = append(out, p.segs[c.Segment])
	}
	return out
}

// loadParent finds the newest snapshot with this bucket and reads its index; nil when there is none.
// The parent covers the prefix being backed up when it can: a snapshot of only --r2-prefix P as
// the parent of a whole-bucket backup would make it fetch everything outside P again.
func loadParent(ctx context.Context, s *source.Session, bucket, prefix string, ik indexKeys) (*parentIndex, error) {
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
		var want *manifest.Object
		for i := range m.Objects {
			if m.Objects[i].Key == src.Index {
				want = &m.Objects[i]
			}
		}
		if want == nil {
			return nil, fmt.Errorf("snapshot %s does not list its index %s", m.ID, src.Index)
		}
		rc, err := r.Store.Open(ctx, src.Index, 0, -1)
		if err != nil {
			return nil, err
		}
		b, err := io.ReadAll(io.LimitReader(store.ContextReader(ctx, rc), want.Size+1))
		rc.Close()
		if err != nil {
			return nil, err
		}
		sum := sha256.Sum256(b)
		if int64(len(b)) != want.Size || hex.EncodeToString(sum[:]) != want.SHA256 {
			return nil, fmt.Errorf("%w: index %s does not match the size and SHA-256 in snapshot %s", archive.ErrIntegrity, src.Index, m.ID)
		}
		ix, err := ik.open(b)
		if err != nil {
			return nil, err
		}
		if ix.Bucket != bucket {
			return nil, fmt.Errorf("%w: index %s is of bucket %q", ErrIndex, src.Index, ix.Bucket)
		}
		return &parentIndex{snapshot: m.ID, time: m.Time, ix: ix, segs: m.SegmentMap()}, nil
	}
	return nil, nil
}

// prefetcher runs the GET workers: they claim objects in key order and, within PrefetchBudget, fetch
// small ones into buffers and start large ones as ranged GETs (rangedBody) that the writer reads in
// turn.
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
	wg        sync.WaitGroup
	free      [][]byte
	freeBytes int64
}

// freeListBytes bounds the prefetch buffers kept for reuse.
const freeListBytes = 8 << 20

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
	budget := int64(PrefetchBudget)
	if o.PrefetchBudget > 0 {
		budget = o.PrefetchBudget
	}
	p := &prefetcher{ctx: ctx, cancel: cancel, c: c, o: o, objs: objs, fetch: fetch, st: st, budget: budget, limit: budget, conc: conc,
		results: make([]chan fetched, len(fetch))}
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
		bufs[i] = p.alloc(int(chunk))
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

// giveBack returns a large object's budget and keeps its buffers for reuse within freeListBytes.
func (p *prefetcher) giveBack(bufs [][]byte, need int64) {
	p.mu.Lock()
	p.budget += need
	for _, b := range bufs {
		if p.freeBytes+int64(cap(b)) <= freeListBytes {
			p.free = append(p.free, b)
			p.freeBytes += int64(cap(b))
		}
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
		if cap(b) >= n && (best < 0 || cap(b) < cap(p.free[best])) {
			best = i
		}
	}
	if best >= 0 {
		b := p.free[best]
		last := len(p.free) - 1
		p.free[best] = p.free[last]
		p.free[last] = nil
		p.free = p.free[:last]
		p.freeBytes -= int64(cap(b))
		return b[:n]
	}
	return make([]byte, n, archive.BufferClass(n))
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
	// Keep a few buffers for reuse, within a fixed byte total so they never add up past the budget.
	if b.b != nil && cap(b.b) >= 64<<10 && p.freeBytes+int64(cap(b.b)) <= freeListBytes {
		p.free = append(p.free, b.b)
		p.freeBytes += int64(cap(b.b))
	}
	b.b = nil // a retained *pbuf (a pending item's job) must not keep the bytes alive
	p.cond.Broadcast()
	p.mu.Unlock()
}

func (p *prefetcher) stop() {
	p.cancel()
	p.wg.Wait()
}

package archive

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"runtime"
	"sync"
	"time"

	"filippo.io/age"

	"github.com/cfbackup/cfbackup/pkg/store"
)

// WriterOptions configures a Writer. Store and Recipients are required.
type WriterOptions struct {
	Store      store.Store
	Recipients []age.Recipient
	// SegmentSize: a segment is finished once it holds this many compressed bytes (default 512 MiB).
	SegmentSize int64
	// ChunkSize is the largest tar entry's payload; buffers take at most ChunkSize × (2×Concurrency+6).
	ChunkSize int
	// Concurrency is the number of parallel LZ4 compressors (default runtime.NumCPU()).
	Concurrency int
	// NewID names segments (default: 16 random bytes, hex).
	NewID func() string
	// Now stamps tar entries' modification time (default time.Now).
	Now func() time.Time
	// StorageClass is the S3 storage class segments are written with ("" the bucket's default);
	// SetStorageClass changes it for the items written next.
	StorageClass string
}

// Writer turns a sequence of items into uploaded segments. Chunks are compressed in parallel while
// earlier ones are encrypted and streamed to the store, so neither the item nor the segment is ever
// held whole in memory or on disk. WriteItem, Close and Abort must not be called concurrently.
type Writer struct {
	opts   WriterOptions
	ctx    context.Context
	cancel context.CancelFunc

	work    chan *job // to the compressors
	ordered chan *job // to the sink, in write order
	workers sync.WaitGroup
	sinkEnd chan struct{}
	eoa     []byte // LZ4 frame holding the tar end-of-archive blocks

	raw *freeList // chunk payload buffers
	out *frameMem // compressed frame buffers

	mu      sync.Mutex
	err     error // first failure; sticky
	done    []*segment
	uploads sync.WaitGroup

	cur    *segment // owned by the sink goroutine
	closed bool

	subs []func(SegmentInfo) // OnSegment callbacks (under mu)

	class string // storage class of the items written next (WriteItem's goroutine)
}

type job struct {
	entry string
	data  *[]byte // raw payload (from w.raw)
	mtime time.Time
	frame *[]byte // compressed frame (from w.out, which charged outN bytes for it)
	outN  int
	err   error
	ready chan struct{} // closed when frame is compressed
	chunk Chunk
	saved chan struct{} // closed when the sink has placed (or failed to place) the frame
	// hash: the job is a whole one-chunk item whose SHA-256 the compressor computes (in parallel),
	// into sum.
	hash bool
	sum  [sha256.Size]byte
	// release, when set, gives data back to the caller that lent it (WriteItemBytes) instead of
	// returning it to w.raw.
	release func()
	// class is the storage class of the segment the chunk must go into.
	class string
}

type segment struct {
	id, key string
	pw      *io.PipeWriter
	aw      io.WriteCloser
	hash    hash.Hash
	n       int64 // ciphertext bytes
	plain   int64 // plaintext bytes
	putDone chan struct{}
	putErr  error
	kept    bool // reported to OnSegment callbacks: never deleted by this Writer
	class   string
}

func (s *segment) Write(p []byte) (int, error) {
	n, err := s.pw.Write(p)
	s.hash.Write(p[:n])
	s.n += int64(n)
	return n, err
}

// NewWriter checks the options (refusing to run without usable recipients: nothing is ever stored in
// plaintext) and starts the compression pipeline.
func NewWriter(ctx context.Context, opts WriterOptions) (*Writer, error) {
	if opts.Store == nil {
		return nil, errors.New("archive: no store")
	}
	if len(opts.Recipients) == 0 {
		return nil, errors.New("archive: no recipients: refusing to write unencrypted data")
	}
	// age checks recipient compatibility (post-quantum vs classic) when a file starts; fail now, not mid-backup.
	if w, err := age.Encrypt(io.Discard, opts.Recipients...); err != nil {
		return nil, fmt.Errorf("archive: recipients: %w", err)
	} else {
		_ = w.Close()
	}
	if opts.SegmentSize <= 0 {
		opts.SegmentSize = DefaultSegmentSize
	}
	if opts.ChunkSize <= 0 {
		opts.ChunkSize = DefaultChunkSize
	}
	if opts.Concurrency <= 0 {
		opts.Concurrency = runtime.NumCPU()
	}
	if opts.NewID == nil {
		opts.NewID = randomID
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	ctx, cancel := context.WithCancel(ctx)
	w := &Writer{
		class:  opts.StorageClass,
		opts:   opts,
		ctx:    ctx,
		cancel: cancel,
		work:   make(chan *job, opts.Concurrency),
		// Jobs wait here in write order for the sink; what they hold is bounded elsewhere (raw chunk
		// buffers, lent buffers, frame memory), so the queue can be long and compressors can work
		// ahead of a slow job at its head.
		ordered: make(chan *job, orderedQueue),
		sinkEnd: make(chan struct{}),
	}
	chunk := opts.ChunkSize
	// Raw chunk buffers in flight at most: Concurrency+1 queued or being compressed, one in the
	// sink's wait, one being read and one held back by WriteItem's look-ahead.
	w.raw = newFreeList(opts.Concurrency+4, func() []byte { return make([]byte, chunk) })
	// Compressed frames waiting for the sink: as much memory as Concurrency+2 chunk-sized frames.
	w.out = newFrameMem(int64(opts.Concurrency+2) * int64(frameBound(chunk+frameSlack)))
	w.eoa = (&frameWriter{}).frame(nil, make([]byte, 1024))
	for i := 0; i < opts.Concurrency; i++ {
		w.workers.Add(1)
		go w.compressor()
	}
	go w.sink()
	return w, nil
}

// orderedQueue bounds the jobs waiting for the sink (their memory is bounded by frameMem).
const orderedQueue = 1024

// frameSlack is room reserved in a frame beyond its payload for the tar header (with PAX records for
// long names) and padding; a frame that needs more grows its buffer.
const frameSlack = 16 << 10

// reserveFrame reserves the compressed frame buffer of a job of n payload bytes before it is queued.
func (w *Writer) reserveFrame(j *job, n int) error {
	b, charged, err := w.out.get(w.ctx, frameBound(n+frameSlack))
	if err != nil {
		return err
	}
	j.outN = charged
	j.frame = &b
	return nil
}

func randomID() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err) // crypto/rand never fails on supported platforms
	}
	return hex.EncodeToString(b[:])
}

// freeList hands out at most max buffers, allocated on first use and recycled, so memory stays
// bounded and the garbage collector never sees multi-megabyte buffers churn (a sync.Pool drops them at
// every GC, which made GC the writer's bottleneck).
type freeList struct {
	free  chan *[]byte
	slots chan struct{}
	alloc func() []byte
}

func newFreeList(max int, alloc func() []byte) *freeList {
	return &freeList{free: make(chan *[]byte, max), slots: make(chan struct{}, max), alloc: alloc}
}

func (f *freeList) get() *[]byte {
	select {
	case b := <-f.free:
		return b
	default:
	}
	select {
	case b := <-f.free:
		return b
	case f.slots <- struct{}{}:
		b := f.alloc()
		return &b
	}
}

func (f *freeList) put(b *[]byte) { f.free <- b }

var zeroBlock [512]byte

func (w *Writer) compressor() {
	defer w.workers.Done()
	fw := &frameWriter{}
	var hb bytes.Buffer
	for j := range w.work {
		if w.failed() == nil {
			if j.hash {
				j.sum = sha256.Sum256(*j.data)
			}
			// On failure the reserved buffer stays in j.frame for the sink to give back.
			if f, err := w.compressJob(fw, &hb, j); err != nil {
				j.err = err
			} else {
				j.frame = f
			}
		}
		if j.release != nil {
			j.release()
			j.release = nil // the closure holds the lent buffer; pending jobs must not keep it alive
		} else {
			w.raw.put(j.data)
		}
		j.data = nil
		close(j.ready)
	}
}

func (w *Writer) compressJob(fw *frameWriter, hb *bytes.Buffer, j *job) (*[]byte, error) {
	data := *j.data
	hb.Reset()
	tw := tar.NewWriter(hb)
	if err := tw.WriteHeader(&tar.Header{
		Typeflag: tar.TypeReg,
		Name:     j.entry,
		Mode:     0o600,
		Size:     int64(len(data)),
		ModTime:  j.mtime,
	}); err != nil {
		return nil, fmt.Errorf("tar header for %q: %w", j.entry, err)
	}
	var pad []byte
	if r := len(data) % 512; r != 0 {
		pad = zeroBlock[:512-r]
	}
	out := j.frame
	*out = fw.frame(*out, hb.Bytes(), data, pad)
	return out, nil
}

func (w *Writer) failed() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}

func (w *Writer) fail(err error) {
	w.mu.Lock()
	if w.err == nil {
		w.err = err
	}
	w.mu.Unlock()
}

// sink writes compressed frames, in order, into the current segment and rolls segments over.
func (w *Writer) sink() {
	defer close(w.sinkEnd)
	for j := range w.ordered {
		<-j.ready
		if j.err != nil {
			w.fail(j.err)
		}
		if j.frame != nil {
			if w.failed() == nil {
				if err := w.place(j); err != nil {
					w.fail(err)
				}
			}
			w.out.put(*j.frame, j.outN)
			j.frame = nil
		}
		close(j.saved)
	}
	if w.cur != nil {
		if err := w.failed(); err != nil {
			w.cur.pw.CloseWithError(err) // a failed Put leaves no object
		} else if err := w.finish(w.cur); err != nil {
			w.fail(err)
		}
		w.cur = nil
	}
}

func (w *Writer) place(j *job) error {
	if w.cur != nil && w.cur.class != j.class {
		// A segment has one storage class: a chunk of another class starts a new segment.
		s := w.cur
		w.cur = nil
		if err := w.finish(s); err != nil {
			return err
		}
	}
	if w.cur == nil {
		s, err := w.startSegment(j.class)
		if err != nil {
			return err
		}
		w.cur = s
	}
	s := w.cur
	j.chunk.Segment = s.id
	j.chunk.Offset = s.plain
	j.chunk.Length = int64(len(*j.frame))
	if _, err := s.aw.Write(*j.frame); err != nil {
		return w.uploadErr(s, err)
	}
	s.plain += j.chunk.Length
	if s.plain >= w.opts.SegmentSize {
		w.cur = nil
		return w.finish(s)
	}
	return nil
}

// uploadErr prefers the store's error over the pipe's echo of it.
func (w *Writer) uploadErr(s *segment, err error) error {
	select {
	case <-s.putDone:
		if s.putErr != nil {
			return fmt.Errorf("upload segment %s: %w", s.id, s.putErr)
		}
	default:
	}
	return fmt.Errorf("write segment %s: %w", s.id, err)
}

func (w *Writer) startSegment(class string) (*segment, error) {
	id := w.opts.NewID()
	s := &segment{id: id, key: SegmentKey(id), hash: sha256.New(), putDone: make(chan struct{}), class: class}
	pr, pw := io.Pipe()
	s.pw = pw
	w.uploads.Add(1)
	go func() {
		defer w.uploads.Done()
		stop := context.AfterFunc(w.ctx, func() { pr.CloseWithError(w.ctx.Err()) })
		err := w.opts.Store.Put(w.ctx, s.key, pr, store.PutOptions{IfNotExists: true, StorageClass: s.class})
		stop()
		s.putErr = err
		if err == nil {
			w.reportSegment(s)
			err = errUploadEnded
		}
		pr.CloseWithError(err) // unblock the sink if Put returned before reading everything
		close(s.putDone)
	}()
	aw, err := age.Encrypt(s, w.opts.Recipients...)
	if err != nil {
		pw.CloseWithError(err)
		return nil, fmt.Errorf("age encrypt: %w", err)
	}
	s.aw = aw
	return s, nil
}

var errUploadEnded = errors.New("segment upload ended")

// finish writes the end-of-archive frame, closes the age stream and hands the segment to its upload.
func (w *Writer) finish(s *segment) error {
	if _, err := s.aw.Write(w.eoa); err != nil {
		s.pw.CloseWithError(err)
		return w.uploadErr(s, err)
	}
	s.plain += int64(len(w.eoa))
	if err := s.aw.Close(); err != nil {
		s.pw.CloseWithError(err)
		return w.uploadErr(s, err)
	}
	s.pw.Close()
	w.mu.Lock()
	w.done = append(w.done, s)
	w.mu.Unlock()
	return nil
}

// SetStorageClass sets the storage class of the items written from now on ("" the bucket's
// default): a backup writes each component's items in its own class. Items of another class than the
// current segment's start a new segment, so every segment has exactly one class.
func (w *Writer) SetStorageClass(class string) { w.class = class }

// WriteItem streams r into the archive under name and returns where its chunks went.
// It returns once every chunk is inside a segment's encrypted stream; the segment becomes durable
// only when Close succeeds. If r fails, only this item is lost and the Writer stays usable; any other
// failure (a failed segment upload, cancellation) makes the Writer unusable.
func (w *Writer) WriteItem(name string, r io.Reader) (ItemRef, error) {
	p, err := w.WriteItemAsync(name, r)
	if err != nil {
		return ItemRef{}, err
	}
	return p.Wait()
}

// PendingItem is an item whose bytes are all handed to the compressors but not yet placed in a segment.
type PendingItem struct {
	w    *Writer
	ref  ItemRef
	jobs []*job
}

// Wait blocks until every chunk of the item is inside a segment's encrypted stream and returns where.
// Call Wait for every PendingItem, in any order; WriteItemAsync's look-ahead is bounded by the
// Writer's buffers, not by how many items are pending.
func (p *PendingItem) Wait() (ItemRef, error) {
	for _, j := range p.jobs {
		<-j.saved
		p.ref.Chunks = append(p.ref.Chunks, j.chunk)
		if j.hash {
			p.ref.SHA256 = hex.EncodeToString(j.sum[:])
		}
	}
	p.jobs = nil
	if err := p.w.failed(); err != nil {
		return ItemRef{}, err
	}
	return p.ref, nil
}

// WriteItemAsync reads r to its end and queues its chunks for compression, returning before they are
// compressed and placed: many small items (R2 objects) then keep every compressor busy instead of
// one item at a time. The catalogue order is the call order. Like WriteItem it must not be called
// concurrently with itself or WriteItem; a read error loses only this item.
func (w *Writer) WriteItemAsync(name string, r io.Reader) (*PendingItem, error) {
	if w.closed {
		return nil, ErrClosed
	}
	if err := ValidName(name); err != nil {
		return nil, err
	}
	if err := w.failed(); err != nil {
		return nil, err
	}
	ref := ItemRef{Name: name}
	h := sha256.New()
	mtime := w.opts.Now().Truncate(time.Second)
	var jobs []*job
	var pending *[]byte // one chunk of look-ahead decides between "name" and "name.partNNNNNN"
	submit := func(data *[]byte, entry string, last bool) error {
		j := &job{entry: entry, data: data, mtime: mtime, ready: make(chan struct{}), saved: make(chan struct{}), class: w.class}
		j.chunk.Size = int64(len(*data))
		if err := w.reserveFrame(j, len(*data)); err != nil {
			w.raw.put(data)
			return err
		}
		// A one-chunk item (most R2 objects) is hashed by its compressor, in parallel with other
		// items; a multi-chunk item's hash runs here, in order.
		if last && len(jobs) == 0 {
			j.hash = true
		} else {
			h.Write(*data)
		}
		jobs = append(jobs, j)
		w.ordered <- j
		w.work <- j
		return nil
	}
	var readErr error
	for part := 0; ; part++ {
		if err := w.ctx.Err(); err != nil {
			readErr = err
			break
		}
		buf := w.raw.get()
		*buf = (*buf)[:cap(*buf)]
		n, err := io.ReadFull(r, *buf)
		*buf = (*buf)[:n]
		if err != nil && err != io.EOF && err != io.ErrUnexpectedEOF {
			w.raw.put(buf)
			readErr = fmt.Errorf("read item %q: %w", name, err)
			break
		}
		ref.Size += int64(n)
		if n == 0 && part > 0 {
			w.raw.put(buf)
			break
		}
		if pending != nil {
			if err := submit(pending, fmt.Sprintf("%s.part%06d", name, len(jobs)+1), false); err != nil {
				pending = nil
				w.raw.put(buf)
				readErr = err
				break
			}
		}
		pending = buf
		if n < len(*buf) || err != nil {
			break
		}
	}
	if readErr == nil && pending != nil {
		entry := name
		if len(jobs) > 0 {
			entry = fmt.Sprintf("%s.part%06d", name, len(jobs)+1)
		}
		readErr = submit(pending, entry, true)
	} else if pending != nil {
		w.raw.put(pending)
	}
	if readErr != nil {
		for _, j := range jobs {
			<-j.saved
		}
		// Only this item is lost: chunks it already placed stay in the segment unreferenced (no
		// catalogue names them; prune reclaims them with the segment), and the Writer stays usable so
		// a source can try the item again — e.g. export a database again after a dropped download.
		// Cancellation still ends the Writer.
		if w.ctx.Err() != nil {
			w.fail(readErr)
		}
		return nil, readErr
	}
	if err := w.failed(); err != nil {
		return nil, err
	}
	if !jobs[0].hash {
		ref.SHA256 = hex.EncodeToString(h.Sum(nil))
	}
	return &PendingItem{w: w, ref: ref, jobs: jobs}, nil
}

// WriteItemBytes is WriteItemAsync for an item already in memory (an R2 object the GET workers
// prefetched): when it fits in one chunk the compressor reads data in place instead of copying it
// into a chunk buffer, saving a copy of every byte and the buffer. done is called exactly once, when
// data is no longer needed (the chunk is compressed, or on any error); until then the caller must
// not modify data. Memory stays bounded by what the caller lends.
func (w *Writer) WriteItemBytes(name string, data []byte, done func()) (*PendingItem, error) {
	if len(data) > w.opts.ChunkSize {
		p, err := w.WriteItemAsync(name, bytes.NewReader(data))
		done()
		return p, err
	}
	if w.closed {
		done()
		return nil, ErrClosed
	}
	if err := ValidName(name); err != nil {
		done()
		return nil, err
	}
	if err := w.failed(); err != nil {
		done()
		return nil, err
	}
	j := &job{entry: name, data: &data, mtime: w.opts.Now().Truncate(time.Second), ready: make(chan struct{}),
		saved: make(chan struct{}), hash: true, release: done, class: w.class}
	j.chunk.Size = int64(len(data))
	if err := w.reserveFrame(j, len(data)); err != nil {
		done()
		w.fail(err)
		return nil, err
	}
	w.ordered <- j
	w.work <- j
	return &PendingItem{w: w, ref: ItemRef{Name: name, Size: int64(len(data))}, jobs: []*job{j}}, nil
}

// Close finishes the last segment, waits for every upload, checks each object's size with Stat and
// returns the segments in write order. On failure it deletes what it uploaded (best effort).
func (w *Writer) Close() ([]SegmentInfo, error) {
	if w.closed {
		return nil, ErrClosed
	}
	w.shutdown()
	defer w.cancel()
	if err := w.failed(); err != nil {
		w.cleanup()
		return nil, err
	}
	infos := make([]SegmentInfo, 0, len(w.done))
	for _, s := range w.done {
		if s.putErr != nil {
			w.cleanup()
			return nil, fmt.Errorf("upload segment %s: %w", s.id, s.putErr)
		}
		fi, err := w.opts.Store.Stat(w.ctx, s.key)
		if err != nil {
			w.cleanup()
			return nil, fmt.Errorf("check uploaded segment %s: %w", s.id, err)
		}
		if fi.Size != s.n {
			w.cleanup()
			return nil, fmt.Errorf("%w: segment %s: stored %d bytes, wrote %d", ErrIntegrity, s.id, fi.Size, s.n)
		}
		infos = append(infos, SegmentInfo{
			ID: s.id, Key: s.key, Size: s.n, SHA256: hex.EncodeToString(s.hash.Sum(nil)), PlainSize: s.plain, StorageClass: s.class,
		})
	}
	return infos, nil
}

// Abort stops the pipeline and the uploads and deletes any segment already stored (best effort),
// so an interrupted backup leaves nothing behind; prune's grace-period sweep covers what this misses.
func (w *Writer) Abort() {
	if w.closed {
		return
	}
	w.fail(ErrClosed)
	w.cancel()
	w.shutdown()
	w.cleanup()
}

func (w *Writer) shutdown() {
	w.closed = true
	close(w.work)
	close(w.ordered)
	w.workers.Wait()
	<-w.sinkEnd
	if w.failed() != nil {
		w.cancel() // stop uploads still streaming a segment that will never be used
	}
	w.uploads.Wait()
}

func (w *Writer) cleanup() {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(w.ctx), 30*time.Second)
	defer cancel()
	for _, s := range w.done {
		<-s.putDone
		if s.putErr == nil && !s.kept {
			_ = w.opts.Store.Delete(ctx, s.key)
		}
	}
}

// OnSegment registers fn to be told about every later segment of this Writer whose upload has
// completed and whose stored size checks out (Stat). fn runs on the upload's goroutine, before Close
// returns, and may be called concurrently with WriteItem. A source keeps a journal with it, so an
// interrupted backup resumes from the segments already stored (docs/FORMAT.md, "Journal").
//
// Once a callback is registered, the Writer never deletes a segment it reported (not on Abort, not
// on a failed Close): a journal may point into it. Such a segment is unreferenced until a later
// backup reuses it; prune collects it after its grace period otherwise.
func (w *Writer) OnSegment(fn func(SegmentInfo)) {
	w.mu.Lock()
	w.subs = append(w.subs[:len(w.subs):len(w.subs)], fn)
	w.mu.Unlock()
}

// reportSegment runs on s's upload goroutine after its Put succeeded: the sink closed the pipe, so
// s.n, s.hash and s.plain are final.
func (w *Writer) reportSegment(s *segment) {
	w.mu.Lock()
	subs := w.subs
	w.mu.Unlock()
	if len(subs) == 0 {
		return
	}
	fi, err := w.opts.Store.Stat(w.ctx, s.key)
	if err != nil || fi.Size != s.n {
		return // Close reports it
	}
	s.kept = true
	info := SegmentInfo{ID: s.id, Key: s.key, Size: s.n, SHA256: hex.EncodeToString(s.hash.Sum(nil)), PlainSize: s.plain, StorageClass: s.class}
	for _, fn := range subs {
		fn(info)
	}
}

// Ready reports whether Wait would return at once: every chunk of the item has been placed (or the
// Writer failed). A source settles finished items early with it, e.g. to journal them for resume.
func (p *PendingItem) Ready() bool {
	for _, j := range p.jobs {
		select {
		case <-j.saved:
		default:
			return false
		}
	}
	return true
}

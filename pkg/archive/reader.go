package archive

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"strings"
	"sync"

	"filippo.io/age"
	"github.com/pierrec/lz4/v4"

	"github.com/cfbackup/cfbackup/pkg/store"
)

// ReadAheadWindow is the most one ranged GET fetches while OpenItem reads sequentially, so a large item
// costs a few GETs instead of one per 64 KiB age chunk.
const ReadAheadWindow = 4 << 20

const (
	ageChunk    = 64 << 10
	ageEncChunk = ageChunk + 16
)

// storeError marks an error that came from the store (network, permissions), not from the bytes.
type storeError struct{ err error }

func (e *storeError) Error() string { return e.err.Error() }
func (e *storeError) Unwrap() error { return e.err }

// classify tells store trouble from bad bytes: only the latter is an integrity failure.
func classify(err error, what string, src *rangeReaderAt) error {
	var se *storeError
	var nim *age.NoIdentityMatchError
	if src != nil {
		src.mu.Lock()
		if src.storeErr != nil {
			err = src.storeErr
		}
		src.mu.Unlock()
	}
	switch {
	case errors.As(err, &se), errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("%s: %w", what, err)
	case errors.As(err, &nim):
		return fmt.Errorf("%w: %s (wrong key, or a damaged segment header: run verify): %v", ErrNoIdentity, what, err)
	default:
		return fmt.Errorf("%w: %s: %w", ErrIntegrity, what, err)
	}
}

// rangeReaderAt serves age.DecryptReaderAt from ranged store reads, fetching up to a window at a time
// but never past the range the caller said it needs.
type rangeReaderAt struct {
	ctx  context.Context
	st   store.Store
	key  string
	size int64

	mu       sync.Mutex
	buf      []byte
	bufOff   int64
	lo, hi   int64 // range expected to be read; fetches inside it may extend to hi
	gets     int
	fetched  int64
	maxFetch int64
	storeErr error // first store error, so decoding failures caused by it are not called corruption

	// pinned are byte ranges already known (a cached segment header and final chunk), served
	// without a store read; record, while set, collects every fetch into recorded.
	pinned   []span
	record   bool
	recorded []span
}

// span is a copy of the ciphertext bytes at off.
type span struct {
	off  int64
	data []byte
}

// fetchBufs recycles read-ahead buffers between items, so restoring many small objects does not
// allocate (and zero) a fresh buffer per object.
var fetchBufs sync.Pool

// release returns the read-ahead buffer; the reader must not be used afterwards.
func (r *rangeReaderAt) release() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if cap(r.buf) >= 64<<10 {
		b := r.buf[:0]
		fetchBufs.Put(&b)
	}
	r.buf = nil
	r.bufOff = 0
}

func (r *rangeReaderAt) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, errors.New("negative offset")
	}
	if off >= r.size {
		return 0, io.EOF
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	want := int64(len(p))
	if off+want > r.size {
		want = r.size - off
	}
	for _, sp := range r.pinned {
		if off >= sp.off && off+want <= sp.off+int64(len(sp.data)) {
			c := copy(p, sp.data[off-sp.off:])
			if c < len(p) {
				return c, io.EOF
			}
			return c, nil
		}
	}
	if off < r.bufOff || off+want > r.bufOff+int64(len(r.buf)) {
		n := want
		if off >= r.lo && off < r.hi {
			n = max(n, min(r.maxFetch, r.hi-off))
		} else {
			n = max(n, min(r.maxFetch, ageEncChunk))
		}
		n = min(n, r.size-off)
		if err := r.fetch(off, n); err != nil {
			return 0, err
		}
	}
	c := copy(p, r.buf[off-r.bufOff:])
	if c < len(p) {
		return c, io.EOF
	}
	return c, nil
}

func (r *rangeReaderAt) fetch(off, n int64) error {
	rc, err := r.st.Open(r.ctx, r.key, off, n)
	if err != nil {
		return r.noteStoreErr(err)
	}
	defer rc.Close()
	if int64(cap(r.buf)) < n {
		if b, ok := fetchBufs.Get().(*[]byte); ok && int64(cap(*b)) >= n {
			r.buf = *b
		} else {
			// Round up so a recycled buffer fits the next items too.
			r.buf = make([]byte, (n+1<<20-1)&^(1<<20-1))
		}
	}
	r.buf = r.buf[:n]
	got, err := io.ReadFull(rc, r.buf)
	r.gets++
	r.fetched += int64(got)
	if err != nil {
		r.buf = r.buf[:0]
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return fmt.Errorf("segment %s is shorter than recorded (%d bytes at %d, got %d): %w", r.key, n, off, got, io.ErrUnexpectedEOF)
		}
		return r.noteStoreErr(err)
	}
	r.bufOff = off
	if r.record {
		r.recorded = append(r.recorded, span{off, bytes.Clone(r.buf)})
	}
	return nil
}

func (r *rangeReaderAt) noteStoreErr(err error) error {
	se := &storeError{fmt.Errorf("read %s: %w", r.key, err)}
	if r.storeErr == nil {
		r.storeErr = se
	}
	return se
}

// expect narrows read-ahead to the ciphertext holding plaintext [a, b) of a segment whose header and
// nonce take hdr bytes.
func (r *rangeReaderAt) expect(hdr, a, b int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lo = hdr + (a/ageChunk)*ageEncChunk
	r.hi = min(hdr+((b-1)/ageChunk+1)*ageEncChunk, r.size)
}

// openSegment is an authenticated random-access view of one segment's plaintext.
type openSegment struct {
	info  SegmentInfo
	src   *rangeReaderAt
	plain io.ReaderAt
	size  int64
	hdr   int64
}

// openSegmentAt opens seg for random access. heads, when not nil, remembers the ciphertext an open
// reads (the age header and the final chunk) so that opening the segment again for the next item
// reads nothing from the store; age authenticates those bytes again on every open.
func openSegmentAt(ctx context.Context, st store.Store, seg SegmentInfo, ids []age.Identity, heads *headCache) (*openSegment, error) {
	src := &rangeReaderAt{ctx: ctx, st: st, key: seg.Key, size: seg.Size, maxFetch: ReadAheadWindow}
	if src.key == "" {
		src.key = SegmentKey(seg.ID)
	}
	if heads != nil {
		if src.pinned = heads.get(src.key); src.pinned == nil {
			src.record = true
		}
	}
	plain, size, err := age.DecryptReaderAt(src, seg.Size, ids...)
	if err != nil {
		src.release()
		return nil, classify(err, "segment "+seg.ID, src)
	}
	if src.record {
		src.mu.Lock()
		src.record = false
		heads.put(src.key, src.recorded)
		src.pinned, src.recorded = src.recorded, nil
		src.mu.Unlock()
	}
	if seg.PlainSize != 0 && size != seg.PlainSize {
		return nil, fmt.Errorf("%w: segment %s: plaintext is %d bytes, recorded %d", ErrIntegrity, seg.ID, size, seg.PlainSize)
	}
	chunks := max(1, (size+ageChunk-1)/ageChunk)
	return &openSegment{info: seg, src: src, plain: plain, size: size, hdr: seg.Size - size - 16*chunks}, nil
}

// OpenItem reads one item back using ranged reads of only the frames it occupies, and checks its size
// and SHA-256 at EOF (a mismatch, or any authentication failure, is an error matching ErrIntegrity that
// names the item and segment). Data returned before EOF is authenticated by age but not yet checked
// against the catalogue, so callers must treat a final error as fatal for everything they wrote.
func OpenItem(ctx context.Context, st store.Store, segs map[string]SegmentInfo, ids []age.Identity, ref ItemRef) (io.ReadCloser, error) {
	return openItem(ctx, st, segs, ids, ref, nil)
}

func openItem(ctx context.Context, st store.Store, segs map[string]SegmentInfo, ids []age.Identity, ref ItemRef, heads *headCache) (io.ReadCloser, error) {
	if err := ValidName(ref.Name); err != nil { // never written by cfbackup: a forged catalogue
		return nil, fmt.Errorf("%w: catalogue item: %w", ErrIntegrity, err)
	}
	it := &itemReader{ctx: ctx, st: st, segs: segs, ids: ids, ref: ref, hash: sha256.New(), next: 0, heads: heads}
	if len(ref.Lists) > 0 {
		lc, err := newListCursor(ctx, st, segs, ids, ref, heads)
		if err != nil {
			return nil, err
		}
		it.lists, it.ref.Chunks, it.ref.Lists = lc, nil, nil
		if err := it.fill(); err != nil { // the first list chunk: a bad catalogue fails the open
			it.Close()
			return nil, err
		}
	} else {
		var total int64
		for i, c := range ref.Chunks {
			if err := it.checkChunk(i, c); err != nil {
				return nil, err
			}
			total += c.Size
		}
		if total != ref.Size {
			return nil, fmt.Errorf("%w: item %q: chunk sizes add up to %d, item size is %d", ErrIntegrity, ref.Name, total, ref.Size)
		}
	}
	if len(it.ref.Chunks) == 0 {
		it.Close()
		return nil, fmt.Errorf("%w: item %q has no chunks", ErrIntegrity, ref.Name)
	}
	return it, nil
}

// checkChunk checks chunk i of the item as the catalogue (or a list chunk) records it.
func (it *itemReader) checkChunk(i int, c Chunk) error {
	if _, ok := it.segs[c.Segment]; !ok {
		if c.ID != "" { // a content-addressed chunk may point anywhere: only listed segments are checked and kept
			return fmt.Errorf("%w: item %q: chunk %d: segment %s is not in the manifest", ErrIntegrity, it.ref.Name, i, c.Segment)
		}
		return fmt.Errorf("item %q: chunk %d: segment %s is not in the manifest", it.ref.Name, i, c.Segment)
	}
	if c.ID != "" && !validChunkID(c.ID) {
		return fmt.Errorf("%w: item %q: chunk %d has an invalid id", ErrIntegrity, it.ref.Name, i)
	}
	if c.Offset < 0 || c.Length <= 0 || c.Size < 0 {
		return fmt.Errorf("%w: item %q: chunk %d has an invalid range", ErrIntegrity, it.ref.Name, i)
	}
	return nil
}

// readAheadEntries is how many of an item's chunks a reader keeps expanded ahead of the read (from
// its list chunks): enough for runEnd to span ReadAheadWindow of small chunks with one ranged read
// (~1.5 KiB a compressed 4 KiB chunk), ~300 KiB of memory whatever the item's size.
const readAheadEntries = 2048

// fill expands the item's next list chunks (itemReader.lists) once fewer than readAheadEntries/2
// chunks are left to read, until readAheadEntries are: runEnd then sees far enough ahead, and the
// reader holds at most readAheadEntries+listMax entries, whatever the item's size. The chunks read
// so far are dropped (base counts them).
func (it *itemReader) fill() error {
	if it.lists == nil || len(it.ref.Chunks)-it.next >= readAheadEntries/2 {
		return nil
	}
	rest := it.ref.Chunks[it.next:]
	win := make([]Chunk, len(rest), readAheadEntries+listMax)
	copy(win, rest)
	it.base += it.next
	it.ref.Chunks, it.next = win, 0
	for len(it.ref.Chunks) < readAheadEntries {
		cs, err := it.lists.next()
		if err != nil {
			return err
		}
		if cs == nil {
			it.lists = nil
			break
		}
		at := it.base + len(it.ref.Chunks)
		for i, c := range cs {
			if err := it.checkChunk(at+i, c); err != nil {
				return err
			}
		}
		it.ref.Chunks = append(it.ref.Chunks, cs...)
	}
	return nil
}

// Opener reads items of one snapshot like OpenItem, for many items: it remembers the header and
// final age chunk of the segments it opened last, so each further item of such a segment costs only
// the ranged read of its own frames instead of three (header, final chunk, frames) — on a remote
// repository that is a third of the GETs and round trips of a restore of many small objects.
// It is safe for concurrent use.
type Opener struct {
	st    store.Store
	segs  map[string]SegmentInfo
	ids   []age.Identity
	heads *headCache
}

// NewOpener returns an Opener for the segments of segs.
func NewOpener(st store.Store, segs map[string]SegmentInfo, ids []age.Identity) *Opener {
	return &Opener{st: st, segs: segs, ids: []age.Identity{&unwrapCache{ids: ids}}, heads: &headCache{}}
}

// unwrapCache is an age.Identity that remembers the file key its identities unwrapped from a
// header's stanzas: every item of a segment opens the same header, and an X25519 unwrap per object
// was ~5 % of a restore's CPU. age still checks the header's MAC with the key on every open, so a
// changed header is refused as before.
type unwrapCache struct {
	ids  []age.Identity
	mu   sync.Mutex
	keys map[string][]byte
}

// unwrapCacheSize bounds the headers remembered (a few dozen bytes each).
const unwrapCacheSize = 1024

func (u *unwrapCache) Unwrap(stanzas []*age.Stanza) ([]byte, error) {
	var kb strings.Builder
	for _, s := range stanzas {
		kb.WriteString(s.Type)
		for _, a := range s.Args {
			kb.WriteString("\x00" + a)
		}
		kb.WriteString("\x01")
		kb.Write(s.Body)
		kb.WriteString("\x02")
	}
	k := kb.String()
	u.mu.Lock()
	fk, ok := u.keys[k]
	u.mu.Unlock()
	if ok {
		return bytes.Clone(fk), nil
	}
	// Like age itself: the first identity that does not answer ErrIncorrectIdentity decides.
	for _, id := range u.ids {
		fk, err := id.Unwrap(stanzas)
		if errors.Is(err, age.ErrIncorrectIdentity) {
			continue
		}
		if err != nil {
			return nil, err
		}
		u.mu.Lock()
		if u.keys == nil || len(u.keys) >= unwrapCacheSize {
			u.keys = map[string][]byte{}
		}
		u.keys[k] = bytes.Clone(fk)
		u.mu.Unlock()
		return fk, nil
	}
	return nil, age.ErrIncorrectIdentity
}

// Open is OpenItem with the Opener's segment cache; the same integrity checks apply.
func (o *Opener) Open(ctx context.Context, ref ItemRef) (io.ReadCloser, error) {
	return openItem(ctx, o.st, o.segs, o.ids, ref, o.heads)
}

// headCacheSize bounds the segments whose opening bytes an Opener keeps (at most ~128 KiB each):
// restores read items in catalogue order, so only the few segments being read matter.
const headCacheSize = 16

// headCache remembers, for the last few segments, the ciphertext spans an open reads.
type headCache struct {
	mu    sync.Mutex
	order []string
	spans map[string][]span
}

func (h *headCache) get(key string) []span {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.spans[key]
}

func (h *headCache) put(key string, sp []span) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.spans == nil {
		h.spans = map[string][]span{}
	}
	if _, ok := h.spans[key]; ok {
		return
	}
	if len(h.order) == headCacheSize {
		delete(h.spans, h.order[0])
		h.order = h.order[1:]
	}
	h.order = append(h.order, key)
	h.spans[key] = sp
}

type itemReader struct {
	ctx  context.Context
	st   store.Store
	segs map[string]SegmentInfo
	ids  []age.Identity
	ref  ItemRef

	seg  *openSegment
	next int // index in ref.Chunks of the next chunk to open
	// lists, when the item has chunk lists, expands them into ref.Chunks as the read goes (fill);
	// base is the item's chunks dropped from ref.Chunks before it.
	lists *listCursor
	base  int
	cur   io.Reader
	lz    *lz4.Reader
	chunk Chunk
	left  int64 // bytes left in the current chunk
	hash  hash.Hash
	n     int64
	err   error
	heads *headCache
	// run (the plaintext of segment runSeg from runOff), dec and small serve small chunks
	// (openSmallChunk) without a stream reader.
	run, dec []byte
	runSeg   string
	runOff   int64
	small    bytes.Reader
}

func (it *itemReader) where() string {
	return fmt.Sprintf("item %q, chunk %d, segment %s", it.ref.Name, it.base+it.next, it.chunk.Segment)
}

// openSeg makes it.seg the segment holding chunk c and checks that c lies inside it.
func (it *itemReader) openSeg(c Chunk) error {
	if it.seg == nil || it.seg.info.ID != c.Segment {
		if it.seg != nil {
			it.seg.src.release()
		}
		s, err := openSegmentAt(it.ctx, it.st, it.segs[c.Segment], it.ids, it.heads)
		if err != nil {
			it.seg = nil
			return fmt.Errorf("item %q: %w", it.ref.Name, err)
		}
		it.seg = s
	}
	if c.Offset+c.Length > it.seg.size || c.Offset+c.Length < c.Offset {
		return fmt.Errorf("%w: %s: range %d+%d beyond plaintext size %d", ErrIntegrity, it.where(), c.Offset, c.Length, it.seg.size)
	}
	return nil
}

func (it *itemReader) openChunk() error {
	c := it.ref.Chunks[it.next]
	it.chunk = c
	if err := it.openSeg(c); err != nil {
		return err
	}
	small := c.Length <= smallFrame && c.Size <= smallFrame
	if small && it.inRun(c) { // read already with the run it is in: no runEnd scan per chunk
		return it.openSmallChunk(c)
	}
	it.seg.src.expect(it.seg.hdr, c.Offset, it.runEnd(it.next))
	if small {
		return it.openSmallChunk(c)
	}
	it.lz = lz4.NewReader(io.NewSectionReader(it.seg.plain, c.Offset, c.Length))
	_ = it.lz.Apply(lz4.ConcurrencyOption(1))
	tr := tar.NewReader(it.lz)
	h, err := tr.Next()
	if err != nil {
		return classify(err, it.where()+": tar header", it.seg.src)
	}
	want := ChunkEntry(it.ref.Name, c, it.next, len(it.ref.Chunks))
	if h.Name != want || h.Size != c.Size || (h.Typeflag != tar.TypeReg && h.Typeflag != tar.TypeRegA) {
		return fmt.Errorf("%w: %s: found entry %q (%d bytes), want %q (%d bytes)", ErrIntegrity, it.where(), h.Name, h.Size, want, c.Size)
	}
	it.cur = tr
	it.left = c.Size
	return nil
}

// smallFrame bounds the chunks (frame and payload) openChunk decodes whole into the reader's own
// buffers: an LZ4 stream reader allocates and clears block buffers of up to 4 MiB per frame, which
// made reading 16 KiB content-defined chunks five times slower than 4 MiB ones.
const smallFrame = 256 << 10

// inRun reports whether chunk c's frame lies in the run of plaintext openSmallChunk read last.
func (it *itemReader) inRun(c Chunk) bool {
	return it.runSeg == c.Segment && c.Offset >= it.runOff && c.Offset+c.Length <= it.runOff+int64(len(it.run))
}

// openSmallChunk reads chunk c's frame with one ReadAt and decodes it in memory, with the checks
// openChunk applies (entry name and size; the frame's end), and serves its bytes from there.
func (it *itemReader) openSmallChunk(c Chunk) error {
	if !it.inRun(c) {
		// Read the plaintext of the whole run of chunks this one starts with one ReadAt: one
		// decryption pass and one allocation-free copy instead of one per chunk.
		end := it.runEnd(it.next)
		if cap(it.run) < int(end-c.Offset) {
			it.run = make([]byte, end-c.Offset)
		}
		it.run = it.run[:end-c.Offset]
		if n, err := it.seg.plain.ReadAt(it.run, c.Offset); n < len(it.run) {
			it.runSeg = ""
			if err == nil || err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return classify(err, it.where(), it.seg.src)
		}
		it.runSeg, it.runOff = c.Segment, c.Offset
	}
	frame := it.run[c.Offset-it.runOff : c.Offset-it.runOff+c.Length]
	if need := int(c.Size) + 2*tarSlack; cap(it.dec) < need {
		it.dec = make([]byte, need)
	}
	hl, err := it.decodeChunk(frame, it.dec[:cap(it.dec)], c)
	if err != nil {
		return err
	}
	it.small.Reset(it.dec[hl : hl+int(c.Size)])
	it.cur, it.lz = &it.small, nil
	it.left = c.Size
	return nil
}

// readGap is the most bytes of other frames one ranged read may carry between two chunks of an item
// (content-addressed chunks reused from several snapshots interleave with other items' chunks).
const readGap = 64 << 10

// runEnd is where the run of chunks from i on that lie in one segment, in order and at most readGap
// apart, ends (within ReadAheadWindow): one ranged read then serves them all, where reading each
// small content-addressed chunk alone would cost a GET per 16 KiB.
func (it *itemReader) runEnd(i int) int64 {
	c := it.ref.Chunks[i]
	end := c.Offset + c.Length
	for _, n := range it.ref.Chunks[i+1:] {
		if n.Segment != c.Segment || n.Offset < end || n.Offset-end > readGap || n.Offset+n.Length-c.Offset > ReadAheadWindow {
			break
		}
		end = n.Offset + n.Length
	}
	return end
}

// endChunk reads the rest of the frame (padding, checksum) so LZ4's content checksum is verified.
func (it *itemReader) endChunk() error {
	if it.lz == nil { // a small chunk: its whole frame was decoded
		it.cur = nil
		it.next++
		return nil
	}
	if _, err := io.Copy(io.Discard, it.lz); err != nil {
		return classify(err, it.where()+": frame end", it.seg.src)
	}
	it.cur, it.lz = nil, nil
	it.next++
	return nil
}

func (it *itemReader) Read(p []byte) (int, error) {
	if it.err != nil {
		return 0, it.err
	}
	if len(p) == 0 {
		return 0, nil
	}
	for {
		if err := it.ctx.Err(); err != nil {
			it.err = err
			return 0, err
		}
		if it.cur == nil {
			if err := it.fill(); err != nil {
				it.err = err
				return 0, err
			}
			if it.next == len(it.ref.Chunks) {
				it.err = it.finish()
				return 0, it.err
			}
			if err := it.openChunk(); err != nil {
				it.err = err
				return 0, err
			}
		}
		if it.left == 0 {
			if err := it.endChunk(); err != nil {
				it.err = err
				return 0, err
			}
			continue
		}
		if int64(len(p)) > it.left {
			p = p[:it.left]
		}
		n, err := it.cur.Read(p)
		it.hash.Write(p[:n])
		it.n += int64(n)
		it.left -= int64(n)
		if err == io.EOF && it.left > 0 {
			err = io.ErrUnexpectedEOF
		}
		if err != nil && err != io.EOF {
			it.err = classify(err, it.where(), it.seg.src)
			return n, it.err
		}
		if n > 0 {
			return n, nil
		}
	}
}

func (it *itemReader) finish() error {
	sum := hex.EncodeToString(it.hash.Sum(nil))
	if it.n != it.ref.Size || sum != it.ref.SHA256 {
		return fmt.Errorf("%w: item %q (segment %s): read %d bytes sha256 %s, recorded %d bytes sha256 %s",
			ErrIntegrity, it.ref.Name, it.chunk.Segment, it.n, sum, it.ref.Size, it.ref.SHA256)
	}
	return io.EOF
}

// Close releases the reader; it does not check integrity (read to EOF for that).
func (it *itemReader) Close() error {
	if it.err == nil {
		it.err = ErrClosed
	}
	if it.seg != nil {
		it.seg.src.release()
		it.seg = nil
	}
	if it.lists != nil {
		it.lists.close()
		it.lists = nil
	}
	return nil
}

// hashReader hashes and counts the ciphertext as it streams past.
type hashReader struct {
	r   io.Reader
	h   hash.Hash
	n   int64
	err error // first store error
}

func (h *hashReader) Read(p []byte) (int, error) {
	n, err := h.r.Read(p)
	h.h.Write(p[:n])
	h.n += int64(n)
	if err != nil && err != io.EOF {
		err = &storeError{err}
		if h.err == nil {
			h.err = err
		}
	}
	return n, err
}

func (h *hashReader) check(seg SegmentInfo) error {
	sum := hex.EncodeToString(h.h.Sum(nil))
	if h.n != seg.Size || sum != seg.SHA256 {
		return fmt.Errorf("%w: segment %s: %d bytes sha256 %s, recorded %d bytes sha256 %s",
			ErrIntegrity, seg.ID, h.n, sum, seg.Size, seg.SHA256)
	}
	return nil
}

func segKey(seg SegmentInfo) string {
	if seg.Key != "" {
		return seg.Key
	}
	return SegmentKey(seg.ID)
}

// ReadSegment streams a whole segment with one sequential GET and calls fn for every tar entry in
// order (names include ".partNNNNNN" for multi-chunk items). Entry data is authenticated by age as it
// is read; the ciphertext SHA-256 and size are checked at the end, and a decoding failure is reported as
// ErrIntegrity when the ciphertext does not match the record. An error from fn is returned as is.
func ReadSegment(ctx context.Context, st store.Store, seg SegmentInfo, ids []age.Identity, fn func(name string, r io.Reader) error) error {
	rc, err := st.Open(ctx, segKey(seg), 0, -1)
	if err != nil {
		return fmt.Errorf("open segment %s: %w", seg.ID, err)
	}
	defer rc.Close()
	hr := &hashReader{r: rc, h: sha256.New()}
	fnErr, err := readSegment(hr, ids, fn)
	if fnErr != nil {
		return fnErr
	}
	if err != nil {
		if hr.err != nil {
			return fmt.Errorf("read segment %s: %w", seg.ID, hr.err)
		}
		var nim *age.NoIdentityMatchError
		if errors.As(err, &nim) || ctx.Err() != nil {
			return classify(err, "segment "+seg.ID, nil)
		}
		// Bad bytes: say whether the stored object changed since it was written.
		if _, derr := io.Copy(io.Discard, hr); derr == nil {
			if cerr := hr.check(seg); cerr != nil {
				return fmt.Errorf("%w (%v)", cerr, err)
			}
		}
		return classify(err, "segment "+seg.ID, nil)
	}
	if _, err := io.Copy(io.Discard, hr); err != nil {
		return fmt.Errorf("read segment %s: %w", seg.ID, err)
	}
	return hr.check(seg)
}

func readSegment(src io.Reader, ids []age.Identity, fn func(string, io.Reader) error) (fnErr, err error) {
	ar, err := age.Decrypt(src, ids...)
	if err != nil {
		return nil, err
	}
	lz := lz4.NewReader(ar)
	_ = lz.Apply(lz4.ConcurrencyOption(1))
	tr := tar.NewReader(lz)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
		if h.Typeflag != tar.TypeReg && h.Typeflag != tar.TypeRegA {
			return nil, fmt.Errorf("unexpected tar entry type %q for %q", h.Typeflag, h.Name)
		}
		// cfbackup never writes a name ValidName refuses (FORMAT.md): one is forged or damaged, and
		// extracting it with tar could write outside the target directory.
		if err := ValidName(h.Name); err != nil {
			return nil, fmt.Errorf("tar entry: %w", err)
		}
		er := &errRecorder{r: tr}
		if err := fn(h.Name, er); err != nil {
			if er.err != nil { // fn failed because the bytes underneath are bad
				return nil, er.err
			}
			return fmt.Errorf("entry %q: %w", h.Name, err), nil
		}
		if er.err != nil {
			return nil, er.err
		}
	}
	// The rest of the last frame and the age stream's final chunk must authenticate, and nothing may follow.
	rest, err := io.Copy(io.Discard, lz)
	if err != nil {
		return nil, err
	}
	if rest != 0 {
		return nil, fmt.Errorf("%d bytes after the tar end-of-archive", rest)
	}
	return nil, nil
}

// errRecorder remembers a decoding error fn saw, so it is not mistaken for fn's own failure.
type errRecorder struct {
	r   io.Reader
	err error
}

func (e *errRecorder) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if err != nil && err != io.EOF && e.err == nil {
		e.err = err
	}
	return n, err
}

// VerifySegment checks that a segment exists with the recorded size and ciphertext SHA-256. It needs no
// identity, so `verify` runs on hosts that only hold recipients.
func VerifySegment(ctx context.Context, st store.Store, seg SegmentInfo) error {
	fi, err := st.Stat(ctx, segKey(seg))
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("%w: segment %s: %w", ErrIntegrity, seg.ID, err)
		}
		return fmt.Errorf("stat segment %s: %w", seg.ID, err)
	}
	if fi.Size != seg.Size {
		return fmt.Errorf("%w: segment %s: stored %d bytes, recorded %d", ErrIntegrity, seg.ID, fi.Size, seg.Size)
	}
	rc, err := st.Open(ctx, segKey(seg), 0, -1)
	if err != nil {
		return fmt.Errorf("open segment %s: %w", seg.ID, err)
	}
	defer rc.Close()
	hr := &hashReader{r: rc, h: sha256.New()}
	if _, err := io.Copy(io.Discard, hr); err != nil {
		return fmt.Errorf("read segment %s: %w", seg.ID, err)
	}
	return hr.check(seg)
}

package archive

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"time"

	"github.com/cfbackup/cfbackup/pkg/cdc"
)

// ChunkedOptions configure WriteChunked.
type ChunkedOptions struct {
	// Params cut the item into content-defined chunks (cdc.Default when zero). Max must not exceed
	// the Writer's ChunkSize.
	Params cdc.Params
	// Key keys the chunk ids (ChunkID): derived from the writer secret for this purpose only.
	Key []byte
	// Known returns where a chunk with this id is already stored (an earlier snapshot's chunk from
	// the source's chunk index, or an earlier item of this run): the item then references it instead
	// of storing it again. The caller must list the chunk's segment in the manifest
	// (Session.Reference) and make sure it still exists. Nil: every chunk is stored.
	Known func(id string) (Chunk, bool)
	// Lists stores the item's chunk list as list chunks (docs/FORMAT.md "Chunk lists") when it has
	// more than ListThreshold chunks: the returned ItemRef then has Lists set, and Chunks still holds
	// the data chunks for the caller's index; the catalogue must record Lists only (ItemRef.Catalogued).
	Lists bool
	// Placed, when set, is told every chunk of the item (data and list chunks, repeats included) in
	// order as its place becomes known; Known must return it from then on (a chunk index does).
	// With Lists, the returned ItemRef then holds no Chunks beyond an inline item's, and the item's
	// chunks are held only until placed, so memory does not grow with the item's size.
	Placed func(Chunk)
}

// ChunkedStats say how much of a chunked item was stored and how much referenced.
type ChunkedStats struct {
	Chunks, Stored int
	StoredBytes    int64
	// Lists and ListsStored count list chunks (ChunkedOptions.Lists), ListBytes their stored bytes.
	Lists, ListsStored int
	ListBytes          int64
}

// WriteChunked streams r into the archive as content-addressed chunks (docs/FORMAT.md
// "Content-defined chunks"): r is cut with content-defined boundaries, each chunk is named by its
// keyed hash, and only chunks Known does not return (nor an earlier chunk of the same item) are
// stored, each as the tar entry "chunks/<id>". The item's SHA-256 covers its bytes as WriteItem's
// does, so readers check it the same way. Like WriteItem it must not be called concurrently with
// other writes, and a read error loses only this item. With Lists and Placed set, list chunks are
// cut and stored as the chunks are placed: memory does not grow with the item's size.
func (w *Writer) WriteChunked(name string, r io.Reader, o ChunkedOptions) (ItemRef, ChunkedStats, error) {
	var st ChunkedStats
	p, err := w.checkChunked(name, o)
	if err != nil {
		return ItemRef{}, st, err
	}
	ref := ItemRef{Name: name}
	h := sha256.New()
	mtime := w.opts.Now().Truncate(time.Second)
	c := &collector{keepAll: o.Placed == nil || !o.Lists}
	if o.Lists {
		c.lists = &lister{w: w, key: o.Key, pl: w.newPlacer(o.Known, o.Placed, mtime), st: &st}
	}
	pl := w.newPlacer(o.Known, o.Placed, mtime)
	readErr := w.placeAll(cdc.New(r, p), pl, c.add, o.Key, h, &ref, &st)
	if readErr == nil {
		readErr = pl.drain(true, c.add)
	} else {
		_ = pl.drain(true, func(Chunk) error { return nil })
	}
	if readErr != nil {
		if w.ctx.Err() != nil {
			w.fail(readErr)
		}
		return ItemRef{}, st, readErr
	}
	if err := w.failed(); err != nil {
		return ItemRef{}, st, err
	}
	if st.Chunks == 0 { // an empty item is one empty chunk, as WriteItem stores it
		r, err := w.WriteItem(name, bytes.NewReader(nil))
		return r, st, err
	}
	ref.SHA256 = hex.EncodeToString(h.Sum(nil))
	ref.Chunks = c.chunks
	if o.Lists && st.Chunks > ListThreshold {
		if ref.Lists, err = c.lists.finish(); err != nil {
			return ItemRef{}, st, err
		}
		if !c.keepAll {
			ref.Chunks = nil
		}
	}
	return ref, st, nil
}

// placeAll cuts r into chunks and places them with pl, draining those already saved to sink.
func (w *Writer) placeAll(ch *cdc.Chunker, pl *placer, sink func(Chunk) error, key []byte, h hash.Hash, ref *ItemRef, st *ChunkedStats) error {
	for {
		if err := w.ctx.Err(); err != nil {
			return err
		}
		data, err := ch.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read item %q: %w", ref.Name, err)
		}
		h.Write(data)
		ref.Size += int64(len(data))
		st.Chunks++
		stored, err := pl.add(ChunkID(key, data), data)
		if err != nil {
			return err
		}
		if stored {
			st.Stored++
			st.StoredBytes += int64(len(data))
		}
		if err := pl.drain(false, sink); err != nil {
			return err
		}
	}
}

// collector receives an item's data chunks in order as they are placed: it keeps them (all, or
// only as many as an item keeps inline) and passes them on to the lister.
type collector struct {
	keepAll bool
	chunks  []Chunk
	lists   *lister
}

func (c *collector) add(ch Chunk) error {
	if c.keepAll || len(c.chunks) <= ListThreshold {
		c.chunks = append(c.chunks, ch)
	}
	if c.lists != nil {
		return c.lists.add(ch)
	}
	return nil
}

// storeChunk queues data as the content-addressed entry chunks/<id>.
func (w *Writer) storeChunk(id string, data []byte, mtime time.Time) (*job, error) {
	buf := bytes.Clone(data)
	j := &job{entry: ChunkPrefix + id, data: &buf, mtime: mtime, ready: make(chan struct{}), saved: make(chan struct{}),
		class: w.class, release: func() {}}
	j.chunk = Chunk{Size: int64(len(data)), ID: id}
	if err := w.reserveFrame(j, len(data)); err != nil {
		return nil, err
	}
	w.ordered <- j
	w.work <- j
	return j, nil
}

// maxPending bounds the chunks a placer holds before it waits for the oldest to be saved.
const maxPending = 4096

// placer places the content-addressed chunks of one item in order: a chunk whose id came earlier in
// the item is that chunk again, one Known returns (same id and size) is referenced, any other is
// stored (storeChunk). drain hands on the placed chunks, oldest first, once their place is known.
type placer struct {
	w      *Writer
	known  func(id string) (Chunk, bool)
	placed func(Chunk) // ChunkedOptions.Placed
	mtime  time.Time
	slots  []placed          // placed, not yet drained
	mine   map[string]placed // id → its first occurrence: every one of the item without placed, else the pending ones
}

// placed is one chunk of the item: known, or being stored by job.
type placed struct {
	c   Chunk
	job *job
}

func (w *Writer) newPlacer(known func(id string) (Chunk, bool), onPlaced func(Chunk), mtime time.Time) *placer {
	return &placer{w: w, known: known, placed: onPlaced, mtime: mtime, mine: map[string]placed{}}
}

// add places the chunk id holding data and reports whether it is stored by this call.
func (p *placer) add(id string, data []byte) (bool, error) {
	if s, ok := p.mine[id]; ok {
		p.slots = append(p.slots, s)
		return false, nil
	}
	if p.known != nil {
		if c, ok := p.known(id); ok && c.ID == id && c.Size == int64(len(data)) {
			p.mine[id] = placed{c: c}
			p.slots = append(p.slots, placed{c: c})
			return false, nil
		}
	}
	j, err := p.w.storeChunk(id, data, p.mtime)
	if err != nil {
		return false, err
	}
	p.mine[id] = placed{job: j}
	p.slots = append(p.slots, placed{job: j})
	return true, nil
}

// drain hands the placed chunks whose place is known to sink (and ChunkedOptions.Placed), in order:
// with wait, all of them; without, those saved already, waiting only while more than maxPending are
// held. After a writer failure it stops with the failure.
func (p *placer) drain(wait bool, sink func(Chunk) error) error {
	for len(p.slots) > 0 {
		s := p.slots[0]
		if s.job != nil {
			if !wait && len(p.slots) <= maxPending {
				select {
				case <-s.job.saved:
				default:
					return nil
				}
			}
			<-s.job.saved
			if err := p.w.failed(); err != nil {
				return err
			}
			s.c = s.job.chunk
		}
		p.slots = p.slots[1:]
		if p.placed == nil {
			p.mine[s.c.ID] = placed{c: s.c}
		} else {
			if m, ok := p.mine[s.c.ID]; ok && m.job == s.job {
				delete(p.mine, s.c.ID) // Known returns it from now on
			}
			p.placed(s.c)
		}
		if err := sink(s.c); err != nil {
			return err
		}
	}
	return nil
}

// listBatch is how many bytes of list chunks a lister holds before it stores them, one after the
// other: a reader then reads an item's list chunks with few ranged reads, not one among the data
// chunks per list chunk.
const listBatch = 1 << 20

// lister cuts an item's chunk list into list chunks (cutLists) as the data chunks are placed and
// stores them in batches (listBatch), reusing those Known returns.
type lister struct {
	w      *Writer
	key    []byte
	pl     *placer
	st     *ChunkedStats
	group  []Chunk
	batch  [][]byte
	nbatch int
	sums   []string // of the list chunks placed and not yet collected
	lists  []Chunk
}

func (l *lister) add(c Chunk) error {
	l.group = append(l.group, c)
	if !cutAfter(c, len(l.group)) {
		return nil
	}
	if err := l.cut(); err != nil {
		return err
	}
	if l.nbatch >= listBatch {
		return l.flush()
	}
	return nil
}

// cut encodes the current group as a list chunk of the batch.
func (l *lister) cut() error {
	data, err := encodeList(l.group)
	if err != nil {
		return err
	}
	l.group = l.group[:0]
	l.batch = append(l.batch, data)
	l.nbatch += len(data)
	return nil
}

// flush places the batch's list chunks.
func (l *lister) flush() error {
	for _, data := range l.batch {
		sum := sha256.Sum256(data)
		l.sums = append(l.sums, hex.EncodeToString(sum[:]))
		l.st.Lists++
		stored, err := l.pl.add(ChunkID(l.key, data), data)
		if err != nil {
			return err
		}
		if stored {
			l.st.ListsStored++
			l.st.ListBytes += int64(len(data))
		}
	}
	l.batch, l.nbatch = l.batch[:0], 0
	return l.pl.drain(false, l.collect)
}

// collect records a placed list chunk with its SHA-256.
func (l *lister) collect(c Chunk) error {
	c.SHA256, l.sums = l.sums[0], l.sums[1:]
	l.lists = append(l.lists, c)
	return nil
}

// finish stores the rest and returns the list chunks, each with its SHA-256.
func (l *lister) finish() ([]Chunk, error) {
	if len(l.group) > 0 {
		if err := l.cut(); err != nil {
			return nil, err
		}
	}
	if err := l.flush(); err != nil {
		return nil, err
	}
	if err := l.pl.drain(true, l.collect); err != nil {
		return nil, err
	}
	return l.lists, nil
}

// Catalogued is ref as the catalogue records it: with list chunks, without the data chunks they list.
func (ref ItemRef) Catalogued() ItemRef {
	if len(ref.Lists) > 0 {
		ref.Chunks = nil
	}
	return ref
}

// checkChunked checks a WriteChunked call before anything is read and returns its parameters.
func (w *Writer) checkChunked(name string, o ChunkedOptions) (cdc.Params, error) {
	p := o.Params
	if p == (cdc.Params{}) {
		p = cdc.Default
	}
	switch {
	case w.closed:
		return p, ErrClosed
	case p.Check() != nil:
		return p, p.Check()
	case p.Max > w.opts.ChunkSize:
		return p, fmt.Errorf("archive: chunk maximum %d exceeds the chunk size %d", p.Max, w.opts.ChunkSize)
	case len(o.Key) == 0:
		return p, fmt.Errorf("archive: no chunk id key")
	}
	if err := ValidName(name); err != nil {
		return p, err
	}
	return p, w.failed()
}

// ChunkSize is the largest tar entry payload of this Writer (WriterOptions.ChunkSize): a
// content-defined chunk may not be larger.
func (w *Writer) ChunkSize() int { return w.opts.ChunkSize }

package archive

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
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
// other writes, and a read error loses only this item.
func (w *Writer) WriteChunked(name string, r io.Reader, o ChunkedOptions) (ItemRef, ChunkedStats, error) {
	var st ChunkedStats
	p, err := w.checkChunked(name, o)
	if err != nil {
		return ItemRef{}, st, err
	}
	ref := ItemRef{Name: name}
	h := sha256.New()
	mtime := w.opts.Now().Truncate(time.Second)
	pl := w.newPlacer(o.Known, mtime)
	ch := cdc.New(r, p)
	var readErr error
	for {
		if err := w.ctx.Err(); err != nil {
			readErr = err
			break
		}
		data, err := ch.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			readErr = fmt.Errorf("read item %q: %w", name, err)
			break
		}
		h.Write(data)
		ref.Size += int64(len(data))
		st.Chunks++
		stored, err := pl.add(ChunkID(o.Key, data), data)
		if err != nil {
			readErr = err
			break
		}
		if stored {
			st.Stored++
			st.StoredBytes += int64(len(data))
		}
	}
	chunks := pl.wait()
	if readErr != nil {
		if w.ctx.Err() != nil {
			w.fail(readErr)
		}
		return ItemRef{}, st, readErr
	}
	if err := w.failed(); err != nil {
		return ItemRef{}, st, err
	}
	ref.Chunks = chunks
	if len(ref.Chunks) == 0 { // an empty item is one empty chunk, as WriteItem stores it
		r, err := w.WriteItem(name, bytes.NewReader(nil))
		return r, st, err
	}
	ref.SHA256 = hex.EncodeToString(h.Sum(nil))
	if o.Lists && len(ref.Chunks) > ListThreshold {
		if err := w.writeLists(&ref, o, mtime, &st); err != nil {
			return ItemRef{}, st, err
		}
	}
	return ref, st, nil
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

// placer places the content-addressed chunks of one item in order: a chunk whose id came earlier in
// the item is that chunk again, one Known returns (same id and size) is referenced, any other is
// stored (storeChunk).
type placer struct {
	w     *Writer
	known func(id string) (Chunk, bool)
	mtime time.Time
	slots []placed
	mine  map[string]int // id → slot of its first occurrence
}

// placed is one chunk of the item: known, or being stored by job.
type placed struct {
	c   Chunk
	job *job
}

func (w *Writer) newPlacer(known func(id string) (Chunk, bool), mtime time.Time) *placer {
	return &placer{w: w, known: known, mtime: mtime, mine: map[string]int{}}
}

// add places the chunk id holding data and reports whether it is stored by this call.
func (p *placer) add(id string, data []byte) (bool, error) {
	if i, ok := p.mine[id]; ok {
		p.slots = append(p.slots, p.slots[i])
		return false, nil
	}
	if p.known != nil {
		if c, ok := p.known(id); ok && c.ID == id && c.Size == int64(len(data)) {
			p.mine[id] = len(p.slots)
			p.slots = append(p.slots, placed{c: c})
			return false, nil
		}
	}
	j, err := p.w.storeChunk(id, data, p.mtime)
	if err != nil {
		return false, err
	}
	p.mine[id] = len(p.slots)
	p.slots = append(p.slots, placed{job: j})
	return true, nil
}

// wait waits until the chunks this placer stores are saved and returns every chunk placed, in
// order (after a writer failure, those not saved are incomplete: check Writer.failed).
func (p *placer) wait() []Chunk {
	out := make([]Chunk, len(p.slots))
	for i, s := range p.slots {
		if s.job != nil {
			<-s.job.saved
			s.c = s.job.chunk
		}
		out[i] = s.c
	}
	return out
}

// writeLists stores ref's chunk list as list chunks, reusing those Known returns, and sets
// ref.Lists (each with its SHA-256).
func (w *Writer) writeLists(ref *ItemRef, o ChunkedOptions, mtime time.Time, st *ChunkedStats) error {
	groups := cutLists(ref.Chunks)
	sums := make([]string, 0, len(groups))
	pl := w.newPlacer(o.Known, mtime)
	var err error
	for _, g := range groups {
		var data []byte
		if data, err = encodeList(g); err != nil {
			break
		}
		sum := sha256.Sum256(data)
		sums = append(sums, hex.EncodeToString(sum[:]))
		st.Lists++
		var stored bool
		if stored, err = pl.add(ChunkID(o.Key, data), data); err != nil {
			break
		}
		if stored {
			st.ListsStored++
			st.ListBytes += int64(len(data))
		}
	}
	lists := pl.wait()
	if err != nil {
		return err
	}
	if err := w.failed(); err != nil {
		return err
	}
	for i := range lists {
		lists[i].SHA256 = sums[i]
	}
	ref.Lists = lists
	return nil
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

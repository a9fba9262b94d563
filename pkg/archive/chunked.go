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
	type slot struct {
		c   Chunk
		job *job // set while the chunk is being stored by this call
	}
	var slots []slot
	mine := map[string]int{} // id → slot of its first occurrence in this item
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
		id := ChunkID(o.Key, data)
		st.Chunks++
		if i, ok := mine[id]; ok {
			slots = append(slots, slot{c: slots[i].c, job: slots[i].job})
			continue
		}
		if o.Known != nil {
			if c, ok := o.Known(id); ok && c.ID == id && c.Size == int64(len(data)) {
				mine[id] = len(slots)
				slots = append(slots, slot{c: c})
				continue
			}
		}
		j, err := w.storeChunk(id, data, mtime)
		if err != nil {
			readErr = err
			break
		}
		st.Stored++
		st.StoredBytes += int64(len(data))
		mine[id] = len(slots)
		slots = append(slots, slot{job: j})
	}
	for _, s := range slots {
		if s.job != nil {
			<-s.job.saved
		}
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
	ref.Chunks = make([]Chunk, len(slots))
	for i, s := range slots {
		if s.job != nil {
			s.c = s.job.chunk
		}
		ref.Chunks[i] = s.c
	}
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

// writeLists stores ref's chunk list as list chunks, reusing those Known returns, and sets
// ref.Lists (each with its SHA-256).
func (w *Writer) writeLists(ref *ItemRef, o ChunkedOptions, mtime time.Time, st *ChunkedStats) error {
	groups := cutLists(ref.Chunks)
	lists := make([]Chunk, len(groups))
	jobs := make([]*job, len(groups))
	mine := map[string]int{}
	var err error
	for i, g := range groups {
		var data []byte
		if data, err = encodeList(g); err != nil {
			break
		}
		id := ChunkID(o.Key, data)
		sum := sha256.Sum256(data)
		lists[i] = Chunk{ID: id, Size: int64(len(data)), SHA256: hex.EncodeToString(sum[:])}
		st.Lists++
		if k, ok := mine[id]; ok {
			lists[i], jobs[i] = lists[k], jobs[k]
			continue
		}
		mine[id] = i
		if o.Known != nil {
			if c, ok := o.Known(id); ok && c.ID == id && c.Size == int64(len(data)) {
				c.SHA256 = lists[i].SHA256
				lists[i] = c
				continue
			}
		}
		if jobs[i], err = w.storeChunk(id, data, mtime); err != nil {
			break
		}
		st.ListsStored++
		st.ListBytes += int64(len(data))
	}
	for i, j := range jobs {
		if j != nil {
			<-j.saved
			c := j.chunk
			c.SHA256 = lists[i].SHA256
			lists[i] = c
		}
	}
	if err != nil {
		return err
	}
	if err := w.failed(); err != nil {
		return err
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

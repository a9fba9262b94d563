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
}

// ChunkedStats say how much of a chunked item was stored and how much referenced.
type ChunkedStats struct {
	Chunks, Stored int
	StoredBytes    int64
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
		buf := bytes.Clone(data)
		j := &job{entry: ChunkPrefix + id, data: &buf, mtime: mtime, ready: make(chan struct{}), saved: make(chan struct{}),
			class: w.class, release: func() {}}
		j.chunk = Chunk{Size: int64(len(data)), ID: id}
		if err := w.reserveFrame(j, len(data)); err != nil {
			readErr = err
			break
		}
		w.ordered <- j
		w.work <- j
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
	return ref, st, nil
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

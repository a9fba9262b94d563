package archive

import (
	"errors"
	"io"
)

// PartReader is implemented by the readers OpenItem and Opener.Open return. Parts is for callers that
// upload a large item in parts (a multipart PUT): the returned reader's Read decodes each chunk's LZ4
// frame, read with one ranged read into b's frame buffer, straight into the caller's buffer — no LZ4
// stream reader with its block buffers, no tar reader, no copy from a decoded block. It checks what
// Read checks (entry names and sizes, the item's size and SHA-256 at its end, where a mismatch is the
// error instead of io.EOF), so an upload that reads it to its end before committing commits only an
// intact item. It must be the reader's first use. Callers pass large buffers (a part each): a chunk
// that does not fit what is left of the caller's buffer is decoded into b's data buffer and copied
// from there.
type PartReader interface {
	Parts(b *Buffers) io.Reader
}

// Parts returns the item's bytes as a reader that decodes chunks straight into the caller's buffers.
func (it *itemReader) Parts(b *Buffers) io.Reader {
	r := &partReader{it: it, b: b}
	if it.err == nil && (it.next != 0 || it.cur != nil || it.n != 0) {
		it.err = errors.New("archive: Parts after Read")
	}
	return r
}

// partReader is itemReader.Parts's reader.
type partReader struct {
	it *itemReader
	b  *Buffers
	// pend is what is left of a chunk decoded into b.data (it did not fit the caller's buffer);
	// its bytes are already hashed and counted.
	pend []byte
	// hl is the tar header length of the last chunk decoded: the next one of the same item, with a
	// name of the same length, has the same.
	hl   int
	save [tarSlack]byte
	// placed and copied count the chunks decoded straight into the caller's buffer and those
	// copied from b.data (tests).
	placed, copied int
}

func (r *partReader) Read(p []byte) (int, error) {
	it := r.it
	n := 0
	for n < len(p) {
		if len(r.pend) > 0 {
			k := copy(p[n:], r.pend)
			r.pend = r.pend[k:]
			n += k
			continue
		}
		if it.err != nil {
			break
		}
		if err := it.ctx.Err(); err != nil {
			it.err = err
			break
		}
		if it.next == len(it.ref.Chunks) {
			it.err = it.finish()
			break
		}
		k, err := r.chunk(p, n)
		if err != nil {
			it.err = err
			break
		}
		it.next++
		n += k
	}
	if n > 0 || it.err == nil {
		return n, nil
	}
	return 0, it.err
}

// chunk reads chunk it.next and places its bytes at p[at:] (returning how many) or, when they do not
// fit, in r.pend (returning 0). Either way they are hashed and counted.
func (r *partReader) chunk(p []byte, at int) (int, error) {
	it := r.it
	c := it.ref.Chunks[it.next]
	it.chunk = c
	frame, err := it.readFrame(r.b, c)
	if err != nil {
		return 0, err
	}
	size, avail := int(c.Size), len(p)-at
	// The two ways straight into p ignore errors: the fallback below decodes again and reports them.
	var ok bool
	switch {
	case avail >= size+2*tarSlack:
		// Room for the header, the bytes and their padding: decode there, then move the bytes
		// over the header (a copy within a buffer the chunk was just written to).
		if ok, _ = r.decodeAt(frame, p[at:], c); ok {
			copy(p[at:], p[at+r.hl:at+r.hl+size])
		}
	case at >= r.hl && r.hl > 0 && r.hl <= len(r.save) && avail >= size:
		// The bytes fit exactly: decode so that the header lands on the last bytes of the chunk
		// before, kept aside meanwhile. A header of another length, or padding that does not fit,
		// falls back to the copy below.
		h := r.hl
		copy(r.save[:h], p[at-h:at])
		ok, _ = r.decodeAt(frame, p[at-h:], c)
		ok = ok && r.hl == h
		copy(p[at-h:at], r.save[:h])
		r.hl = h
	}
	if ok {
		r.placed++
		it.hash.Write(p[at : at+size])
		it.n += int64(size)
		return size, nil
	}
	if need := size + 2*tarSlack; cap(r.b.data) < need {
		r.b.data = make([]byte, need)
	}
	if ok, err := r.decodeAt(frame, r.b.data[:cap(r.b.data)], c); !ok {
		return 0, err
	}
	r.copied++
	r.pend = r.b.data[r.hl : r.hl+size]
	it.hash.Write(r.pend)
	it.n += int64(size)
	return 0, nil
}

// decodeAt decodes frame into dst and checks it (itemReader.decodeChunk), leaving the tar header's
// length in r.hl. It reports whether the chunk's bytes are in dst, and why not.
func (r *partReader) decodeAt(frame, dst []byte, c Chunk) (bool, error) {
	hl, err := r.it.decodeChunk(frame, dst, c)
	if err != nil {
		return false, err
	}
	r.hl = hl
	return true, nil
}

// TrimTo drops the frame buffer if it is larger than frameMax bytes and the data buffer if it is
// larger than dataMax: a caller that reads items of every size through one Buffers keeps a frame
// buffer that fits any chunk (frames are at most a chunk) while dropping the data buffer that only a
// large item read whole needed.
func (b *Buffers) TrimTo(frameMax, dataMax int) {
	if cap(b.frame) > frameMax {
		b.frame = nil
	}
	if cap(b.data) > dataMax {
		b.data = nil
	}
}

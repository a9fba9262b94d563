package engine

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"strings"

	"filippo.io/age"

	"github.com/cfbackup/cfbackup/pkg/archive"
	"github.com/cfbackup/cfbackup/pkg/manifest"
)

// chunkProof confirms content-addressed chunks (docs/FORMAT.md "Content-defined chunks") by their
// keyed ids while verify --read-data streams segments: an incremental snapshot's items interleave
// chunks of several segments, which the in-order item hashing of verifyData cannot follow, and
// checking them again with ranged reads would read the data twice. An item all of whose chunks
// hash (HMAC with the writer secret's chunk key) to their recorded ids, with their recorded sizes,
// holds exactly the bytes that were written.
type chunkProof struct {
	key []byte
	ok  map[string]int64 // segment id + "\x00" + chunk id → size of a chunk whose bytes match its id
	// lists holds the bytes of the list chunks (docs/FORMAT.md "Chunk lists") the window's items
	// name, nil until read and confirmed by id: an item with lists is proved by its lists' chunks.
	lists map[string][]byte
}

// maxListBytes bounds a list chunk kept while a segment streams past (a writer makes ~12 KiB ones).
const maxListBytes = 1 << 20

// expectLists asks wrap to keep the bytes of these list chunks.
func (p *chunkProof) expectLists(ls []archive.Chunk) {
	if p == nil {
		return
	}
	for _, l := range ls {
		if _, ok := p.lists[l.Segment+"\x00"+l.ID]; !ok {
			p.lists[l.Segment+"\x00"+l.ID] = nil
		}
	}
}

// newChunkProof returns nil when the writer secret cannot be unwrapped (verify then falls back to
// ranged reads, as for any item it cannot confirm on the way).
func (e *Engine) newChunkProof(ctx context.Context, ids []age.Identity) *chunkProof {
	if e.Repo.Key() == nil || e.Repo.Legacy() {
		return nil
	}
	secret, err := e.Repo.WriterSecret(ctx, ids)
	if err != nil {
		return nil
	}
	return &chunkProof{key: archive.ChunkIDKey(secret), ok: map[string]int64{}, lists: map[string][]byte{}}
}

// wrap tees a content-addressed entry's bytes into its HMAC; done records the chunk when its bytes
// match its name. Other entries pass through.
func (p *chunkProof) wrap(seg, name string, r io.Reader) (io.Reader, func()) {
	id, ok := strings.CutPrefix(name, archive.ChunkPrefix)
	if p == nil || !ok {
		return r, func() {}
	}
	m := hmac.New(sha256.New, p.key)
	var w io.Writer = m
	var keep *bytes.Buffer
	if b, want := p.lists[seg+"\x00"+id]; want && b == nil {
		keep = &bytes.Buffer{}
		w = io.MultiWriter(m, &limitWriter{w: keep, n: maxListBytes})
	}
	cr := &sizeCounter{r: io.TeeReader(r, w)}
	return cr, func() {
		if hex.EncodeToString(m.Sum(nil)[:archive.ChunkIDLen/2]) == id {
			p.ok[seg+"\x00"+id] = cr.n
			if keep != nil && int64(keep.Len()) == cr.n {
				p.lists[seg+"\x00"+id] = keep.Bytes()
			}
		}
	}
}

// limitWriter keeps at most n bytes and drops the rest (a chunk that long is no list of ours).
type limitWriter struct {
	w io.Writer
	n int64
}

func (l *limitWriter) Write(b []byte) (int, error) {
	if k := min(int64(len(b)), l.n); k > 0 {
		l.w.Write(b[:k])
		l.n -= k
	}
	return len(b), nil
}

// proves reports whether every chunk of it was confirmed by its id. An item with list chunks is
// checked one list chunk at a time (never its whole chunk list at once).
func (p *chunkProof) proves(it manifest.Item) bool {
	if p == nil {
		return false
	}
	var size int64
	var n int
	each := func(chunks []archive.Chunk) bool {
		for _, c := range chunks {
			size += c.Size
			got, ok := p.ok[c.Segment+"\x00"+c.ID]
			if c.ID == "" || !ok || got != c.Size {
				return false
			}
		}
		n += len(chunks)
		return true
	}
	if len(it.Lists) == 0 {
		return each(it.Chunks) && n > 0 && size == it.Size
	}
	if len(it.Chunks) > 0 {
		return false
	}
	for _, l := range it.Lists {
		cs, err := archive.DecodeListChecked(l, p.lists[l.Segment+"\x00"+l.ID])
		if err != nil || !each(cs) || size > it.Size {
			return false
		}
	}
	return n > 0 && size == it.Size
}

// endWindow forgets the list chunks kept for a window's items.
func (p *chunkProof) endWindow() {
	if p != nil {
		clear(p.lists)
	}
}

type sizeCounter struct {
	r io.Reader
	n int64
}

func (c *sizeCounter) Read(b []byte) (int, error) {
	n, err := c.r.Read(b)
	c.n += int64(n)
	return n, err
}

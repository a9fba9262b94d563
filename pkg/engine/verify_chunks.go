package engine

import (
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
	return &chunkProof{key: archive.ChunkIDKey(secret), ok: map[string]int64{}}
}

// wrap tees a content-addressed entry's bytes into its HMAC; done records the chunk when its bytes
// match its name. Other entries pass through.
func (p *chunkProof) wrap(seg, name string, r io.Reader) (io.Reader, func()) {
	id, ok := strings.CutPrefix(name, archive.ChunkPrefix)
	if p == nil || !ok {
		return r, func() {}
	}
	m := hmac.New(sha256.New, p.key)
	cr := &sizeCounter{r: io.TeeReader(r, m)}
	return cr, func() {
		if hex.EncodeToString(m.Sum(nil)[:archive.ChunkIDLen/2]) == id {
			p.ok[seg+"\x00"+id] = cr.n
		}
	}
}

// proves reports whether every chunk of it was confirmed by its id.
func (p *chunkProof) proves(it manifest.Item) bool {
	if p == nil || len(it.Chunks) == 0 {
		return false
	}
	for _, c := range it.Chunks {
		n, ok := p.ok[c.Segment+"\x00"+c.ID]
		if c.ID == "" || !ok || n != c.Size {
			return false
		}
	}
	return true
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

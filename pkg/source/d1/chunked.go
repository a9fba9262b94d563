package d1

import (
	"context"
	"io"
	"math/bits"

	"github.com/cfbackup/cfbackup/pkg/archive"
	"github.com/cfbackup/cfbackup/pkg/cdc"
	"github.com/cfbackup/cfbackup/pkg/cloudflare"
	"github.com/cfbackup/cfbackup/pkg/manifest"
	"github.com/cfbackup/cfbackup/pkg/source"
)

// chunking says whether and how a backup stores dumps as content-addressed chunks.
type chunking struct {
	secret []byte // the writer secret; nil: whole items, as before chunking
	full   bool   // no parent: store every chunk
}

// chunkWriter is the ItemWriter of a chunked backup: every item (table dump, schema, fixups,
// virtual table) goes through archive.Writer.WriteChunked with the database's chunk index.
type chunkWriter struct {
	w      *archive.Writer
	s      *source.Session
	db     cloudflare.Database
	keys   chunkKeys
	ix     *chunkIndex
	params cdc.Params
	stats  archive.ChunkedStats
}

// writer returns the chunk writer of one database's capture, with its parent's chunk index
// loaded (nil without the writer secret). An unreadable parent index is a warning: every chunk is
// stored, the backup is complete either way.
func (ch chunking) writer(ctx context.Context, s *source.Session, db cloudflare.Database) (*chunkWriter, error) {
	if len(ch.secret) == 0 {
		if s.Writer != nil {
			s.Log.Warn("no writer secret: storing the whole dump again, not only what changed (set CFBACKUP_WRITER_KEY_FILE)", "database", db.Name)
		}
		return nil, nil
	}
	cw := &chunkWriter{w: s.Writer, s: s, db: db, keys: deriveChunkKeys(ch.secret), ix: newChunkIndex(s), params: paramsFor(s.Writer.ChunkSize())}
	if !ch.full {
		if err := cw.ix.loadParent(ctx, s.Repo, cw.keys, db.UUID, s.Log); err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			s.Log.Warn("cannot use the parent snapshot's chunk index: storing every chunk", "database", db.Name, "err", err)
			cw.ix = newChunkIndex(s)
		}
	}
	return cw, nil
}

// paramsFor is cdc.Default, scaled down when the repository's chunk size (the largest tar entry)
// is smaller than its maximum (tests use tiny chunk sizes).
func paramsFor(chunkSize int) cdc.Params {
	p := cdc.Default
	if chunkSize >= p.Max {
		return p
	}
	m := 1 << (bits.Len(uint(chunkSize)) - 1)
	return cdc.Params{Min: max(m/16, 1), Avg: max(m/4, 2), Max: max(m, 4)}
}

// WriteItem stores the item as content-addressed chunks (ItemWriter).
func (cw *chunkWriter) WriteItem(name string, r io.Reader) (archive.ItemRef, error) {
	ref, st, err := cw.w.WriteChunked(name, r, archive.ChunkedOptions{Params: cw.params, Key: cw.keys.id, Known: cw.ix.known, Lists: true,
		Placed: cw.ix.add})
	if err != nil {
		return ref, err
	}
	cw.stats.Chunks += st.Chunks
	cw.stats.Stored += st.Stored
	cw.stats.StoredBytes += st.StoredBytes
	cw.stats.Lists += st.Lists
	cw.stats.ListsStored += st.ListsStored
	cw.stats.ListBytes += st.ListBytes
	return ref.Catalogued(), nil
}

// finish writes the database's chunk index and records the parent and reuse in the source summary.
func (cw *chunkWriter) finish(ctx context.Context, src *manifest.Source) error {
	n, err := cw.ix.save(ctx, cw.keys, cw.db.UUID)
	if err != nil {
		return err
	}
	src.Parent, src.Reused = cw.ix.from, cw.ix.reused
	cw.s.Log.Info("D1 dump chunked", "database", cw.db.Name, "chunks", cw.stats.Chunks, "stored", cw.stats.Stored,
		"stored_bytes", cw.stats.StoredBytes, "lists", cw.stats.Lists, "lists_stored", cw.stats.ListsStored, "list_bytes", cw.stats.ListBytes, "reused_from_parent", cw.ix.reused, "parent", cw.ix.from, "index_entries_written", n)
	return nil
}

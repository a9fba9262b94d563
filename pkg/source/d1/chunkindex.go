package d1

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"strings"

	"github.com/cfbackup/cfbackup/pkg/archive"
	"github.com/cfbackup/cfbackup/pkg/errclass"
	"github.com/cfbackup/cfbackup/pkg/layout"
	"github.com/cfbackup/cfbackup/pkg/manifest"
	"github.com/cfbackup/cfbackup/pkg/repo"
	"github.com/cfbackup/cfbackup/pkg/seal"
	"github.com/cfbackup/cfbackup/pkg/source"
)

// The chunk index of one database, written by each chunked backup as side objects
// (index/<snapshot>.d1.<database uuid>.idx, docs/FORMAT.md "Content-defined chunks"):
//
//	"CFBD1CX1" || nonce (12 bytes) || AES-256-GCM( gzip( JSON chunkIndexDoc ) )
//
// keyed with HMAC-SHA256(writer secret, "cfbackup d1 chunk index encryption v1"). It maps chunk ids
// to where the chunks are stored, so a backup host holding only the writer secret (invariant 2)
// finds which chunks of a dump are stored already without decrypting any catalogue. An index is a
// chain: a snapshot lists its parent's index objects and adds one holding only the chunks it
// stored; an unchanged database adds none. The chain is rewritten whole (only the chunks the
// snapshot uses) when it grows past maxChain objects or holds more stale entries than live ones.
const chunkIndexMagic = "CFBD1CX1"

// chunkIndexVersion is the index's version field.
const chunkIndexVersion = 1

// maxChain bounds the index objects a snapshot lists for one database before it writes a whole one.
const maxChain = 16

// chunkIndexDoc is one index object. Entries is binary, per chunk: the 16-byte id, then uvarints
// segment (index into Segments), offset, length and size: ~26 bytes a chunk, where JSON would take 140.
type chunkIndexDoc struct {
	Version  int    `json:"version"`
	Database string `json:"database"`
	// Recipients are the fingerprints (sorted) of the recipients the chunks were encrypted to: a
	// backup reuses chunks only when it encrypts to the same ones, so every identity that can read
	// a new snapshot can read all of it (key add-recipient, docs/SECURITY.md).
	Recipients []string `json:"recipients"`
	Segments   []string `json:"segments"`
	Entries    []byte   `json:"entries"`
	Count      int      `json:"count"`
}

// ErrChunkIndex: a chunk index cannot be read with this writer secret (another secret, or damage).
var ErrChunkIndex = errclass.New(errclass.Failure, "D1 chunk index unreadable")

// chunkKeys are the purpose-separated keys of D1's content-addressed chunks.
type chunkKeys struct{ id, enc []byte }

func deriveChunkKeys(secret []byte) chunkKeys {
	return chunkKeys{id: archive.ChunkIDKey(secret), enc: seal.DeriveKey(secret, "cfbackup d1 chunk index encryption v1")}
}

// chunkIndexKey is where a snapshot's index object of one database is stored.
func chunkIndexKey(snapshotID, uuid string) string {
	return layout.Indexes + snapshotID + ".d1." + uuid + layout.IndexSuffix
}

// isChunkIndexOf reports whether key is an index object of database uuid.
func isChunkIndexOf(key, uuid string) bool {
	return strings.HasPrefix(key, layout.Indexes) && strings.HasSuffix(key, ".d1."+uuid+layout.IndexSuffix)
}

type chunkID [archive.ChunkIDLen / 2]byte

func parseChunkID(s string) (chunkID, bool) {
	var id chunkID
	if len(s) != archive.ChunkIDLen {
		return id, false
	}
	_, err := hex.Decode(id[:], []byte(s))
	return id, err == nil
}

// loc is where a chunk is stored (seg indexes chunkIndex.segs), and whether the parent's chain
// holds it and this run used it: 24 bytes. Chunks and list chunks are far below 4 GiB.
type loc struct {
	offset       int64
	length, size uint32
	seg          int32
	parent, used bool
}

// parentEntry is one chunk of the parent's index chain: 40 bytes.
type parentEntry struct {
	id chunkID
	l  loc
}

// chunkIndex is the chunks of one database known to this backup: the parent's (from its index
// chain, a slice sorted by id, 40 bytes a chunk) and those this run stored (a map, ~96 bytes a
// chunk; BenchmarkChunkIndexHeap; three maps of every chunk took 184). An incremental backup of a
// 10 GB dump (~2 million chunks) holds ~80 MiB, a full one ~190 MiB (docs/D1.md "Memory").
type chunkIndex struct {
	segs    []archive.SegmentInfo
	segAt   map[string]int32
	parent  []parentEntry   // sorted by id, one entry per id
	chunks  map[chunkID]loc // this run's chunks not in parent
	parents int             // chunks the parent's chain holds
	chain   []manifest.Object
	from    string // parent snapshot id
	used    int    // chunks this run used
	reused  int64
	sess    *source.Session
	refSegs map[int32]bool
}

func newChunkIndex(s *source.Session) *chunkIndex {
	return &chunkIndex{segAt: map[string]int32{}, chunks: map[chunkID]loc{}, sess: s, refSegs: map[int32]bool{}}
}

func (ix *chunkIndex) segment(info archive.SegmentInfo) int32 {
	if i, ok := ix.segAt[info.ID]; ok {
		return i
	}
	i := int32(len(ix.segs))
	ix.segs = append(ix.segs, info)
	ix.segAt[info.ID] = i
	return i
}

// known is archive.ChunkedOptions.Known: a parent's chunk is referenced (its segment listed in
// this manifest), a chunk of this run is in this run's segments already.
func (ix *chunkIndex) known(id string) (archive.Chunk, bool) {
	k, ok := parseChunkID(id)
	if !ok {
		return archive.Chunk{}, false
	}
	l, ok := ix.lookup(k)
	if !ok {
		return archive.Chunk{}, false
	}
	seg := ix.segs[l.seg]
	if l.parent && !ix.refSegs[l.seg] {
		ix.refSegs[l.seg] = true
		ix.sess.Reference(seg)
	}
	return archive.Chunk{Segment: seg.ID, Offset: l.offset, Length: int64(l.length), Size: int64(l.size), ID: id}, true
}

// add records a chunk of an item written in this run (new or reused; data or list chunk) as
// archive.Writer.WriteChunked places it (ChunkedOptions.Placed).
func (ix *chunkIndex) add(c archive.Chunk) {
	k, ok := parseChunkID(c.ID)
	if !ok {
		return
	}
	if p := ix.inParent(k); p != nil {
		if !p.used {
			p.used = true
			ix.used++
			ix.reused++
		}
		return
	}
	l, ok := ix.chunks[k]
	if !ok {
		if c.Length > math.MaxUint32 || c.Size > math.MaxUint32 {
			return // never written by WriteChunked; not reused
		}
		l = loc{seg: ix.segment(archive.SegmentInfo{ID: c.Segment}), offset: c.Offset, length: uint32(c.Length), size: uint32(c.Size)}
	}
	if l.used {
		return
	}
	l.used = true
	ix.used++
	ix.chunks[k] = l
}

// inParent is the parent chain's entry of k, nil when it has none.
func (ix *chunkIndex) inParent(k chunkID) *loc {
	i, ok := slices.BinarySearchFunc(ix.parent, k, func(e parentEntry, k chunkID) int { return bytes.Compare(e.id[:], k[:]) })
	if !ok {
		return nil
	}
	return &ix.parent[i].l
}

// lookup is where chunk k is stored, from the parent's chain or this run.
func (ix *chunkIndex) lookup(k chunkID) (loc, bool) {
	if p := ix.inParent(k); p != nil {
		return *p, true
	}
	l, ok := ix.chunks[k]
	return l, ok
}

// sortParent sorts the parent's entries by id, keeping of each id the entry latest in the chain.
func (ix *chunkIndex) sortParent() {
	slices.SortStableFunc(ix.parent, func(a, b parentEntry) int { return bytes.Compare(a.id[:], b.id[:]) })
	out := ix.parent[:0]
	for i, e := range ix.parent {
		if i+1 < len(ix.parent) && ix.parent[i+1].id == e.id {
			continue
		}
		out = append(out, e)
	}
	ix.parent = slices.Clip(out)
	ix.parents = len(out)
}

// loadParent reads the index chain of the newest snapshot holding the database (safety snapshots
// excluded), keeping only chunks in segments that snapshot lists and that still exist: a prune
// running beside this backup may have marked them, but deletes nothing a kept snapshot lists, and
// this snapshot lists every segment it reuses (docs/RETENTION.md).
func (ix *chunkIndex) loadParent(ctx context.Context, r *repo.Repo, keys chunkKeys, uuid string, log *slog.Logger) error {
	snaps, err := ix.sess.Snapshots(ctx)
	if err != nil {
		return err
	}
	var m *manifest.Manifest
	for _, c := range snaps {
		if _, safety := c.Labels[repo.SafetyLabel]; safety {
			continue
		}
		if _, ok := c.SourceByName(Component, uuid); ok {
			m = c
			break
		}
	}
	if m == nil {
		return nil
	}
	var chain []manifest.Object
	for _, ob := range m.Objects {
		if isChunkIndexOf(ob.Key, uuid) {
			chain = append(chain, ob)
		}
	}
	if len(chain) == 0 {
		log.Info("the parent snapshot has no chunk index of this database (written without chunks or the writer secret): storing every chunk", "snapshot", m.ID)
		return nil
	}
	segs := m.SegmentMap()
	live := map[string]bool{}
	var kept []manifest.Object
	for _, ob := range chain {
		raw, err := source.ReadSnapshotObject(ctx, r.Store, m, ob.Key)
		if err != nil {
			return fmt.Errorf("chunk index %s: %w", ob.Key, err)
		}
		var doc chunkIndexDoc
		if err := seal.OpenEnvelope(keys.enc, raw, chunkIndexMagic, "a D1 chunk index", ErrChunkIndex, &doc); err != nil {
			return fmt.Errorf("chunk index %s: %w", ob.Key, err)
		}
		if doc.Version != chunkIndexVersion || doc.Database != uuid {
			return fmt.Errorf("%w: %s: version %d of database %s, want version %d of %s", ErrChunkIndex, ob.Key, doc.Version, doc.Database, chunkIndexVersion, uuid)
		}
		if !slices.Equal(doc.Recipients, recipientSet(r)) {
			log.Info("chunks of the parent snapshot were encrypted to other recipients: storing them again", "index", ob.Key)
			continue
		}
		if err := ix.decode(ctx, r, doc, segs, live); err != nil {
			return fmt.Errorf("chunk index %s: %w", ob.Key, err)
		}
		kept = append(kept, ob)
	}
	ix.sortParent()
	ix.chain, ix.from = kept, m.ID
	return nil
}

func (ix *chunkIndex) decode(ctx context.Context, r *repo.Repo, doc chunkIndexDoc, segs map[string]archive.SegmentInfo, live map[string]bool) error {
	at := make([]int32, len(doc.Segments))
	for i, id := range doc.Segments {
		at[i] = -1
		info, ok := segs[id]
		if !ok {
			continue // no longer listed: its chunks are not reused
		}
		if _, checked := live[id]; !checked {
			_, err := r.Store.Stat(ctx, info.Key)
			if err != nil && ctx.Err() != nil {
				return err
			}
			live[id] = err == nil
		}
		if live[id] {
			at[i] = ix.segment(info)
		}
	}
	b := doc.Entries
	ix.parent = slices.Grow(ix.parent, min(doc.Count, len(b)/20))
	for n := 0; n < doc.Count; n++ {
		if len(b) < len(chunkID{}) {
			return fmt.Errorf("%w: truncated at entry %d", ErrChunkIndex, n)
		}
		var k chunkID
		copy(k[:], b)
		b = b[len(k):]
		var v [4]uint64
		for i := range v {
			x, w := binary.Uvarint(b)
			if w <= 0 {
				return fmt.Errorf("%w: truncated at entry %d", ErrChunkIndex, n)
			}
			v[i], b = x, b[w:]
		}
		if v[0] >= uint64(len(at)) {
			return fmt.Errorf("%w: entry %d names segment %d of %d", ErrChunkIndex, n, v[0], len(at))
		}
		if at[v[0]] < 0 || v[2] == 0 || v[2] > math.MaxUint32 || v[1] > 1<<50 || v[3] > math.MaxUint32 {
			continue
		}
		ix.parent = append(ix.parent, parentEntry{id: k, l: loc{seg: at[v[0]], offset: int64(v[1]), length: uint32(v[2]), size: uint32(v[3]), parent: true}})
	}
	return nil
}

// recipientSet is the sorted fingerprints of the repository's recipients (what new segments are
// encrypted to).
func recipientSet(r *repo.Repo) []string {
	out := []string{}
	for _, x := range r.Config.Recipients {
		out = append(out, x.Fingerprint)
	}
	slices.Sort(out)
	return out
}

// encode makes an index object of the chunks ids picks.
func (ix *chunkIndex) encode(uuid string, pick func(loc) bool) chunkIndexDoc {
	doc := chunkIndexDoc{Version: chunkIndexVersion, Database: uuid, Recipients: recipientSet(ix.sess.Repo)}
	segAt := map[int32]uint64{}
	var tmp [binary.MaxVarintLen64]byte
	each := func(k chunkID, l loc) {
		if !l.used || !pick(l) {
			return
		}
		si, ok := segAt[l.seg]
		if !ok {
			si = uint64(len(doc.Segments))
			segAt[l.seg] = si
			doc.Segments = append(doc.Segments, ix.segs[l.seg].ID)
		}
		doc.Entries = append(doc.Entries, k[:]...)
		for _, x := range []uint64{si, uint64(l.offset), uint64(l.length), uint64(l.size)} {
			doc.Entries = append(doc.Entries, tmp[:binary.PutUvarint(tmp[:], x)]...)
		}
		doc.Count++
	}
	for _, e := range ix.parent {
		each(e.id, e.l)
	}
	for k, l := range ix.chunks {
		each(k, l)
	}
	return doc
}

// save writes this snapshot's index of the database: nothing new when every chunk used came from
// the parent (the parent's chain is listed again), the new chunks as one more link, or the whole
// index (the chunks used) when the chain is long or mostly stale.
func (ix *chunkIndex) save(ctx context.Context, keys chunkKeys, uuid string) (wrote int, err error) {
	stale := ix.parents - int(ix.reused)
	whole := len(ix.chain) == 0 || len(ix.chain) >= maxChain || stale > ix.used
	pick := func(l loc) bool { return whole || !l.parent }
	doc := ix.encode(uuid, pick)
	if !whole {
		ix.sess.ReferenceObjects(ix.chain...)
		if doc.Count == 0 {
			return 0, nil
		}
	}
	raw, err := seal.SealJSON(keys.enc, chunkIndexMagic, doc)
	if err != nil {
		return 0, err
	}
	if err := ix.sess.PutObject(ctx, chunkIndexKey(ix.sess.SnapshotID, uuid), raw); err != nil {
		return 0, fmt.Errorf("store chunk index: %w", err)
	}
	return doc.Count, nil
}

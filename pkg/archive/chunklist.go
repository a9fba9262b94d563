package archive

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"slices"

	"filippo.io/age"

	"github.com/cfbackup/cfbackup/pkg/store"
)

// List chunks (docs/FORMAT.md "Chunk lists"): a content-addressed item's list of chunks is itself
// stored as content-addressed chunks, so that a snapshot whose data changed little stores only the
// few list chunks that changed and its catalogue records only the list chunks (ItemRef.Lists), not
// every data chunk again. A list chunk is
//
//	"CFL1" ‖ u32be n ‖ n × 16-byte chunk id ‖ uvarint s ‖ s × 16-byte segment id ‖
//	n × (uvarint segment index, varint gap, uvarint length, uvarint size)
//
// where gap (signed, zigzag as Go's binary.AppendVarint) is the chunk's offset minus the end
// (offset + length) of the entry before it when that entry is in the same segment, else minus 0. The ids come first so that standard tools (od) can
// list them; chunks that were written one after the other cost a gap of 0.
const listMagic = "CFL1"

const (
	// listAvg, listMin and listMax cut an item's chunk list into list chunks by content: after an
	// entry whose id (a keyed hash, so uniformly distributed) is 0 modulo listAvg, once a list chunk
	// holds listMin entries, and always at listMax. A changed data chunk changes only its own list
	// chunk (and sometimes merges it with a neighbour), never the cuts elsewhere.
	listAvg = 32
	listMin = 4
	listMax = 256
	// ListThreshold: items of at most this many chunks keep them inline in the catalogue (a list
	// chunk would cost more than it saves).
	ListThreshold = 4
	// maxListBytes bounds a list chunk a reader accepts (a writer makes at most ~12 KiB).
	maxListBytes = 1 << 20
	listIDLen    = ChunkIDLen / 2
)

// cutLists splits chunks into the groups that become list chunks.
func cutLists(chunks []Chunk) [][]Chunk {
	var out [][]Chunk
	start := 0
	for i, c := range chunks {
		if cutAfter(c, i-start+1) || i == len(chunks)-1 {
			out = append(out, chunks[start:i+1])
			start = i + 1
		}
	}
	return out
}

// cutAfter reports whether a list chunk ends after c, its n-th entry.
func cutAfter(c Chunk, n int) bool {
	if n >= listMax {
		return true
	}
	if n < listMin || len(c.ID) < 16 {
		return false
	}
	var b [4]byte
	if _, err := hex.Decode(b[:], []byte(c.ID[8:16])); err != nil {
		return false
	}
	return binary.BigEndian.Uint32(b[:])%listAvg == 0
}

// encodeList encodes chunks (content-addressed, in segments with 32-hex-digit ids) as a list chunk.
func encodeList(chunks []Chunk) ([]byte, error) {
	out := make([]byte, 8, 8+len(chunks)*(listIDLen+8))
	copy(out, listMagic)
	binary.BigEndian.PutUint32(out[4:], uint32(len(chunks)))
	segAt := map[string]uint64{}
	var segs []string
	for _, c := range chunks {
		id, err := hex.DecodeString(c.ID)
		if err != nil || len(id) != listIDLen {
			return nil, fmt.Errorf("archive: chunk list: chunk id %q", c.ID)
		}
		out = append(out, id...)
		if _, ok := segAt[c.Segment]; !ok {
			segAt[c.Segment] = uint64(len(segs))
			segs = append(segs, c.Segment)
		}
	}
	out = binary.AppendUvarint(out, uint64(len(segs)))
	for _, s := range segs {
		b, err := hex.DecodeString(s)
		if err != nil || len(b) != listIDLen {
			return nil, fmt.Errorf("archive: chunk list: segment id %q", s)
		}
		out = append(out, b...)
	}
	prev := Chunk{Offset: -1}
	for _, c := range chunks {
		end := int64(0)
		if prev.Segment == c.Segment && prev.Offset >= 0 {
			end = prev.Offset + prev.Length
		}
		if c.Offset < 0 || c.Length <= 0 || c.Size < 0 {
			return nil, fmt.Errorf("archive: chunk list: chunk %s has an invalid range", c.ID)
		}
		out = binary.AppendUvarint(out, segAt[c.Segment])
		out = binary.AppendVarint(out, c.Offset-end)
		out = binary.AppendUvarint(out, uint64(c.Length))
		out = binary.AppendUvarint(out, uint64(c.Size))
		prev = c
	}
	return out, nil
}

var errList = errors.New("malformed chunk list")

// decodeList parses a list chunk read from a repository: untrusted bytes, so every count and value
// is bounded before use. The segments' strings are shared by the entries that name them.
func decodeList(b []byte) ([]Chunk, error) {
	if len(b) < 8 || string(b[:4]) != listMagic {
		return nil, fmt.Errorf("%w: %w: bad header", ErrIntegrity, errList)
	}
	n := int(binary.BigEndian.Uint32(b[4:8]))
	if n == 0 || n > (len(b)-8)/listIDLen {
		return nil, fmt.Errorf("%w: %w: %d entries in %d bytes", ErrIntegrity, errList, n, len(b))
	}
	ids := b[8 : 8+n*listIDLen]
	rest := b[8+n*listIDLen:]
	uv := func() (uint64, bool) {
		x, w := binary.Uvarint(rest)
		if w <= 0 {
			return 0, false
		}
		rest = rest[w:]
		return x, true
	}
	ns, ok := uv()
	if !ok || ns == 0 || ns > uint64(n) || ns > uint64(len(rest)/listIDLen) {
		return nil, fmt.Errorf("%w: %w: segment table", ErrIntegrity, errList)
	}
	segs := make([]string, ns)
	for i := range segs {
		segs[i] = hex.EncodeToString(rest[:listIDLen])
		rest = rest[listIDLen:]
	}
	out := make([]Chunk, n)
	prev := -1
	var end int64
	for i := range out {
		var v [4]uint64
		var gap int64
		v[0], ok = uv()
		if ok {
			var w int
			gap, w = binary.Varint(rest)
			ok = w > 0
			if ok {
				rest = rest[w:]
			}
		}
		for k := 2; k < len(v) && ok; k++ {
			v[k], ok = uv()
		}
		if !ok {
			return nil, fmt.Errorf("%w: %w: entry %d truncated", ErrIntegrity, errList, i)
		}
		if int(v[0]) != prev {
			end = 0
		}
		off := end + gap
		if v[0] >= ns || gap < -(1<<50) || gap > 1<<50 || off < 0 || v[2] == 0 || v[2] > 1<<40 || v[3] > 1<<40 {
			return nil, fmt.Errorf("%w: %w: entry %d out of range", ErrIntegrity, errList, i)
		}
		out[i] = Chunk{Segment: segs[v[0]], Offset: off, Length: int64(v[2]), Size: int64(v[3]),
			ID: hex.EncodeToString(ids[i*listIDLen : (i+1)*listIDLen])}
		prev, end = int(v[0]), off+int64(v[2])
	}
	if len(rest) != 0 {
		return nil, fmt.Errorf("%w: %w: %d bytes after the last entry", ErrIntegrity, errList, len(rest))
	}
	return out, nil
}

// DecodeListChecked decodes a list chunk's bytes after checking them against the SHA-256 its
// catalogue entry records (the catalogue is authenticated; the segment holding the list may not be).
func DecodeListChecked(l Chunk, b []byte) ([]Chunk, error) {
	sum := sha256.Sum256(b)
	if int64(len(b)) != l.Size || hex.EncodeToString(sum[:]) != l.SHA256 {
		return nil, fmt.Errorf("%w: chunk list %s: %d bytes sha256 %x, recorded %d bytes sha256 %s", ErrIntegrity, l.ID, len(b), sum, l.Size, l.SHA256)
	}
	return decodeList(b)
}

// listCursor expands an item's list chunks (ItemRef.Lists) one at a time as a read reaches them, so
// a reader holds a list chunk's entries (at most listMax) at a time, never the whole item's chunk
// list. Each list chunk is checked (entry name, size, SHA-256) before it is parsed; the entries may
// not add up to more than the item's size, which bounds the memory a forged list can claim, and
// after the last list chunk they must add up to it exactly.
type listCursor struct {
	ref  ItemRef
	lr   *itemReader
	i    int
	size int64
	buf  []byte
}

func newListCursor(ctx context.Context, st store.Store, segs map[string]SegmentInfo, ids []age.Identity, ref ItemRef, heads *headCache) (*listCursor, error) {
	if len(ref.Chunks) > 0 {
		return nil, fmt.Errorf("%w: item %q has both chunks and chunk lists", ErrIntegrity, ref.Name)
	}
	var total int64
	for i, l := range ref.Lists {
		if _, ok := segs[l.Segment]; !ok {
			return nil, fmt.Errorf("%w: item %q: chunk list %d: segment %s is not in the manifest", ErrIntegrity, ref.Name, i, l.Segment)
		}
		if !validChunkID(l.ID) || len(l.SHA256) != 2*sha256.Size || l.Offset < 0 || l.Length <= 0 || l.Size <= 0 || l.Size > maxListBytes {
			return nil, fmt.Errorf("%w: item %q: chunk list %d is invalid", ErrIntegrity, ref.Name, i)
		}
		total += l.Size
	}
	lr := &itemReader{ctx: ctx, st: st, segs: segs, ids: ids, ref: ItemRef{Name: ref.Name, Chunks: ref.Lists, Size: total},
		hash: sha256.New(), heads: heads}
	return &listCursor{ref: ItemRef{Name: ref.Name, Size: ref.Size}, lr: lr}, nil
}

// next returns the entries of the next list chunk; nil (and the list reader closed) after the last.
func (lc *listCursor) next() ([]Chunk, error) {
	lists := lc.lr.ref.Chunks
	if lc.i == len(lists) {
		lc.close()
		if lc.size != lc.ref.Size {
			return nil, fmt.Errorf("%w: item %q: chunk sizes add up to %d, item size is %d", ErrIntegrity, lc.ref.Name, lc.size, lc.ref.Size)
		}
		return nil, nil
	}
	l := lists[lc.i]
	lc.buf = slices.Grow(lc.buf[:0], int(l.Size))[:l.Size]
	if _, err := io.ReadFull(lc.lr, lc.buf); err != nil {
		return nil, err
	}
	cs, err := DecodeListChecked(l, lc.buf)
	if err != nil {
		return nil, fmt.Errorf("item %q: %w", lc.ref.Name, err)
	}
	for _, c := range cs {
		lc.size += c.Size
	}
	if lc.size > lc.ref.Size {
		return nil, fmt.Errorf("%w: item %q: its chunk lists hold more than its %d bytes", ErrIntegrity, lc.ref.Name, lc.ref.Size)
	}
	lc.i++
	return cs, nil
}

func (lc *listCursor) close() { lc.lr.Close() }

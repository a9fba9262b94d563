package r2

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"

	"github.com/cfbackup/cfbackup/pkg/manifest"
)

// Index format 2 (docs/FORMAT.md, "R2 index v2") is paged so that a bucket of any size is read and
// written with memory independent of its object count: the entries are sorted by plain object key
// (the order of a ListObjectsV2 listing, so a backup merge-joins the listing against the parent's
// index as two sorted streams) and cut into pages, each sealed on its own:
//
//	"CFBR2IX2" || index id (16 random bytes)
//	record*:   kind ('P' page, 'F' footer) || u32 BE length || nonce (12) || AES-256-GCM(gzip(JSON))
//	trailer:   u64 BE offset of the footer record
//
// The additional data of record n is magic || index id || u64 BE n || kind, so a page cannot be
// moved, repeated, dropped, passed for the footer, or taken from another index; the footer (last
// record) holds the page and entry counts, the first key and offset of every page (the fence, for
// ranged lookups by binary search) and a SHA-256 chain over the sealed pages, so a truncated index
// fails too. The key is the v1 index's (HMAC-SHA256(writer secret, "cfbackup r2 index encryption
// v1")); v1 indexes stay readable (loaded whole, then sorted).
const indexMagicV2 = "CFBR2IX2"

// IndexVersion2 is the footer's version field.
const IndexVersion2 = 2

// Page bounds: PageEntries entries a page by default; a record or a page's JSON beyond the limits is
// refused before it is decompressed or parsed further (the object is untrusted until it opens).
const (
	PageEntries    = 8192
	maxRecordBytes = 64 << 20
	maxPageJSON    = 256 << 20
	maxFooterJSON  = 64 << 20
	indexIDLen     = 16
	recordPage     = 'P'
	recordFooter   = 'F'
)

// pageEntries is PageEntries, smaller in tests (page boundaries with few objects).
var pageEntries = PageEntries

// indexFooter is the last record of a v2 index.
type indexFooter struct {
	Version int    `json:"version"`
	Bucket  string `json:"bucket"`
	Pages   int64  `json:"pages"`
	Entries int64  `json:"entries"`
	// Fences are the first key of each page and Offsets where its record starts.
	Fences  []string `json:"fences"`
	Offsets []int64  `json:"offsets"`
	// Chain is SHA-256 chained over the sealed pages: c0 = zeros, c(n+1) = SHA-256(c(n) || record n).
	Chain string `json:"chain"`
}

// indexWriter writes a v2 index as entries arrive, holding one page at a time.
type indexWriter struct {
	w       io.Writer
	aead    cipher.AEAD
	id      [indexIDLen]byte
	bucket  string
	page    []manifest.Item
	last    string
	n       int64
	off     int64
	chain   [32]byte
	foot    indexFooter
	started bool
}

func (k indexKeys) newIndexWriter(w io.Writer, bucket string) (*indexWriter, error) {
	aead, err := indexAEAD(k.enc)
	if err != nil {
		return nil, err
	}
	iw := &indexWriter{w: w, aead: aead, bucket: bucket, foot: indexFooter{Version: IndexVersion2, Bucket: bucket, Fences: []string{}, Offsets: []int64{}}}
	if _, err := rand.Read(iw.id[:]); err != nil {
		return nil, err
	}
	if _, err := w.Write(append([]byte(indexMagicV2), iw.id[:]...)); err != nil {
		return nil, err
	}
	iw.off = int64(len(indexMagicV2) + indexIDLen)
	return iw, nil
}

// Add appends an entry; keys must ascend strictly (the order the reader checks).
func (iw *indexWriter) Add(it manifest.Item) error {
	if it.Object == nil {
		return fmt.Errorf("%w: an entry without an object key", ErrIndex)
	}
	if iw.started && it.Object.Key <= iw.last {
		return fmt.Errorf("%w: keys out of order (%q after %q)", ErrIndex, it.Object.Key, iw.last)
	}
	iw.started, iw.last = true, it.Object.Key
	iw.page = append(iw.page, it)
	iw.n++
	if len(iw.page) >= pageEntries {
		return iw.flush()
	}
	return nil
}

func (iw *indexWriter) flush() error {
	if len(iw.page) == 0 {
		return nil
	}
	var plain bytes.Buffer
	zw := gzip.NewWriter(&plain)
	if err := json.NewEncoder(zw).Encode(iw.page); err != nil {
		return err
	}
	if err := zw.Close(); err != nil {
		return err
	}
	iw.foot.Fences = append(iw.foot.Fences, iw.page[0].Object.Key)
	iw.foot.Offsets = append(iw.foot.Offsets, iw.off)
	sealed, err := iw.record(recordPage, plain.Bytes())
	if err != nil {
		return err
	}
	iw.chain = chainNext(iw.chain, sealed)
	clear(iw.page)
	iw.page = iw.page[:0]
	return nil
}

// record seals plain as record number len(Fences)-1 (a page) or the footer and writes it.
func (iw *indexWriter) record(kind byte, plain []byte) ([]byte, error) {
	seq := int64(len(iw.foot.Fences))
	if kind == recordPage {
		seq--
	}
	nonce := make([]byte, iw.aead.NonceSize(), iw.aead.NonceSize()+len(plain)+iw.aead.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	sealed := iw.aead.Seal(nonce, nonce, plain, recordAD(iw.id[:], seq, kind))
	if len(sealed) > maxRecordBytes {
		return nil, fmt.Errorf("%w: a page of %d bytes exceeds %d", ErrIndex, len(sealed), maxRecordBytes)
	}
	var hdr [5]byte
	hdr[0] = kind
	binary.BigEndian.PutUint32(hdr[1:], uint32(len(sealed)))
	if _, err := iw.w.Write(hdr[:]); err != nil {
		return nil, err
	}
	if _, err := iw.w.Write(sealed); err != nil {
		return nil, err
	}
	iw.off += int64(len(hdr) + len(sealed))
	return sealed, nil
}

// Close writes the last page, the footer and the trailer.
func (iw *indexWriter) Close() error {
	if err := iw.flush(); err != nil {
		return err
	}
	iw.foot.Pages, iw.foot.Entries = int64(len(iw.foot.Fences)), iw.n
	iw.foot.Chain = hex.EncodeToString(iw.chain[:])
	var plain bytes.Buffer
	zw := gzip.NewWriter(&plain)
	if err := json.NewEncoder(zw).Encode(&iw.foot); err != nil {
		return err
	}
	if err := zw.Close(); err != nil {
		return err
	}
	footAt := iw.off
	if _, err := iw.record(recordFooter, plain.Bytes()); err != nil {
		return err
	}
	var tr [8]byte
	binary.BigEndian.PutUint64(tr[:], uint64(footAt))
	_, err := iw.w.Write(tr[:])
	return err
}

// chainNext is SHA-256(c ‖ sealed) without copying the page.
func chainNext(c [32]byte, sealed []byte) [32]byte {
	h := sha256.New()
	h.Write(c[:])
	h.Write(sealed)
	var out [32]byte
	h.Sum(out[:0])
	return out
}

func recordAD(id []byte, seq int64, kind byte) []byte {
	ad := make([]byte, 0, len(indexMagicV2)+len(id)+9)
	ad = append(ad, indexMagicV2...)
	ad = append(ad, id...)
	ad = binary.BigEndian.AppendUint64(ad, uint64(seq))
	return append(ad, kind)
}

func indexAEAD(key []byte) (cipher.AEAD, error) {
	blk, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(blk)
}

// entryStream yields index entries in ascending key order; Next reports false at a verified end.
type entryStream interface {
	Next() (manifest.Item, bool, error)
	// Bucket is the bucket the index names (for format 2 known once Next has reported the end).
	Bucket() string
}

// openIndexStream reads an index of either format from r, of bucket: v2 page by page (its first page
// is read here, so another secret or a damaged start fails now), v1 whole and then sorted by key.
// An empty bucket accepts the index of any bucket (re-keying, which learns it from the index).
func (k indexKeys) openIndexStream(r io.Reader, bucket string) (entryStream, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	head, err := br.Peek(len(indexMagicV2))
	if err != nil {
		return nil, fmt.Errorf("%w: not an r2 index", ErrIndex)
	}
	if string(head) == indexMagic {
		return k.openV1Stream(br, bucket)
	}
	if string(head) != indexMagicV2 {
		return nil, fmt.Errorf("%w: not an r2 index", ErrIndex)
	}
	aead, err := indexAEAD(k.enc)
	if err != nil {
		return nil, err
	}
	s := &v2Stream{r: br, aead: aead, bucket: bucket}
	var hdr [len(indexMagicV2) + indexIDLen]byte
	if _, err := io.ReadFull(br, hdr[:]); err != nil {
		return nil, fmt.Errorf("%w: truncated header", ErrIndex)
	}
	s.id = hdr[len(indexMagicV2):]
	s.off = int64(len(hdr))
	if err := s.nextRecord(); err != nil {
		return nil, err
	}
	return s, nil
}

func (k indexKeys) openV1Stream(r io.Reader, bucket string) (entryStream, error) {
	b, err := io.ReadAll(io.LimitReader(r, 1<<31))
	if err != nil {
		return nil, err
	}
	ix, err := k.open(b)
	if err != nil {
		return nil, err
	}
	if bucket != "" && ix.Bucket != bucket {
		return nil, fmt.Errorf("%w: the index is of bucket %q", ErrIndex, ix.Bucket)
	}
	bucket = ix.Bucket
	items := make([]manifest.Item, 0, len(ix.Entries))
	for id, it := range ix.Entries {
		if it.Object == nil || k.entryID(bucket, it.Object.Key) != id {
			continue // not findable by its key in v1 either
		}
		items = append(items, it)
	}
	sort.Slice(items, func(a, b int) bool { return items[a].Object.Key < items[b].Object.Key })
	return &sliceStream{items: items, bucket: bucket}, nil
}

type sliceStream struct {
	items  []manifest.Item
	bucket string
}

func (s *sliceStream) Bucket() string { return s.bucket }

func (s *sliceStream) Next() (manifest.Item, bool, error) {
	if len(s.items) == 0 {
		return manifest.Item{}, false, nil
	}
	it := s.items[0]
	s.items[0] = manifest.Item{}
	s.items = s.items[1:]
	return it, true, nil
}

// v2Stream reads a v2 index record by record, checking order, counts, fences and the chain.
type v2Stream struct {
	r      *bufio.Reader
	aead   cipher.AEAD
	id     []byte
	bucket string
	off    int64
	seq    int64
	page   []manifest.Item
	pos    int
	last   string
	n      int64
	chain  [32]byte
	fences []string
	starts []int64
	done   bool
}

func (s *v2Stream) Next() (manifest.Item, bool, error) {
	for s.pos >= len(s.page) {
		if s.done {
			return manifest.Item{}, false, nil
		}
		if err := s.nextRecord(); err != nil {
			return manifest.Item{}, false, err
		}
	}
	it := s.page[s.pos]
	s.page[s.pos] = manifest.Item{}
	s.pos++
	return it, true, nil
}

// nextRecord reads one record: a page becomes the current page; the footer ends the stream once
// everything it states holds.
func (s *v2Stream) nextRecord() error {
	var hdr [5]byte
	if _, err := io.ReadFull(s.r, hdr[:]); err != nil {
		return fmt.Errorf("%w: truncated after %d page(s) (%v)", ErrIndex, s.seq, err)
	}
	size := binary.BigEndian.Uint32(hdr[1:])
	if size > maxRecordBytes || int(size) < s.aead.NonceSize()+s.aead.Overhead() {
		return fmt.Errorf("%w: record %d has an impossible length %d", ErrIndex, s.seq, size)
	}
	sealed := make([]byte, size)
	if _, err := io.ReadFull(s.r, sealed); err != nil {
		return fmt.Errorf("%w: truncated in record %d (%v)", ErrIndex, s.seq, err)
	}
	kind := hdr[0]
	ns := s.aead.NonceSize()
	plain, err := s.aead.Open(nil, sealed[:ns], sealed[ns:], recordAD(s.id, s.seq, kind))
	if err != nil {
		return fmt.Errorf("%w: record %d: written with another writer secret, damaged, moved or from another index", ErrIndex, s.seq)
	}
	at := s.off
	s.off += int64(len(hdr)) + int64(size)
	if kind == recordFooter {
		return s.footer(plain, at)
	}
	if kind != recordPage {
		return fmt.Errorf("%w: record %d of unknown kind", ErrIndex, s.seq)
	}
	s.chain = chainNext(s.chain, sealed)
	s.page = s.page[:0]
	if err := decodeGzipJSON(plain, maxPageJSON, &s.page); err != nil {
		return fmt.Errorf("%w: page %d: %v", ErrIndex, s.seq, err)
	}
	if len(s.page) == 0 {
		return fmt.Errorf("%w: page %d is empty", ErrIndex, s.seq)
	}
	for _, it := range s.page {
		if it.Object == nil || (s.n > 0 && it.Object.Key <= s.last) {
			return fmt.Errorf("%w: page %d: entries out of order", ErrIndex, s.seq)
		}
		s.last = it.Object.Key
		s.n++
	}
	s.fences = append(s.fences, s.page[0].Object.Key)
	s.starts = append(s.starts, at)
	s.pos = 0
	s.seq++
	return nil
}

func (s *v2Stream) footer(plain []byte, at int64) error {
	var f indexFooter
	if err := decodeGzipJSON(plain, maxFooterJSON, &f); err != nil {
		return fmt.Errorf("%w: footer: %v", ErrIndex, err)
	}
	switch {
	case f.Version != IndexVersion2:
		return fmt.Errorf("%w: version %d, this cfbackup reads %d", ErrIndex, f.Version, IndexVersion2)
	case s.bucket != "" && f.Bucket != s.bucket:
		return fmt.Errorf("%w: the index is of bucket %q", ErrIndex, f.Bucket)
	case f.Pages != s.seq || f.Entries != s.n || f.Chain != hex.EncodeToString(s.chain[:]) || !slices.Equal(f.Fences, s.fences) || !slices.Equal(f.Offsets, s.starts):
		return fmt.Errorf("%w: the footer does not match the pages read (%d pages, %d entries)", ErrIndex, s.seq, s.n)
	}
	var tr [8]byte
	if _, err := io.ReadFull(s.r, tr[:]); err != nil || int64(binary.BigEndian.Uint64(tr[:])) != at {
		return fmt.Errorf("%w: bad trailer", ErrIndex)
	}
	if _, err := s.r.ReadByte(); err != io.EOF {
		return fmt.Errorf("%w: data after the trailer", ErrIndex)
	}
	s.page, s.pos, s.done, s.bucket = nil, 0, true, f.Bucket
	return nil
}

func (s *v2Stream) Bucket() string { return s.bucket }

func decodeGzipJSON(b []byte, limit int64, v any) error {
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		return err
	}
	dec := json.NewDecoder(io.LimitReader(zr, limit))
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return fmt.Errorf("trailing data")
	}
	return nil
}

package manifest

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"sync"

	"filippo.io/age"

	"github.com/cfbackup/cfbackup/pkg/archive"
	"github.com/cfbackup/cfbackup/pkg/store"
)

// CatalogueObject is one side object of a streamed catalogue (docs/FORMAT.md "Streamed catalogue"):
// the manifest lists them in order, and its MAC covers the key, the item count, the size and the
// SHA-256, so a reader trusts the object only once all four match. Fence, when set, is the object's
// key range (a Fence sealed to the recipients, SealFence): a reader of a selection skips the objects
// whose range misses it, and holds the items of those it reads to it.
type CatalogueObject struct {
	Key    string `json:"key"`
	Items  int64  `json:"items"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
	Fence  string `json:"fence,omitempty"`
}

// Streamed catalogue limits: a record holds at most RecordItems items; a reader refuses a record whose
// compressed length exceeds MaxRecordBytes or whose JSON exceeds MaxRecordPlain, so memory stays one
// record whatever an object claims.
const (
	RecordItems    = 8192
	MaxRecordBytes = 64 << 20
	MaxRecordPlain = RecordItems*(16<<10) + 1<<20
)

// CatalogueWriter writes a streamed catalogue object: one age stream to the recipients holding
// records u32be(len) ‖ gzip(JSON array of at most RecordItems items). It buffers one record.
type CatalogueWriter struct {
	enc   io.WriteCloser
	buf   []Item
	n     int64
	z     bytes.Buffer
	zw    *gzip.Writer
	done  bool
	fence fenceTracker
}

// NewCatalogueWriter starts a catalogue object written to w, encrypted to the recipients.
func NewCatalogueWriter(w io.Writer, recipients []age.Recipient) (*CatalogueWriter, error) {
	enc, err := age.Encrypt(w, recipients...)
	if err != nil {
		return nil, fmt.Errorf("encrypt catalogue: %w", err)
	}
	zw, _ := gzip.NewWriterLevel(io.Discard, gzip.BestSpeed)
	return &CatalogueWriter{enc: enc, zw: zw, buf: make([]Item, 0, 256)}, nil
}

// Add appends items in catalogue order.
func (w *CatalogueWriter) Add(items ...Item) error {
	for i := range items {
		w.fence.see(&items[i])
	}
	for len(items) > 0 {
		k := min(len(items), RecordItems-len(w.buf))
		w.buf = append(w.buf, items[:k]...)
		items = items[k:]
		if len(w.buf) == RecordItems {
			if err := w.flush(); err != nil {
				return err
			}
		}
	}
	return nil
}

// Items is the number of items added so far.
func (w *CatalogueWriter) Items() int64 { return w.n + int64(len(w.buf)) }

func (w *CatalogueWriter) flush() error {
	if len(w.buf) == 0 {
		return nil
	}
	w.z.Reset()
	w.z.Write([]byte{0, 0, 0, 0})
	w.zw.Reset(&w.z)
	if err := json.NewEncoder(w.zw).Encode(w.buf); err != nil {
		return fmt.Errorf("encode catalogue: %w", err)
	}
	if err := w.zw.Close(); err != nil {
		return err
	}
	b := w.z.Bytes()
	binary.BigEndian.PutUint32(b, uint32(len(b)-4))
	if _, err := w.enc.Write(b); err != nil {
		return err
	}
	w.n += int64(len(w.buf))
	clear(w.buf)
	w.buf = w.buf[:0]
	return nil
}

// Close writes the last record and ends the age stream (its final chunk marks the end).
func (w *CatalogueWriter) Close() error {
	if w.done {
		return nil
	}
	w.done = true
	if err := w.flush(); err != nil {
		return err
	}
	return w.enc.Close()
}

// ReadCatalogueRecords decrypts a catalogue object read from r and calls fn with each record's items,
// in order. It returns the number of items read. r must already be checked (or checking itself at
// EOF, as EachItem's reader does): age alone only proves the object was encrypted to the recipients.
func ReadCatalogueRecords(r io.Reader, ids []age.Identity, fn func([]Item) error) (int64, error) {
	dec, err := age.Decrypt(r, ids...)
	if err != nil {
		var nm *age.NoIdentityMatchError
		if errors.As(err, &nm) {
			return 0, err
		}
		return 0, fmt.Errorf("%w: catalogue object is not an age file: %v", archive.ErrIntegrity, err)
	}
	return readRecords(dec, fn)
}

// readRecords reads the plaintext of a catalogue object: records until EOF, each bounded.
func readRecords(r io.Reader, fn func([]Item) error) (int64, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	var n int64
	var hdr [4]byte
	var zr *gzip.Reader
	var raw []byte
	for {
		if _, err := io.ReadFull(br, hdr[:]); err != nil {
			if err == io.EOF {
				return n, nil
			}
			return n, recordErr(err, "record header")
		}
		l := binary.BigEndian.Uint32(hdr[:])
		if l == 0 || l > MaxRecordBytes {
			return n, fmt.Errorf("%w: catalogue record of %d bytes (at most %d)", archive.ErrIntegrity, l, MaxRecordBytes)
		}
		if cap(raw) < int(l) {
			raw = make([]byte, l)
		}
		raw = raw[:l]
		if _, err := io.ReadFull(br, raw); err != nil {
			return n, recordErr(err, "record")
		}
		items, err := decodeRecord(&zr, raw)
		if err != nil {
			return n, err
		}
		n += int64(len(items))
		if err := fn(items); err != nil {
			return n, err
		}
	}
}

func decodeRecord(zr **gzip.Reader, raw []byte) ([]Item, error) {
	var err error
	if *zr == nil {
		*zr, err = gzip.NewReader(bytes.NewReader(raw))
	} else {
		err = (*zr).Reset(bytes.NewReader(raw))
	}
	if err != nil {
		return nil, fmt.Errorf("%w: catalogue record: %v", archive.ErrIntegrity, err)
	}
	lr := &io.LimitedReader{R: *zr, N: MaxRecordPlain + 1}
	var items []Item
	dec := json.NewDecoder(lr)
	if err := dec.Decode(&items); err != nil {
		if lr.N <= 0 {
			return nil, fmt.Errorf("%w: catalogue record decompresses to more than %d bytes", archive.ErrIntegrity, MaxRecordPlain)
		}
		return nil, fmt.Errorf("%w: catalogue record: %v", archive.ErrIntegrity, err)
	}
	if len(items) == 0 || len(items) > RecordItems {
		return nil, fmt.Errorf("%w: catalogue record of %d items (1 to %d)", archive.ErrIntegrity, len(items), RecordItems)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("%w: catalogue record has data after its items", archive.ErrIntegrity)
	}
	return items, nil
}

func recordErr(err error, what string) error {
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("%w: catalogue %s cut short", archive.ErrIntegrity, what)
	}
	// age reports a chunk that fails authentication, or a missing final chunk, as a read error.
	var nm *age.NoIdentityMatchError
	if errors.As(err, &nm) || errors.Is(err, archive.ErrIntegrity) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return fmt.Errorf("%w: catalogue %s: %v", archive.ErrIntegrity, what, err)
}

// Streamed reports whether the catalogue is stored in side objects (CatalogueObjects).
func (m *Manifest) Streamed() bool { return len(m.CatalogueObjects) > 0 }

// EachItem calls fn for every catalogue item in order, holding one record (at most RecordItems
// items) at a time. For a streamed catalogue each object is read through a reader that checks its
// recorded size and SHA-256, and its item count and the manifest's are checked; a manifest with the
// older inline catalogue is decrypted whole, as before. fn sees items before the end of an object
// is checked: act on them (write anything) only once EachItem has returned nil. An error fn returns
// stops the iteration and is returned as it is.
func (m *Manifest) EachItem(ctx context.Context, st store.Store, ids []age.Identity, fn func(Item) error) error {
	return m.EachSelected(ctx, st, ids, nil, nil, fn)
}

// EachSelected is EachItem for a reader of sel: it skips the catalogue objects whose fences show
// they hold none of sel (fn may still see items outside sel: the caller filters), and holds the items
// of every fenced object it reads to its fence. fences are the objects' opened fences (openFences),
// or nil to open them here; a nil sel reads everything and decrypts no fence.
func (m *Manifest) EachSelected(ctx context.Context, st store.Store, ids []age.Identity, sel *Selection, fences []*Fence, fn func(Item) error) error {
	if m.Summary {
		return fmt.Errorf("catalogue of snapshot %s was not read (listing only): load the manifest whole first", m.ID)
	}
	if !m.Streamed() {
		if m.Catalogue == "" && m.Items == 0 {
			return nil
		}
		c, err := m.OpenCatalogue(ids)
		if err != nil {
			return err
		}
		for _, it := range c.Items {
			if err := fn(it); err != nil {
				return err
			}
		}
		return nil
	}
	if m.Catalogue != "" {
		return fmt.Errorf("%w: snapshot %s has both an inline and a streamed catalogue", ErrFormat, m.ID)
	}
	if sel != nil && fences == nil {
		var err error
		if fences, err = m.openFences(ids); err != nil {
			return err
		}
	}
	sel = sel.sorted()
	var total int64
	skipped := false
	for i, co := range m.CatalogueObjects {
		var f *Fence
		if i < len(fences) {
			f = fences[i]
		}
		if sel != nil && f != nil && !sel.mayHold(f) {
			skipped = true
			continue
		}
		n, err := eachInObject(ctx, st, m.ID, co, f, ids, fn)
		if err != nil {
			return err
		}
		total += n
	}
	if !skipped && total != m.Items {
		return fmt.Errorf("%w: catalogue of snapshot %s holds %d items, its manifest says %d", archive.ErrIntegrity, m.ID, total, m.Items)
	}
	return nil
}

type fnErr struct{ err error }

func (f fnErr) Error() string { return f.err.Error() }

func eachInObject(ctx context.Context, st store.Store, snap string, co CatalogueObject, fence *Fence, ids []age.Identity, fn func(Item) error) (int64, error) {
	rc, err := st.Open(ctx, co.Key, 0, -1)
	if err != nil {
		return 0, fmt.Errorf("catalogue of snapshot %s: %w", snap, err)
	}
	defer rc.Close()
	cr := &checkedObject{r: io.LimitReader(store.ContextReader(ctx, rc), co.Size+1), h: sha256.New(), want: co, snap: snap}
	fc := &fenceCheck{want: fence, co: co.Key, snap: snap}
	n, err := ReadCatalogueRecords(cr, ids, func(items []Item) error {
		for _, it := range items {
			if err := fc.item(&it); err != nil {
				return err
			}
			if err := fn(it); err != nil {
				return fnErr{err}
			}
		}
		return nil
	})
	var fe fnErr
	if errors.As(err, &fe) {
		return n, fe.err
	}
	if err == nil {
		// age stops at its final chunk: whatever follows must not exist, and the hash needs EOF.
		_, err = io.Copy(io.Discard, cr)
	}
	if err != nil {
		if cr.bad == nil && ctx.Err() == nil {
			// Was it the object that is wrong (replaced, cut short)? That is the error to report.
			io.Copy(io.Discard, cr)
		}
		if cr.bad != nil {
			return n, cr.bad
		}
		if ctx.Err() != nil {
			return n, ctx.Err()
		}
		return n, fmt.Errorf("catalogue object %s of snapshot %s: %w", co.Key, snap, err)
	}
	if n != co.Items {
		return n, fmt.Errorf("%w: catalogue object %s holds %d items, snapshot %s says %d", archive.ErrIntegrity, co.Key, n, snap, co.Items)
	}
	return n, fc.end()
}

// checkedObject fails once more bytes than recorded arrive, and at EOF unless size and SHA-256 match.
type checkedObject struct {
	r    io.Reader
	h    hash.Hash
	n    int64
	want CatalogueObject
	snap string
	bad  error
}

func (c *checkedObject) Read(p []byte) (int, error) {
	if c.bad != nil {
		return 0, c.bad
	}
	n, err := c.r.Read(p)
	c.h.Write(p[:n])
	c.n += int64(n)
	if c.n > c.want.Size {
		c.bad = fmt.Errorf("%w: catalogue object %s is longer than snapshot %s records", archive.ErrIntegrity, c.want.Key, c.snap)
		return n, c.bad
	}
	if err == io.EOF && (c.n != c.want.Size || hex.EncodeToString(c.h.Sum(nil)) != c.want.SHA256) {
		c.bad = fmt.Errorf("%w: catalogue object %s does not match the size and SHA-256 in snapshot %s (replaced, truncated or from another snapshot)", archive.ErrIntegrity, c.want.Key, c.snap)
		return n, c.bad
	}
	return n, err
}

// Each calls fn for every item of the catalogue in order: the items held in memory, or, for a
// catalogue opened with Stream, the items read from its objects as fn asks for them.
func (c *Catalogue) Each(fn func(Item) error) error { return c.EachSelected(nil, fn) }

// EachSelected calls fn in order for every item sel selects, and maybe others (fn filters): a
// streamed catalogue reads only the objects whose fences may hold some of sel (Manifest.EachSelected).
// A nil sel is Each.
func (c *Catalogue) EachSelected(sel *Selection, fn func(Item) error) error {
	if c.stream != nil {
		return c.stream(sel, fn)
	}
	for _, it := range c.Items {
		if err := fn(it); err != nil {
			return err
		}
	}
	return nil
}

// Stream returns the manifest's catalogue as an iterator (Each, EachSelected) over EachSelected:
// nothing but the objects' fences (opened by the first selection) is held between calls, every Each
// reads the objects again.
func (m *Manifest) Stream(ctx context.Context, st store.Store, ids []age.Identity) *Catalogue {
	var mu sync.Mutex
	var fences []*Fence
	// open returns the fences, opening them first when must (and not yet opened).
	open := func(must bool) ([]*Fence, error) {
		mu.Lock()
		defer mu.Unlock()
		fs, err := fences, error(nil)
		if must && fs == nil {
			fs, err = m.openFences(ids)
			fences = fs
		}
		return fs, err
	}
	c := StreamSelected(func(sel *Selection, fn func(Item) error) error {
		fs, err := open(sel != nil)
		if err != nil {
			return err
		}
		return m.EachSelected(ctx, st, ids, sel, fs, fn)
	})
	c.objects = &objectReader{ctx: ctx, st: st, ids: ids, m: m, fences: func() ([]*Fence, error) { return open(true) }}
	return c
}

// StreamCatalogue makes a Catalogue whose Each is each (an EachItem with its error classified by
// the caller); its Items is empty. It reads everything for a selection too.
func StreamCatalogue(each func(fn func(Item) error) error) *Catalogue {
	return &Catalogue{stream: func(_ *Selection, fn func(Item) error) error { return each(fn) }}
}

// StreamSelected makes a Catalogue whose EachSelected is each (a Stream's, wrapped or filtered by
// the caller); its Items is empty.
func StreamSelected(each func(sel *Selection, fn func(Item) error) error) *Catalogue {
	return &Catalogue{stream: each}
}

// CheckIdentity opens the header of the first catalogue object with the identities: a reader learns
// that it holds the wrong key before it plans anything. Nothing is checked for an inline catalogue
// (OpenCatalogue decrypts it whole anyway) or an empty one.
func (m *Manifest) CheckIdentity(ctx context.Context, st store.Store, ids []age.Identity) error {
	if !m.Streamed() {
		return nil
	}
	for _, co := range m.CatalogueObjects {
		if co.Fence != "" {
			// A fence is sealed to the same recipients and is in the manifest: no request needed.
			_, err := co.OpenFence(ids)
			return err
		}
	}
	rc, err := st.Open(ctx, m.CatalogueObjects[0].Key, 0, -1)
	if err != nil {
		return fmt.Errorf("catalogue of snapshot %s: %w", m.ID, err)
	}
	defer rc.Close()
	if _, err := age.Decrypt(io.LimitReader(rc, 64<<10), ids...); err != nil {
		var nm *age.NoIdentityMatchError
		if errors.As(err, &nm) {
			return err
		}
		return fmt.Errorf("%w: catalogue object %s of snapshot %s is not an age file: %v", archive.ErrIntegrity, m.CatalogueObjects[0].Key, m.ID, err)
	}
	return nil
}

// SideObjects lists every object the snapshot owns besides segments, with the size and SHA-256 they
// must have: its side objects (Objects) and its catalogue objects. Prune keeps them while the
// snapshot is kept, copy copies them as they are, verify checks them.
func (m *Manifest) SideObjects() []Object {
	out := make([]Object, 0, len(m.Objects)+len(m.CatalogueObjects))
	out = append(out, m.Objects...)
	for _, c := range m.CatalogueObjects {
		out = append(out, Object{Key: c.Key, Size: c.Size, SHA256: c.SHA256})
	}
	return out
}

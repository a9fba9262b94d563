package archive

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"filippo.io/age"

	"github.com/cfbackup/cfbackup/internal/testutil/tools"
	"github.com/cfbackup/cfbackup/pkg/keys"
	"github.com/cfbackup/cfbackup/pkg/store"
	"github.com/cfbackup/cfbackup/pkg/store/local"
	"github.com/cfbackup/cfbackup/pkg/store/mem"
)

func newKey(t testing.TB) (*age.X25519Identity, []age.Recipient) {
	t.Helper()
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	return id, []age.Recipient{id.Recipient()}
}

// sqlText is deterministic SQL-dump-like text, as D1 exports produce.
func sqlText(n int, seed int64) []byte {
	rng := rand.New(rand.NewSource(seed))
	var b bytes.Buffer
	b.WriteString("PRAGMA defer_foreign_keys=TRUE;\nCREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT, email TEXT, score REAL, created TEXT);\n")
	names := []string{"alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi"}
	for i := 0; b.Len() < n; i++ {
		nm := names[rng.Intn(len(names))]
		fmt.Fprintf(&b, "INSERT INTO \"users\" VALUES(%d,'%s %d','%s.%d@example.com',%.3f,'2026-%02d-%02dT%02d:%02d:%02dZ');\n",
			i, nm, rng.Intn(100000), nm, rng.Intn(1000), rng.Float64()*1000, rng.Intn(12)+1, rng.Intn(28)+1, rng.Intn(24), rng.Intn(60), rng.Intn(60))
	}
	return b.Bytes()[:n]
}

func randomBytes(n int, seed int64) []byte {
	b := make([]byte, n)
	rand.New(rand.NewSource(seed)).Read(b)
	return b
}

func sum(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }

type item struct {
	name string
	data []byte
}

func writeAll(t testing.TB, st store.Store, recs []age.Recipient, opts WriterOptions, items []item) ([]ItemRef, []SegmentInfo) {
	t.Helper()
	opts.Store = st
	opts.Recipients = recs
	w, err := NewWriter(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	var refs []ItemRef
	for _, it := range items {
		ref, err := w.WriteItem(it.name, bytes.NewReader(it.data))
		if err != nil {
			t.Fatalf("WriteItem %s: %v", it.name, err)
		}
		refs = append(refs, ref)
	}
	segs, err := w.Close()
	if err != nil {
		t.Fatalf("Close: %v", err)
	}
	return refs, segs
}

func segMap(segs []SegmentInfo) map[string]SegmentInfo {
	m := map[string]SegmentInfo{}
	for _, s := range segs {
		m[s.ID] = s
	}
	return m
}

// readItem reads ref by streaming and again with ReadAll (reusing one Buffers across calls), and
// fails the test unless both give the same bytes or the same kind of error.
func readItem(t testing.TB, st store.Store, segs []SegmentInfo, ids []age.Identity, ref ItemRef) ([]byte, error) {
	t.Helper()
	got, err := readOne(st, segs, ids, ref, false)
	all, err2 := readOne(st, segs, ids, ref, true)
	if err == nil && (err2 != nil || !bytes.Equal(all, got)) {
		t.Errorf("ReadAll %q: %v, %d bytes; Read gave %d bytes", ref.Name, err2, len(all), len(got))
	}
	for _, kind := range []error{ErrIntegrity, ErrNoIdentity} {
		if errors.Is(err, kind) != errors.Is(err2, kind) {
			t.Errorf("%q: Read failed with %v, ReadAll with %v", ref.Name, err, err2)
		}
	}
	return got, err
}

// readOne reads ref with Read, or with ReadAll when whole is set.
func readOne(st store.Store, segs []SegmentInfo, ids []age.Identity, ref ItemRef, whole bool) ([]byte, error) {
	rc, err := OpenItem(context.Background(), st, segMap(segs), ids, ref)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	if whole {
		return rc.(WholeReader).ReadAll(&testBufs)
	}
	return io.ReadAll(rc)
}

var testBufs Buffers

func testItems() []item {
	return []item{
		{"d1/db-1/tables/users.sql", sqlText(300_000, 1)},                           // several chunks
		{"d1/db-1/tables/empty.sql", nil},                                           // empty item
		{"r2/bucket/photo.jpg", randomBytes(100_000, 2)},                            // incompressible, two chunks
		{"r2/bucket/exactly-one-chunk", sqlText(64<<10, 3)},                         // exactly ChunkSize
		{"r2/bucket/one-chunk-plus-one", sqlText(64<<10+1, 4)},                      // boundary
		{"do/ns/" + strings.Repeat("x", 180) + "/storage.ndjson", sqlText(5000, 5)}, // long name (PAX/ustar prefix)
		{"config/account.json", []byte(`{"ok":true}`)},
	}
}

func TestRoundTripManyItemsAndSegments(t *testing.T) {
	id, recs := newKey(t)
	st := mem.New()
	items := testItems()
	for i := 0; i < 40; i++ {
		items = append(items, item{fmt.Sprintf("r2/bucket/obj-%03d", i), sqlText(20_000+i*997, int64(100+i))})
	}
	refs, segs := writeAll(t, st, recs, WriterOptions{ChunkSize: 64 << 10, SegmentSize: 200 << 10, Concurrency: 3}, items)
	if len(segs) < 3 {
		t.Fatalf("want several segments, got %d", len(segs))
	}
	for _, s := range segs {
		if err := VerifySegment(context.Background(), st, s); err != nil {
			t.Fatal(err)
		}
		if s.Key != "segments/"+s.ID+".age" || len(s.ID) != 32 {
			t.Fatalf("segment naming: %+v", s)
		}
	}
	for i, it := range items {
		ref := refs[i]
		if ref.Name != it.name || ref.Size != int64(len(it.data)) || ref.SHA256 != sum(it.data) {
			t.Fatalf("ref %d: %+v", i, ref)
		}
		wantChunks := max(1, (len(it.data)+(64<<10)-1)/(64<<10))
		if len(ref.Chunks) != wantChunks {
			t.Fatalf("%s: %d chunks, want %d", it.name, len(ref.Chunks), wantChunks)
		}
		got, err := readItem(t, st, segs, []age.Identity{id}, ref)
		if err != nil {
			t.Fatalf("OpenItem %s: %v", it.name, err)
		}
		if !bytes.Equal(got, it.data) {
			t.Fatalf("%s: content differs (%d vs %d bytes)", it.name, len(got), len(it.data))
		}
	}
	// Streaming every segment yields every entry, parts in order.
	entries := map[string][]byte{}
	var order []string
	for _, s := range segs {
		err := ReadSegment(context.Background(), st, s, []age.Identity{id}, func(name string, r io.Reader) error {
			b, err := io.ReadAll(r)
			entries[name] = b
			order = append(order, name)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	for i, it := range items {
		var joined []byte
		for c := range refs[i].Chunks {
			e := EntryName(it.name, c, len(refs[i].Chunks))
			b, ok := entries[e]
			if !ok {
				t.Fatalf("entry %s missing from ReadSegment", e)
			}
			joined = append(joined, b...)
		}
		if !bytes.Equal(joined, it.data) {
			t.Fatalf("ReadSegment %s differs", it.name)
		}
	}
	if order[0] != items[0].name+".part000001" {
		t.Fatalf("first entry %q", order[0])
	}
}

func TestPostQuantumRecipient(t *testing.T) {
	id, err := age.GenerateHybridIdentity()
	if err != nil {
		t.Fatal(err)
	}
	st := mem.New()
	data := sqlText(50_000, 9)
	refs, segs := writeAll(t, st, []age.Recipient{id.Recipient()}, WriterOptions{}, []item{{"a.sql", data}})
	got, err := readItem(t, st, segs, []age.Identity{id}, refs[0])
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("%v", err)
	}
}

func TestNewWriterRefusesBadRecipients(t *testing.T) {
	if _, err := NewWriter(context.Background(), WriterOptions{Store: mem.New()}); err == nil {
		t.Fatal("no recipients accepted")
	}
	pq, _ := age.GenerateHybridIdentity()
	_, recs := newKey(t)
	_, err := NewWriter(context.Background(), WriterOptions{Store: mem.New(), Recipients: append(recs, pq.Recipient())})
	if err == nil {
		t.Fatal("mixed recipients accepted")
	}
}

func TestBadNames(t *testing.T) {
	_, recs := newKey(t)
	w, err := NewWriter(context.Background(), WriterOptions{Store: mem.New(), Recipients: recs})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Abort()
	for _, n := range []string{"", "/etc/passwd", "../x", "a/../../x", "a//b", "./a", "a/", "a\x00b"} {
		if _, err := w.WriteItem(n, strings.NewReader("x")); !errors.Is(err, ErrBadName) {
			t.Errorf("%q: %v", n, err)
		}
	}
}

// countingStore counts the bytes read through Open.
type countingStore struct {
	store.Store
	read atomic.Int64
	gets atomic.Int64
}

type countingReader struct {
	io.ReadCloser
	n *atomic.Int64
}

func (c countingReader) Read(p []byte) (int, error) {
	n, err := c.ReadCloser.Read(p)
	c.n.Add(int64(n))
	return n, err
}

func (c *countingStore) Open(ctx context.Context, key string, off, n int64) (io.ReadCloser, error) {
	rc, err := c.Store.Open(ctx, key, off, n)
	if err != nil {
		return nil, err
	}
	c.gets.Add(1)
	return countingReader{rc, &c.read}, nil
}

func TestOpenItemReadsOnlyItsRange(t *testing.T) {
	id, recs := newKey(t)
	st := mem.New()
	var items []item
	for i := 0; i < 50; i++ {
		items = append(items, item{fmt.Sprintf("t/%02d.sql", i), randomBytes(200_000, int64(i))})
	}
	refs, segs := writeAll(t, st, recs, WriterOptions{ChunkSize: 1 << 20}, items)
	if len(segs) != 1 {
		t.Fatalf("%d segments", len(segs))
	}
	for _, whole := range []bool{false, true} {
		cs := &countingStore{Store: st}
		got, err := readOne(cs, segs, []age.Identity{id}, refs[25], whole)
		if err != nil || !bytes.Equal(got, items[25].data) {
			t.Fatal(err)
		}
		// Header + final chunk + the item's own ~200 KB: far below the 10 MB segment.
		if r := cs.read.Load(); r > 400_000 || r*10 > segs[0].Size {
			t.Fatalf("ReadAll %v: read %d bytes of a %d-byte segment", whole, r, segs[0].Size)
		}
		if g := cs.gets.Load(); g > 4 {
			t.Fatalf("ReadAll %v: %d GETs for one item", whole, g)
		}
		t.Logf("ReadAll %v: read %d of %d bytes in %d GETs", whole, cs.read.Load(), segs[0].Size, cs.gets.Load())
	}
}

func TestOpenItemLargeItemFewGETs(t *testing.T) {
	id, recs := newKey(t)
	st := mem.New()
	data := sqlText(20<<20, 7)
	refs, segs := writeAll(t, st, recs, WriterOptions{ChunkSize: 2 << 20}, []item{{"big.sql", data}})
	for _, whole := range []bool{false, true} {
		cs := &countingStore{Store: st}
		got, err := readOne(cs, segs, []age.Identity{id}, refs[0], whole)
		if err != nil || !bytes.Equal(got, data) {
			t.Fatal(err)
		}
		// Without read-ahead this would be one GET per 64 KiB age chunk (>60).
		maxGets := 3 + segs[0].Size/ReadAheadWindow + int64(len(refs[0].Chunks))
		if g := cs.gets.Load(); g > maxGets {
			t.Fatalf("ReadAll %v: %d GETs, want ≤ %d", whole, g, maxGets)
		}
	}
}

// replace rewrites an object in a mem store (objects are immutable, so delete and put).
func replace(t testing.TB, st store.Store, key string, f func([]byte) []byte) {
	t.Helper()
	rc, err := st.Open(context.Background(), key, 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(rc)
	rc.Close()
	b = f(b)
	if err := st.Delete(context.Background(), key); err != nil {
		t.Fatal(err)
	}
	if err := st.Put(context.Background(), key, bytes.NewReader(b), store.PutOptions{}); err != nil {
		t.Fatal(err)
	}
}

func TestCorruptionDetected(t *testing.T) {
	id, recs := newKey(t)
	ids := []age.Identity{id}
	items := testItems()
	for _, where := range []string{"payload", "last-byte", "header-mac"} {
		t.Run(where, func(t *testing.T) {
			st := mem.New()
			refs, segs := writeAll(t, st, recs, WriterOptions{ChunkSize: 64 << 10}, items)
			seg := segs[0]
			replace(t, st, seg.Key, func(b []byte) []byte {
				switch where {
				case "payload":
					// inside the first item's first frame
					b[len(b)-int(seg.PlainSize)+int(refs[0].Chunks[0].Length/2)] ^= 0x40
				case "last-byte":
					b[len(b)-1] ^= 1
				case "header-mac":
					i := bytes.Index(b, []byte("\n--- ")) + 6
					b[i] ^= 1
				}
				return b
			})
			if err := VerifySegment(context.Background(), st, seg); !errors.Is(err, ErrIntegrity) {
				t.Errorf("VerifySegment: %v", err)
			}
			err := ReadSegment(context.Background(), st, seg, ids, func(string, io.Reader) error { return nil })
			if !errors.Is(err, ErrIntegrity) {
				t.Errorf("ReadSegment: %v", err)
			}
			ref := refs[0]
			if where == "last-byte" {
				ref = refs[len(refs)-1]
			}
			_, err = readItem(t, st, segs, ids, ref)
			if !errors.Is(err, ErrIntegrity) || !strings.Contains(err.Error(), seg.ID) {
				t.Errorf("OpenItem: %v", err)
			}
		})
	}
}

func TestCatalogueMismatchDetected(t *testing.T) {
	id, recs := newKey(t)
	st := mem.New()
	refs, segs := writeAll(t, st, recs, WriterOptions{}, []item{{"a", []byte("hello")}})
	ref := refs[0]
	ref.SHA256 = sum([]byte("other"))
	_, err := readItem(t, st, segs, []age.Identity{id}, ref)
	if !errors.Is(err, ErrIntegrity) || !strings.Contains(err.Error(), `"a"`) {
		t.Fatal(err)
	}
	ref = refs[0]
	ref.Name = "b"
	if _, err = readItem(t, st, segs, []age.Identity{id}, ref); !errors.Is(err, ErrIntegrity) {
		t.Fatal(err)
	}
	bad := segs[0]
	bad.SHA256 = sum(nil)
	if err := VerifySegment(context.Background(), st, bad); !errors.Is(err, ErrIntegrity) {
		t.Fatal(err)
	}
	if err := ReadSegment(context.Background(), st, bad, []age.Identity{id}, func(string, io.Reader) error { return nil }); !errors.Is(err, ErrIntegrity) {
		t.Fatal(err)
	}
}

func TestWrongIdentity(t *testing.T) {
	_, recs := newKey(t)
	other, _ := newKey(t)
	st := mem.New()
	refs, segs := writeAll(t, st, recs, WriterOptions{}, []item{{"a", []byte("hello")}})
	ids := []age.Identity{other}
	if _, err := readItem(t, st, segs, ids, refs[0]); !errors.Is(err, ErrNoIdentity) {
		t.Fatalf("OpenItem: %v", err)
	}
	err := ReadSegment(context.Background(), st, segs[0], ids, func(string, io.Reader) error { return nil })
	if !errors.Is(err, ErrNoIdentity) || errors.Is(err, ErrIntegrity) {
		t.Fatalf("ReadSegment: %v", err)
	}
}

func TestTruncatedSegment(t *testing.T) {
	id, recs := newKey(t)
	st := mem.New()
	refs, segs := writeAll(t, st, recs, WriterOptions{ChunkSize: 64 << 10}, testItems())
	seg := segs[0]
	replace(t, st, seg.Key, func(b []byte) []byte { return b[:len(b)-70_000] })
	if err := VerifySegment(context.Background(), st, seg); !errors.Is(err, ErrIntegrity) {
		t.Errorf("VerifySegment: %v", err)
	}
	if err := ReadSegment(context.Background(), st, seg, []age.Identity{id}, func(string, io.Reader) error { return nil }); !errors.Is(err, ErrIntegrity) {
		t.Errorf("ReadSegment: %v", err)
	}
	if _, err := readItem(t, st, segs, []age.Identity{id}, refs[0]); !errors.Is(err, ErrIntegrity) {
		t.Errorf("OpenItem: %v", err)
	}
	if err := st.Delete(context.Background(), seg.Key); err != nil {
		t.Fatal(err)
	}
	if err := VerifySegment(context.Background(), st, seg); !errors.Is(err, ErrIntegrity) || !errors.Is(err, store.ErrNotFound) {
		t.Errorf("missing: %v", err)
	}
}

func TestReadSegmentCallbackError(t *testing.T) {
	id, recs := newKey(t)
	st := mem.New()
	_, segs := writeAll(t, st, recs, WriterOptions{}, testItems())
	boom := errors.New("disk full")
	err := ReadSegment(context.Background(), st, segs[0], []age.Identity{id}, func(string, io.Reader) error { return boom })
	if !errors.Is(err, boom) || errors.Is(err, ErrIntegrity) {
		t.Fatal(err)
	}
}

func listSegments(t testing.TB, st store.Store) []string {
	var keys []string
	err := st.List(context.Background(), SegmentPrefix, func(o store.ObjectInfo) error { keys = append(keys, o.Key); return nil })
	if err != nil {
		t.Fatal(err)
	}
	return keys
}

func TestAbortLeavesNothing(t *testing.T) {
	_, recs := newKey(t)
	st := mem.New()
	w, err := NewWriter(context.Background(), WriterOptions{Store: st, Recipients: recs, ChunkSize: 64 << 10, SegmentSize: 100 << 10})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 10; i++ {
		if _, err := w.WriteItem(fmt.Sprintf("x/%d", i), bytes.NewReader(randomBytes(50_000, int64(i)))); err != nil {
			t.Fatal(err)
		}
	}
	w.Abort()
	if k := listSegments(t, st); len(k) != 0 {
		t.Fatalf("left behind: %v", k)
	}
	if _, err := w.WriteItem("y", strings.NewReader("y")); !errors.Is(err, ErrClosed) {
		t.Fatal(err)
	}
}

// failingStore fails every Put after it has read limit bytes.
type failingStore struct {
	store.Store
	limit int64
}

var errInjected = errors.New("injected upload failure")

func (f *failingStore) Put(ctx context.Context, key string, r io.Reader, o store.PutOptions) error {
	n, err := io.Copy(io.Discard, io.LimitReader(r, f.limit))
	if err != nil {
		return err
	}
	if n == f.limit {
		return errInjected
	}
	return f.Store.Put(ctx, key, bytes.NewReader(nil), o)
}

func TestUploadFailureSurfaces(t *testing.T) {
	_, recs := newKey(t)
	st := &failingStore{Store: mem.New(), limit: 300 << 10}
	w, err := NewWriter(context.Background(), WriterOptions{Store: st, Recipients: recs, ChunkSize: 64 << 10})
	if err != nil {
		t.Fatal(err)
	}
	var werr error
	for i := 0; i < 20 && werr == nil; i++ {
		_, werr = w.WriteItem(fmt.Sprintf("x/%d", i), bytes.NewReader(randomBytes(64<<10, int64(i))))
	}
	_, cerr := w.Close()
	if !errors.Is(werr, errInjected) && !errors.Is(cerr, errInjected) {
		t.Fatalf("WriteItem: %v, Close: %v", werr, cerr)
	}
	if k := listSegments(t, st); len(k) != 0 {
		t.Fatalf("left behind: %v", k)
	}
}

type errReader struct{ n int }

func (e *errReader) Read(p []byte) (int, error) {
	if e.n <= 0 {
		return 0, errors.New("connection reset")
	}
	n := min(len(p), e.n)
	e.n -= n
	return n, nil
}

// A failing source loses only its own item: the Writer goes on, so a source can try again, and the
// half item's chunks stay in the segment unreferenced.
func TestItemReadErrorLosesOnlyThatItem(t *testing.T) {
	id, recs := newKey(t)
	st := mem.New()
	w, _ := NewWriter(context.Background(), WriterOptions{Store: st, Recipients: recs, ChunkSize: 64 << 10})
	if _, err := w.WriteItem("a", &errReader{n: 200_000}); err == nil || !strings.Contains(err.Error(), "connection reset") {
		t.Fatal(err)
	}
	want := bytes.Repeat([]byte("retry "), 40_000)
	ref, err := w.WriteItem("a", bytes.NewReader(want))
	if err != nil {
		t.Fatalf("second attempt: %v", err)
	}
	segs, err := w.Close()
	if err != nil {
		t.Fatalf("Close after a failed then a good item: %v", err)
	}
	got, err := readItem(t, st, segs, []age.Identity{id}, ref)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("retried item: %d bytes, %v", len(got), err)
	}
}

// Cancellation still ends the Writer and leaves no segment.
func TestCancelledItemFailsWriter(t *testing.T) {
	_, recs := newKey(t)
	st := mem.New()
	ctx, cancel := context.WithCancel(context.Background())
	w, _ := NewWriter(ctx, WriterOptions{Store: st, Recipients: recs, ChunkSize: 64 << 10})
	if _, err := w.WriteItem("x", bytes.NewReader(make([]byte, 100_000))); err != nil {
		t.Fatal(err)
	}
	cancel()
	if _, err := w.WriteItem("a", bytes.NewReader(make([]byte, 200_000))); err == nil {
		t.Fatal("WriteItem after cancel succeeded")
	}
	if _, err := w.Close(); err == nil {
		t.Fatal("Close after cancel succeeded")
	}
	if k := listSegments(t, st); len(k) != 0 {
		t.Fatalf("left behind: %v", k)
	}
}

func TestNoItemsNoSegments(t *testing.T) {
	_, recs := newKey(t)
	st := mem.New()
	_, segs := writeAll(t, st, recs, WriterOptions{}, nil)
	if len(segs) != 0 || len(listSegments(t, st)) != 0 {
		t.Fatal(segs)
	}
}

// The escape hatch: standard tools alone recover every item from a segment on disk.
func TestEscapeHatchStandardTools(t *testing.T) {
	tools.Require(t, "age", "lz4", "tar", "bash")
	dir := t.TempDir()
	st, err := local.New(filepath.Join(dir, "repo"))
	if err != nil {
		t.Fatal(err)
	}
	idStr, rec, _ := keys.Generate(false) // the age 1.1.1 CLI here predates post-quantum keys
	keyFile := filepath.Join(dir, "key.txt")
	if err := keys.WriteIdentityFile(keyFile, idStr, rec); err != nil {
		t.Fatal(err)
	}
	recs, _ := keys.ParseRecipients([]string{rec})
	items := testItems()
	refs, segs := writeAll(t, st, recs, WriterOptions{ChunkSize: 64 << 10}, items)
	if len(segs) != 1 {
		t.Fatalf("%d segments", len(segs))
	}
	out := filepath.Join(dir, "out")
	os.Mkdir(out, 0o700)
	segPath := filepath.Join(dir, "repo", filepath.FromSlash(segs[0].Key))
	cmd := exec.Command("bash", "-c", `set -euo pipefail; age -d -i "$1" "$2" | lz4 -dc | tar -x -C "$3"`, "bash", keyFile, segPath, out)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, b)
	}
	for i, it := range items {
		p := filepath.Join(out, filepath.FromSlash(it.name))
		if len(refs[i].Chunks) > 1 {
			cat := exec.Command("bash", "-c", `cat "$1".part* > "$1"`, "bash", p)
			if b, err := cat.CombinedOutput(); err != nil {
				t.Fatalf("%v: %s", err, b)
			}
		}
		got, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, it.data) {
			t.Fatalf("%s differs after age|lz4|tar", it.name)
		}
	}
	// `tar t` lists exactly the entries the catalogue names, in order.
	list, err := exec.Command("bash", "-c", `age -d -i "$1" "$2" | lz4 -dc | tar -t`, "bash", keyFile, segPath).Output()
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for i, it := range items {
		for c := range refs[i].Chunks {
			want = append(want, EntryName(it.name, c, len(refs[i].Chunks)))
		}
	}
	if got := strings.Fields(string(list)); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("tar -t:\n%s\nwant:\n%s", got, want)
	}
}

// textStream yields n bytes of SQL-like text without holding them.
type textStream struct {
	left int64
	line []byte
	pos  int
}

func (s *textStream) Read(p []byte) (int, error) {
	if s.left == 0 {
		return 0, io.EOF
	}
	n := 0
	for n < len(p) && s.left > 0 {
		if s.pos == len(s.line) {
			s.line = fmt.Appendf(s.line[:0], "INSERT INTO \"t\" VALUES(%d,'row %d');\n", s.left, s.left*7919)
			s.pos = 0
		}
		c := copy(p[n:], s.line[s.pos:min(len(s.line), s.pos+int(min(int64(len(p)-n), s.left)))])
		s.pos += c
		n += c
		s.left -= int64(c)
	}
	return n, nil
}

func TestWriterMemoryBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("streams 96 MiB")
	}
	_, recs := newKey(t)
	st := &discardStore{sizes: map[string]int64{}}
	w, err := NewWriter(context.Background(), WriterOptions{Store: st, Recipients: recs, ChunkSize: 512 << 10, Concurrency: 2})
	if err != nil {
		t.Fatal(err)
	}
	runtime.GC()
	var base runtime.MemStats
	runtime.ReadMemStats(&base)
	stop := make(chan struct{})
	peak := make(chan uint64)
	go func() {
		var m runtime.MemStats
		var max uint64
		for {
			select {
			case <-stop:
				peak <- max
				return
			case <-time.After(20 * time.Millisecond):
				// Live memory, not garbage awaiting a GC that a loaded machine runs late.
				runtime.GC()
				runtime.ReadMemStats(&m)
				if m.HeapAlloc > max {
					max = m.HeapAlloc
				}
			}
		}
	}()
	const size = 96 << 20
	ref, err := w.WriteItem("big.sql", &textStream{left: size})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Close(); err != nil {
		t.Fatal(err)
	}
	close(stop)
	p := <-peak
	if ref.Size != size || len(ref.Chunks) != size/(512<<10) {
		t.Fatalf("%d bytes in %d chunks", ref.Size, len(ref.Chunks))
	}
	// Buffers: 512 KiB × (2×2+6) = 5 MiB; a writer that held the item would need 96 MiB.
	if grow := int64(p) - int64(base.HeapAlloc); grow > 32<<20 {
		t.Fatalf("live heap grew by %d MiB while streaming a %d MiB item", grow>>20, size>>20)
	}
	t.Logf("peak live heap growth %d MiB", (int64(p)-int64(base.HeapAlloc))>>20)
}

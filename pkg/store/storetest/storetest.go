// Package storetest is the one conformance suite every store and decorator must pass, so the engine
// can rely on the store contract (see package store) instead of on any one implementation.
//
// A store's test file is a few lines:
//
//	func TestConformance(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) store.Store { return newEmptyStore(t) })
//	}
package storetest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"

	"github.com/cfbackup/cfbackup/pkg/layout"
	"github.com/cfbackup/cfbackup/pkg/store"
)

// LargeSize is the size of the streamed object of unknown length. It spans three 5 MiB parts, the
// smallest part size S3 accepts, so S3 stores under test should use a PartSize of 5 MiB.
const LargeSize = 12<<20 + 12345

// Run runs every conformance test; newStore must return an empty store that the test may fill.
func Run(t *testing.T, newStore func(t *testing.T) store.Store) {
	t.Helper()
	tests := []struct {
		name string
		fn   func(t *testing.T, s store.Store)
	}{
		{"PutOpenStatDelete", testPutOpenStatDelete},
		{"Overwrite", testOverwrite},
		{"Ranges", testRanges},
		{"EmptyObject", testEmptyObject},
		{"LargeUnknownSize", testLarge},
		{"IfNotExists", testIfNotExists},
		{"ConcurrentCreate", testConcurrentCreate},
		{"ListOrderAndPrefix", testList},
		{"UnicodeKeys", testUnicodeKeys},
		{"Missing", testMissing},
		{"InvalidKeys", testInvalidKeys},
		{"FailingReader", testFailingReader},
		{"CancelledPut", testCancelledPut},
		{"Location", func(t *testing.T, s store.Store) {
			if s.Location() == "" {
				t.Fatal("Location() is empty")
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, newStore(t)) })
	}
}

// onlyReader hides every interface but io.Reader (Seeker, WriterTo, Len) so stores must really stream.
type onlyReader struct{ r io.Reader }

func (o onlyReader) Read(p []byte) (int, error) { return o.r.Read(p) }

// randReader produces n deterministic pseudo-random bytes from seed.
func randReader(seed uint64, n int64) io.Reader {
	rng := rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8), byte(seed >> 16)})
	return onlyReader{io.LimitReader(rng, n)}
}

func put(t *testing.T, s store.Store, key string, data []byte) {
	t.Helper()
	if err := s.Put(context.Background(), key, onlyReader{bytes.NewReader(data)}, store.PutOptions{}); err != nil {
		t.Fatalf("Put(%q): %v", key, err)
	}
}

func read(t *testing.T, s store.Store, key string, off, n int64) []byte {
	t.Helper()
	rc, err := s.Open(context.Background(), key, off, n)
	if err != nil {
		t.Fatalf("Open(%q, %d, %d): %v", key, off, n, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("read %q [%d,+%d): %v", key, off, n, err)
	}
	return b
}

func wantNotFound(t *testing.T, s store.Store, key string) {
	t.Helper()
	if _, err := s.Stat(context.Background(), key); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Stat(%q) = %v, want ErrNotFound", key, err)
	}
}

func listKeys(t *testing.T, s store.Store, prefix string) []string {
	t.Helper()
	var keys []string
	err := s.List(context.Background(), prefix, func(oi store.ObjectInfo) error {
		keys = append(keys, oi.Key)
		return nil
	})
	if err != nil {
		t.Fatalf("List(%q): %v", prefix, err)
	}
	return keys
}

func testPutOpenStatDelete(t *testing.T, s store.Store) {
	ctx := context.Background()
	data := []byte("hello, repository\n")
	put(t, s, "dir/sub/a.txt", data)
	info, err := s.Stat(ctx, "dir/sub/a.txt")
	if err != nil {
		t.Fatal(err)
	}
	if info.Key != "dir/sub/a.txt" || info.Size != int64(len(data)) || info.ModTime.IsZero() {
		t.Fatalf("Stat = %+v", info)
	}
	if got := read(t, s, "dir/sub/a.txt", 0, -1); !bytes.Equal(got, data) {
		t.Fatalf("Open read %q, want %q", got, data)
	}
	if err := s.Delete(ctx, "dir/sub/a.txt"); err != nil {
		t.Fatal(err)
	}
	wantNotFound(t, s, "dir/sub/a.txt")
	if err := s.Delete(ctx, "dir/sub/a.txt"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("second Delete = %v, want ErrNotFound", err)
	}
	if keys := listKeys(t, s, ""); len(keys) != 0 {
		t.Fatalf("List after delete = %q", keys)
	}
}

func testOverwrite(t *testing.T, s store.Store) {
	put(t, s, "k", []byte("first version, longer"))
	put(t, s, "k", []byte("second"))
	if got := read(t, s, "k", 0, -1); string(got) != "second" {
		t.Fatalf("after overwrite read %q", got)
	}
}

func testRanges(t *testing.T, s store.Store) {
	data, _ := io.ReadAll(randReader(1, 1000))
	put(t, s, "r", data)
	for _, c := range []struct {
		off, n     int64
		start, end int
	}{
		{0, -1, 0, 1000},      // whole
		{100, 200, 100, 300},  // middle
		{900, -1, 900, 1000},  // to end
		{900, 500, 900, 1000}, // length past end: truncated
		{999, 1, 999, 1000},   // last byte
		{0, 0, 0, 0},          // empty range
		{1000, -1, 0, 0},      // offset at end
		{1000, 10, 0, 0},
		{5000, -1, 0, 0}, // offset past end
	} {
		got := read(t, s, "r", c.off, c.n)
		if want := data[c.start:c.end]; !bytes.Equal(got, want) {
			t.Errorf("Open(r, %d, %d): got %d bytes, want %d (data[%d:%d])", c.off, c.n, len(got), len(want), c.start, c.end)
		}
	}
}

func testEmptyObject(t *testing.T, s store.Store) {
	put(t, s, "empty", nil)
	info, err := s.Stat(context.Background(), "empty")
	if err != nil || info.Size != 0 {
		t.Fatalf("Stat(empty) = %+v, %v", info, err)
	}
	if got := read(t, s, "empty", 0, -1); len(got) != 0 {
		t.Fatalf("read %d bytes from empty object", len(got))
	}
	if got := read(t, s, "empty", 0, 10); len(got) != 0 {
		t.Fatalf("range read %d bytes from empty object", len(got))
	}
	if keys := listKeys(t, s, ""); !slices.Equal(keys, []string{"empty"}) {
		t.Fatalf("List = %q", keys)
	}
}

// bigKey and raceKey are where a segment and a manifest would be: the keys the large upload and the
// conditional create serve in a repository.
var (
	bigKey  = layout.SegmentKey("big")
	raceKey = layout.Snapshots + "race.json"
)

func testLarge(t *testing.T, s store.Store) {
	ctx := context.Background()
	if err := s.Put(ctx, bigKey, randReader(7, LargeSize), store.PutOptions{IfNotExists: true}); err != nil {
		t.Fatal(err)
	}
	info, err := s.Stat(ctx, bigKey)
	if err != nil || info.Size != LargeSize {
		t.Fatalf("Stat = %+v, %v; want size %d", info, err, LargeSize)
	}
	want := sha256.New()
	io.Copy(want, randReader(7, LargeSize))
	rc, err := s.Open(ctx, bigKey, 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	got := sha256.New()
	n, err := io.Copy(got, rc)
	rc.Close()
	if err != nil || n != LargeSize || !bytes.Equal(got.Sum(nil), want.Sum(nil)) {
		t.Fatalf("read back %d bytes (err %v), hash match %v", n, err, bytes.Equal(got.Sum(nil), want.Sum(nil)))
	}
	// A range across the first part boundary (5 MiB) and one in the last part.
	all, _ := io.ReadAll(randReader(7, LargeSize))
	for _, r := range [][2]int64{{5<<20 - 10, 20}, {10<<20 + 3, -1}} {
		g := read(t, s, bigKey, r[0], r[1])
		end := int64(len(all))
		if r[1] >= 0 {
			end = r[0] + r[1]
		}
		if !bytes.Equal(g, all[r[0]:end]) {
			t.Fatalf("range %v mismatch", r)
		}
	}
}

func testIfNotExists(t *testing.T, s store.Store) {
	ctx := context.Background()
	if err := s.Put(ctx, "m", bytes.NewReader([]byte("one")), store.PutOptions{IfNotExists: true}); err != nil {
		t.Fatal(err)
	}
	err := s.Put(ctx, "m", bytes.NewReader([]byte("two")), store.PutOptions{IfNotExists: true})
	if !errors.Is(err, store.ErrExists) {
		t.Fatalf("second conditional Put = %v, want ErrExists", err)
	}
	if got := read(t, s, "m", 0, -1); string(got) != "one" {
		t.Fatalf("content after refused create = %q", got)
	}
}

func testConcurrentCreate(t *testing.T, s store.Store) {
	ctx := context.Background()
	const n = 8
	errs := make([]error, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			body := bytes.Repeat([]byte{byte('a' + i)}, 1000+i)
			errs[i] = s.Put(ctx, raceKey, onlyReader{bytes.NewReader(body)}, store.PutOptions{IfNotExists: true})
		}()
	}
	close(start)
	wg.Wait()
	winner := -1
	for i, err := range errs {
		switch {
		case err == nil:
			if winner >= 0 {
				t.Fatalf("creators %d and %d both succeeded", winner, i)
			}
			winner = i
		case !errors.Is(err, store.ErrExists):
			t.Fatalf("creator %d: %v, want ErrExists", i, err)
		}
	}
	if winner < 0 {
		t.Fatal("no creator succeeded")
	}
	want := bytes.Repeat([]byte{byte('a' + winner)}, 1000+winner)
	if got := read(t, s, raceKey, 0, -1); !bytes.Equal(got, want) {
		t.Fatalf("stored content is not the winner's (%d bytes)", len(got))
	}
}

func testList(t *testing.T, s store.Store) {
	keys := []string{"b", "a/b", "a-c", "ab", "a/c/d", layout.Snapshots + "2", layout.Snapshots + "1", "snapshotsX", "a/c-e", "a/c/e/f"}
	for i, k := range keys {
		put(t, s, k, bytes.Repeat([]byte("x"), i))
	}
	sorted := slices.Clone(keys)
	slices.Sort(sorted) // byte order, as S3 ListObjectsV2
	if got := listKeys(t, s, ""); !slices.Equal(got, sorted) {
		t.Fatalf("List(\"\") = %q\nwant %q", got, sorted)
	}
	for prefix, want := range map[string][]string{
		"a/":             {"a/b", "a/c-e", "a/c/d", "a/c/e/f"},
		"a":              {"a-c", "a/b", "a/c-e", "a/c/d", "a/c/e/f", "ab"},
		"a/c":            {"a/c-e", "a/c/d", "a/c/e/f"},
		"a/c/":           {"a/c/d", "a/c/e/f"},
		layout.Snapshots: {layout.Snapshots + "1", layout.Snapshots + "2"},
		"snapshots":      {layout.Snapshots + "1", layout.Snapshots + "2", "snapshotsX"},
		"nope/":          nil,
		"z":              nil,
	} {
		if got := listKeys(t, s, prefix); !slices.Equal(got, want) {
			t.Errorf("List(%q) = %q, want %q", prefix, got, want)
		}
	}
	// Sizes are reported and fn's error stops the listing and comes back.
	stop := errors.New("stop")
	var seen []store.ObjectInfo
	err := s.List(context.Background(), "", func(oi store.ObjectInfo) error {
		seen = append(seen, oi)
		if len(seen) == 2 {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) || len(seen) != 2 {
		t.Fatalf("List with failing fn: err=%v after %d calls", err, len(seen))
	}
	if i := slices.Index(keys, seen[0].Key); seen[0].Size != int64(i) {
		t.Fatalf("List size of %q = %d, want %d", seen[0].Key, seen[0].Size, i)
	}
}

func testUnicodeKeys(t *testing.T, s store.Store) {
	ctx := context.Background()
	keys := []string{"dir with space/ünïcødé 🎉.json", "日本語/キー", "a+b=c&d?e#f%20g"}
	for _, k := range keys {
		put(t, s, k, []byte(k))
	}
	for _, k := range keys {
		if got := read(t, s, k, 0, -1); string(got) != k {
			t.Errorf("read %q = %q", k, got)
		}
		if info, err := s.Stat(ctx, k); err != nil || info.Key != k {
			t.Errorf("Stat(%q) = %+v, %v", k, info, err)
		}
	}
	sorted := slices.Clone(keys)
	slices.Sort(sorted)
	if got := listKeys(t, s, ""); !slices.Equal(got, sorted) {
		t.Fatalf("List = %q, want %q", got, sorted)
	}
	if got := listKeys(t, s, "dir with space/"); !slices.Equal(got, keys[:1]) {
		t.Fatalf("List(prefix with space) = %q", got)
	}
	for _, k := range keys {
		if err := s.Delete(ctx, k); err != nil {
			t.Fatalf("Delete(%q): %v", k, err)
		}
	}
}

func testMissing(t *testing.T, s store.Store) {
	ctx := context.Background()
	put(t, s, "present/x", []byte("x"))
	for _, k := range []string{"absent", "present/y", "present/x/under-a-file"} {
		if _, err := s.Open(ctx, k, 0, -1); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("Open(%q) = %v, want ErrNotFound", k, err)
		}
		if _, err := s.Open(ctx, k, 5, 10); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("ranged Open(%q) = %v, want ErrNotFound", k, err)
		}
		if _, err := s.Stat(ctx, k); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("Stat(%q) = %v, want ErrNotFound", k, err)
		}
		if err := s.Delete(ctx, k); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("Delete(%q) = %v, want ErrNotFound", k, err)
		}
	}
	// "present" is a directory-like prefix, not an object.
	if _, err := s.Stat(ctx, "present"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Stat(prefix) = %v, want ErrNotFound", err)
	}
}

func testInvalidKeys(t *testing.T, s store.Store) {
	ctx := context.Background()
	for _, k := range []string{"", "/abs", "../escape", "a/../../b", "a\\b", "a//b", "./a", "a/.tmp-x"} {
		if err := s.Put(ctx, k, bytes.NewReader([]byte("x")), store.PutOptions{}); err == nil {
			t.Errorf("Put(%q) succeeded, want an error", k)
		}
		if _, err := s.Open(ctx, k, 0, -1); err == nil {
			t.Errorf("Open(%q) succeeded, want an error", k)
		}
	}
	if keys := listKeys(t, s, ""); len(keys) != 0 {
		t.Fatalf("invalid Puts left %q", keys)
	}
}

var errBoom = errors.New("boom: source failed")

// failingReader yields n bytes, then fails.
type failingReader struct {
	r io.Reader
}

func newFailing(n int64) io.Reader {
	return &failingReader{r: io.LimitReader(randReader(3, n), n)}
}

func (f *failingReader) Read(p []byte) (int, error) {
	n, err := f.r.Read(p)
	if err == io.EOF {
		return n, errBoom
	}
	return n, err
}

func testFailingReader(t *testing.T, s store.Store) {
	ctx := context.Background()
	put(t, s, "keep", []byte("old content"))
	for _, n := range []int64{0, 100, 6 << 20} {
		key := fmt.Sprintf("fail/%d", n)
		err := s.Put(ctx, key, newFailing(n), store.PutOptions{})
		if !errors.Is(err, errBoom) {
			t.Fatalf("Put with reader failing after %d bytes = %v, want the reader's error", n, err)
		}
		wantNotFound(t, s, key)
		err = s.Put(ctx, "keep", newFailing(n), store.PutOptions{})
		if !errors.Is(err, errBoom) {
			t.Fatalf("overwrite with failing reader = %v", err)
		}
		if got := read(t, s, "keep", 0, -1); string(got) != "old content" {
			t.Fatalf("failed overwrite changed the object to %d bytes", len(got))
		}
	}
	if keys := listKeys(t, s, ""); !slices.Equal(keys, []string{"keep"}) {
		t.Fatalf("failed Puts left objects: %q", keys)
	}
}

// cancellingReader cancels the Put's context after n bytes and keeps producing data.
type cancellingReader struct {
	r      io.Reader
	left   int64
	cancel context.CancelFunc
}

func (c *cancellingReader) Read(p []byte) (int, error) {
	if c.left <= 0 {
		c.cancel()
	}
	n, err := c.r.Read(p)
	c.left -= int64(n)
	return n, err
}

func testCancelledPut(t *testing.T, s store.Store) {
	for _, n := range []int64{0, 1000, 6 << 20} {
		ctx, cancel := context.WithCancel(context.Background())
		key := fmt.Sprintf("cancel/%d", n)
		r := &cancellingReader{r: randReader(4, LargeSize), left: n, cancel: cancel}
		err := s.Put(ctx, key, r, store.PutOptions{IfNotExists: true})
		cancel()
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Put cancelled after %d bytes = %v, want context.Canceled", n, err)
		}
		wantNotFound(t, s, key)
	}
	if keys := listKeys(t, s, ""); len(keys) != 0 {
		t.Fatalf("cancelled Puts left %q", keys)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := s.Put(ctx, "pre-cancelled", bytes.NewReader([]byte("x")), store.PutOptions{}); !errors.Is(err, context.Canceled) {
		t.Fatalf("Put with cancelled ctx = %v", err)
	}
	wantNotFound(t, s, "pre-cancelled")
}

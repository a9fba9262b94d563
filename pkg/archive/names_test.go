package archive

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"testing"

	"filippo.io/age"
	"github.com/pierrec/lz4/v4"
)

// forgeSegment builds a segment the way a bucket writer holding only the recipients could: an age
// file of one LZ4 frame holding a tar stream with one entry per name, each holding "data".
func forgeSegment(t *testing.T, recs []age.Recipient, names ...string) []byte {
	t.Helper()
	var plain bytes.Buffer
	zw := lz4.NewWriter(&plain)
	tw := tar.NewWriter(zw)
	for _, n := range names {
		if err := tw.WriteHeader(&tar.Header{Name: n, Size: 4, Mode: 0o600, Typeflag: tar.TypeReg, Format: tar.FormatPAX}); err != nil {
			t.Fatalf("tar header %q: %v", n, err)
		}
		if _, err := tw.Write([]byte("data")); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	var ct bytes.Buffer
	w, err := age.Encrypt(&ct, recs...)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(plain.Bytes()); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return ct.Bytes()
}

// TestReadSegmentRefusesUnsafeNames: verify --read-data reads whole segments with ReadSegment; a tar
// entry name FORMAT.md says never occurs (absolute, "..", empty or "." elements, backslash, NUL) is
// an integrity error, and fn never sees it.
func TestReadSegmentRefusesUnsafeNames(t *testing.T) {
	id, recs := newKey(t)
	ctx := context.Background()
	good := forgeSegment(t, recs, "d1/db/tables/a.sql", "r2/b/img/x.png")
	st, seg := putSegment(t, good)
	var seen []string
	if err := ReadSegment(ctx, st, seg, []age.Identity{id}, func(name string, r io.Reader) error {
		seen = append(seen, name)
		_, err := io.Copy(io.Discard, r)
		return err
	}); err != nil || len(seen) != 2 {
		t.Fatalf("good segment: %v, saw %q", err, seen)
	}
	for _, bad := range []string{"../evil", "/etc/cron.d/x", "d1/../../x", "r2/b/..", "a//b", "./a", "a/./b", "a\\..\\b", "."} { // NUL: Go's tar cannot encode or decode one in a name
		st, seg := putSegment(t, forgeSegment(t, recs, "d1/db/ok.sql", bad))
		var names []string
		err := ReadSegment(ctx, st, seg, []age.Identity{id}, func(name string, r io.Reader) error {
			names = append(names, name)
			_, err := io.Copy(io.Discard, r)
			return err
		})
		if !errors.Is(err, ErrIntegrity) {
			t.Errorf("%q: err = %v, want ErrIntegrity", bad, err)
		}
		for _, n := range names {
			if n != "d1/db/ok.sql" {
				t.Errorf("%q: fn saw %q", bad, n)
			}
		}
	}
}

// TestOpenItemRefusesUnsafeName: a forged catalogue naming an item "../x" (matching a forged tar
// header), or with a NUL, backslash or empty element, is refused before anything is read.
func TestOpenItemRefusesUnsafeName(t *testing.T) {
	id, recs := newKey(t)
	data := forgeSegment(t, recs, "../x")
	st, seg := putSegment(t, data)
	for _, name := range []string{"../x", "/x", "a\x00b", "a\\b", "a//b", ""} {
		ref := ItemRef{Name: name, Size: 4, SHA256: sum([]byte("data")), Chunks: []Chunk{{Segment: seg.ID, Offset: 0, Length: int64(len(data)), Size: 4}}}
		_, err := OpenItem(context.Background(), st, map[string]SegmentInfo{seg.ID: seg}, []age.Identity{id}, ref)
		if !errors.Is(err, ErrIntegrity) {
			t.Errorf("%q: err = %v, want ErrIntegrity", name, err)
		}
	}
}

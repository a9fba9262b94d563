package archive

import (
	"bytes"
	"context"
	"errors"
	"io"
	"testing"

	"github.com/pierrec/lz4/v4"

	"filippo.io/age"

	"github.com/cfbackup/cfbackup/pkg/store/mem"
)

// ReadAll gives each item's bytes with one Buffers reused across items of growing and shrinking
// sizes (one and several chunks, empty, incompressible), and refuses to follow a Read.
func TestReadAllReusesBuffers(t *testing.T) {
	id, recs := newKey(t)
	st := mem.New()
	items := []item{{"big", sqlText(300_000, 1)}, {"empty", nil}, {"rand", randomBytes(150_000, 2)}, {"small", []byte("x")}, {"mid", sqlText(70_000, 3)}}
	refs, segs := writeAll(t, st, recs, WriterOptions{ChunkSize: 64 << 10}, items)
	op := NewOpener(st, segMap(segs), []age.Identity{id})
	var b Buffers
	for round := 0; round < 2; round++ {
		for i, ref := range refs {
			rc, err := op.Open(context.Background(), ref)
			if err != nil {
				t.Fatal(err)
			}
			got, err := rc.(WholeReader).ReadAll(&b)
			if err != nil || !bytes.Equal(got, items[i].data) {
				t.Fatalf("%s: %v, %d bytes, want %d", ref.Name, err, len(got), len(items[i].data))
			}
			if n, err := rc.Read(make([]byte, 10)); n != 0 || err != io.EOF {
				t.Fatalf("%s: Read after ReadAll: %d, %v; want EOF", ref.Name, n, err)
			}
			rc.Close()
		}
	}
	rc, _ := op.Open(context.Background(), refs[0])
	defer rc.Close()
	if _, err := rc.Read(make([]byte, 10)); err != nil {
		t.Fatal(err)
	}
	if _, err := rc.(WholeReader).ReadAll(&b); err == nil {
		t.Fatal("ReadAll after Read: no error")
	}
}

// decodeFrame decodes frames written by frameWriter and by lz4.Writer (checksums, content size), and
// refuses a frame cut short, with bytes after its end mark, with an oversized block, or decoding to
// more than the room given.
func TestDecodeFrame(t *testing.T) {
	fw := &frameWriter{}
	dst := make([]byte, 10<<20)
	for name, data := range map[string][]byte{"empty": nil, "text": sqlText(3000, 1), "random": randomBytes(200<<10, 2),
		"multi-block": append(sqlText(5<<20, 3), randomBytes(4<<20+123, 4)...)} {
		n, err := decodeFrame(fw.frame(nil, data), dst)
		if err != nil || !bytes.Equal(dst[:n], data) {
			t.Fatalf("%s: %v, %d bytes", name, err, n)
		}
	}
	var zb bytes.Buffer
	zw := lz4.NewWriter(&zb)
	_ = zw.Apply(lz4.ChecksumOption(true), lz4.BlockChecksumOption(true), lz4.SizeOption(3000))
	data := sqlText(3000, 6)
	_, _ = zw.Write(data)
	_ = zw.Close()
	if n, err := decodeFrame(zb.Bytes(), dst); err != nil || !bytes.Equal(dst[:n], data) {
		t.Fatalf("foreign frame: %v, %d bytes", err, n)
	}
	if _, err := decodeFrame(zb.Bytes(), dst[:100]); err == nil {
		t.Fatal("foreign frame larger than the room: no error")
	}
	frame := fw.frame(nil, append(sqlText(5<<20, 3), randomBytes(100, 4)...))
	bad := bytes.Clone(frame)
	bad[len(frameHeader)+3] |= 0x40 // first block size beyond 4 MiB
	for name, f := range map[string][]byte{"no end mark": frame[:len(frame)-4], "half": frame[:len(frame)/2],
		"trailing bytes": append(bytes.Clone(frame), 1, 2, 3), "oversized block": bad} {
		if _, err := decodeFrame(f, dst); err == nil {
			t.Fatalf("%s: no error", name)
		}
	}
	if _, err := decodeFrame(frame, dst[:1<<20]); err == nil || errors.Is(err, io.EOF) {
		t.Fatalf("frame larger than the room: %v", err)
	}
}

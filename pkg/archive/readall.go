package archive

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"

	"github.com/pierrec/lz4/v4"
)

// Buffers are the reusable memory of WholeReader.ReadAll: one per worker, so restoring many objects
// allocates nothing per object once the buffers fit the largest one.
type Buffers struct {
	frame []byte // one chunk's LZ4 frame (compressed plaintext)
	data  []byte // the item, decoded in place
}

// Trim drops buffers larger than max bytes, so that a few large items do not pin their memory in
// every worker for the rest of a run: live memory, not garbage, is what makes Go's GC run back to
// back near a soft memory limit (GOMEMLIMIT), and restores set one.
func (b *Buffers) Trim(max int) {
	if cap(b.frame) > max {
		b.frame = nil
	}
	if cap(b.data) > max {
		b.data = nil
	}
}

// WholeSize is the data buffer ReadAll needs for an item of size bytes (the item and a chunk's tar
// header and padding around it), for callers that lend it one (SetData).
func WholeSize(size int64) int { return int(size) + 2*tarSlack }

// SetData lends d as the data buffer (ReadAll uses it when its capacity is at least WholeSize of the
// item), so a caller can keep decoded buffers in a pool of its own; TakeData takes the data buffer
// back out (nil when there is none).
func (b *Buffers) SetData(d []byte) { b.data = d }

// TakeData returns the data buffer and leaves b without one.
func (b *Buffers) TakeData() []byte {
	d := b.data
	b.data = nil
	return d
}

// WholeReader is implemented by the readers OpenItem and Opener.Open return. ReadAll is for callers
// that need a whole item in memory anyway (an object PUT with a checksum header): it reads each chunk's
// frame with one ranged read, decodes its LZ4 blocks straight into b's data buffer and checks the item's
// size and SHA-256, where streaming through Read passes every byte through an LZ4 reader's 4 MiB block
// buffers and a tar reader, with an age chunk allocated per small read (the restore's largest costs
// after hashing: copies, zeroing, GC). The returned bytes are b's until b's next use. ReadAll must be
// the reader's first call; it applies the same checks as Read, and errors match the same sentinels.
type WholeReader interface {
	ReadAll(b *Buffers) ([]byte, error)
}

// tarSlack bounds what a chunk's frame holds besides the chunk's bytes: the tar header (with PAX
// records for a long name), padding to 512 bytes and the end-of-archive blocks.
const tarSlack = 16 << 10

func (it *itemReader) ReadAll(b *Buffers) ([]byte, error) {
	if it.err != nil {
		return nil, it.err
	}
	if it.next != 0 || it.cur != nil || it.n != 0 {
		return nil, errors.New("archive: ReadAll after Read")
	}
	data, err := it.readAll(b)
	if err != nil {
		it.err = err
		return nil, err
	}
	it.err = io.EOF
	return data, nil
}

func (it *itemReader) readAll(b *Buffers) ([]byte, error) {
	size := int(it.ref.Size)
	if need := size + 2*tarSlack; cap(b.data) < need {
		b.data = make([]byte, need)
	}
	data := b.data[:cap(b.data)]
	start, pos := -1, 0 // the item's bytes are data[start:pos] so far
	for ; ; it.next++ {
		if err := it.fill(); err != nil {
			return nil, err
		}
		if it.next == len(it.ref.Chunks) {
			break
		}
		c := it.ref.Chunks[it.next]
		it.chunk = c
		frame, err := it.readFrame(b, c)
		if err != nil {
			return nil, err
		}
		at := max(pos, 0)
		hl, err := it.decodeChunk(frame, data[at:], c)
		if err != nil {
			return nil, err
		}
		if start < 0 {
			start, pos = hl, hl // the first chunk stays where it was decoded
		} else {
			copy(data[pos:], data[at+hl:at+hl+int(c.Size)])
		}
		pos += int(c.Size)
	}
	out := data[start:pos]
	sum := sha256.Sum256(out)
	if len(out) != size || hex.EncodeToString(sum[:]) != it.ref.SHA256 {
		return nil, fmt.Errorf("%w: item %q (segment %s): read %d bytes sha256 %x, recorded %d bytes sha256 %s",
			ErrIntegrity, it.ref.Name, it.chunk.Segment, len(out), sum, it.ref.Size, it.ref.SHA256)
	}
	return out, nil
}

// readFrame reads chunk c's LZ4 frame with one ranged read into b's frame buffer.
func (it *itemReader) readFrame(b *Buffers, c Chunk) ([]byte, error) {
	if err := it.openSeg(c); err != nil {
		return nil, err
	}
	if cap(b.frame) < int(c.Length) {
		b.frame = make([]byte, c.Length)
	}
	frame := b.frame[:c.Length]
	it.seg.src.expect(it.seg.hdr, c.Offset, it.runEnd(it.next))
	if n, err := it.seg.plain.ReadAt(frame, c.Offset); n < len(frame) {
		if err == nil || err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, classify(err, it.where(), it.seg.src)
	}
	return frame, nil
}

// decodeChunk decodes frame (chunk it.next, c) into dst and checks its tar entry: the name and size
// the catalogue records, a regular file, and all its bytes in the frame. The chunk's bytes are
// dst[hl:hl+c.Size].
func (it *itemReader) decodeChunk(frame, dst []byte, c Chunk) (hl int, err error) {
	m, err := decodeFrame(frame, dst)
	if err != nil {
		return 0, classify(err, it.where()+": lz4 frame", it.seg.src)
	}
	want := ChunkEntry(it.ref.Name, c, it.next, len(it.ref.Chunks))
	if ustarIs(dst[:m], want, c.Size) {
		hl = tarBlock
	} else {
		br := bytes.NewReader(dst[:m])
		h, err := tar.NewReader(br).Next()
		if err != nil {
			return 0, classify(err, it.where()+": tar header", it.seg.src)
		}
		if h.Name != want || h.Size != c.Size || (h.Typeflag != tar.TypeReg && h.Typeflag != tar.TypeRegA) {
			return 0, fmt.Errorf("%w: %s: found entry %q (%d bytes), want %q (%d bytes)", ErrIntegrity, it.where(), h.Name, h.Size, want, c.Size)
		}
		hl = m - br.Len()
	}
	if int64(m-hl) < c.Size {
		return 0, fmt.Errorf("%w: %s: frame holds %d bytes of a %d-byte entry", ErrIntegrity, it.where(), m-hl, c.Size)
	}
	return hl, nil
}

// decodeFrame decodes the LZ4 frame that is exactly frame into dst and returns the decoded length.
// Frames this package writes (frameHeader) are decoded block by block with no buffer of their own;
// any other frame goes through pierrec/lz4's reader. A frame that does not fit dst, has bytes after
// its end mark or is cut short is an error.
func decodeFrame(frame, dst []byte) (int, error) {
	if !bytes.HasPrefix(frame, frameHeader) {
		zr := lz4.NewReader(bytes.NewReader(frame))
		_ = zr.Apply(lz4.ConcurrencyOption(1))
		n, err := io.ReadFull(zr, dst)
		switch {
		case err == io.ErrUnexpectedEOF || err == io.EOF:
			return n, nil
		case err != nil:
			return n, err
		}
		if k, _ := zr.Read(make([]byte, 1)); k != 0 {
			return n, errors.New("frame decodes to more than its entry")
		}
		return n, nil
	}
	p, n := len(frameHeader), 0
	for {
		if len(frame)-p < 4 {
			return n, io.ErrUnexpectedEOF
		}
		bs := binary.LittleEndian.Uint32(frame[p:])
		p += 4
		if bs == 0 {
			if p != len(frame) {
				return n, fmt.Errorf("%d bytes after the frame's end mark", len(frame)-p)
			}
			return n, nil
		}
		l := int(bs &^ uncompBit)
		if l > maxBlock || l > len(frame)-p {
			return n, fmt.Errorf("block of %d bytes at %d: beyond the frame or the 4 MiB block maximum", l, p)
		}
		blk := frame[p : p+l]
		p += l
		if bs&uncompBit != 0 {
			if len(dst)-n < l {
				return n, errors.New("frame decodes to more than its entry")
			}
			n += copy(dst[n:], blk)
			continue
		}
		k, err := lz4.UncompressBlock(blk, dst[n:min(len(dst), n+maxBlock)])
		if err != nil {
			return n, fmt.Errorf("block at %d: %w (or the frame decodes to more than its entry)", p-l, err)
		}
		n += k
	}
}

const tarBlock = 512

// ustarIs reports whether b starts with the USTAR header archive/tar's Writer makes for a regular
// file named name of size bytes (a name under 100 bytes, no prefix, octal size and checksum): the
// common case decodeChunk then checks without archive/tar, which parsed every header field and cost
// a third of reading small chunks. Name, size, type and checksum are checked as archive/tar checks
// them; fields cfbackup never reads (mode, owner, times) are not parsed. Anything else, a forgery
// included, goes to archive/tar and its checks: false only takes the slower path.
func ustarIs(b []byte, name string, size int64) bool {
	if len(b) < tarBlock || len(name) >= 100 || size < 0 || size >= 1<<33 {
		return false
	}
	h := b[:tarBlock]
	if string(h[:len(name)]) != name || !allZero(h[len(name):100]) || h[156] != '0' ||
		string(h[257:265]) != "ustar\x0000" || !allZero(h[345:500]) {
		return false
	}
	sz, ok := octal(h[124:135])
	if !ok || h[135] != 0 || sz != size {
		return false
	}
	sum, ok := octal(h[148:154])
	if !ok || h[154] != 0 || h[155] != ' ' {
		return false
	}
	var got int64
	for i, x := range h {
		if i >= 148 && i < 156 {
			x = ' '
		}
		got += int64(x)
	}
	return got == sum
}

// octal parses b, octal digits only.
func octal(b []byte) (int64, bool) {
	var v int64
	for _, x := range b {
		if x < '0' || x > '7' {
			return 0, false
		}
		v = v<<3 | int64(x-'0')
	}
	return v, true
}

func allZero(b []byte) bool {
	for _, x := range b {
		if x != 0 {
			return false
		}
	}
	return true
}

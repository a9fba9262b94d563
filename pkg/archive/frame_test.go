package archive

import (
	"bytes"
	"encoding/binary"
	"io"
	"math/rand"
	"os/exec"
	"slices"
	"testing"

	"github.com/pierrec/lz4/v4"
)

// Frames built by frameWriter decode with pierrec/lz4 and the lz4 CLI, across block boundaries that
// straddle pieces, with compressible and incompressible blocks.
func TestFrameWriterInterop(t *testing.T) {
	hdr := bytes.Repeat([]byte("h"), 600)
	data := append(sqlText(5<<20, 1), randomBytes(4<<20+123, 2)...)
	pad := make([]byte, 333)
	want := bytes.Join([][]byte{hdr, data, pad}, nil)
	fw := &frameWriter{}
	for _, pieces := range [][][]byte{{hdr, data, pad}, {want}, {nil, hdr, nil, data, pad}, {}} {
		frame := fw.frame(nil, pieces...)
		exp := bytes.Join(pieces, nil)
		got, err := io.ReadAll(lz4.NewReader(bytes.NewReader(frame)))
		if err != nil || !bytes.Equal(got, exp) {
			t.Fatalf("pierrec decode: %v (%d vs %d bytes)", err, len(got), len(exp))
		}
		if len(frame) > frameBound(len(exp)) {
			t.Fatalf("frame %d bytes exceeds bound %d", len(frame), frameBound(len(exp)))
		}
		if _, err := exec.LookPath("lz4"); err == nil {
			cmd := exec.Command("lz4", "-dc")
			cmd.Stdin = bytes.NewReader(frame)
			out, err := cmd.Output()
			if err != nil || !bytes.Equal(out, exp) {
				t.Fatalf("lz4 -dc: %v", err)
			}
		}
	}
	// Incompressible data is stored, not expanded: overhead is only framing (two 4-byte block sizes).
	rnd := randomBytes(6<<20, 3)
	if f, want := fw.frame(nil, rnd), len(frameHeader)+len(rnd)+2*4+endMark; len(f) != want {
		t.Fatalf("random data frame %d bytes, want %d", len(f), want)
	}
	// Text compresses.
	txt := sqlText(6<<20, 4)
	if f := fw.frame(nil, txt); len(f) > len(txt)/2 {
		t.Fatalf("text frame %d bytes for %d", len(f), len(txt))
	}
}

// A large piece is compressed or stored from where it is: blocks end where it starts and ends, the
// small pieces around it (a tar header, padding) are blocks of their own, and nothing large is
// copied into the scratch buffer. Small pieces are still joined into one block.
func TestFrameBlocksFollowLargePieces(t *testing.T) {
	hdr, pad := bytes.Repeat([]byte("h"), 512), make([]byte, 300)
	for _, data := range [][]byte{sqlText(9<<20+123, 5), randomBytes(5<<20, 6), randomBytes(splitMin, 7)} {
		fw := &frameWriter{}
		frame := fw.frame(nil, hdr, data, pad)
		var want []int // decoded block sizes
		want = append(want, len(hdr))
		for left := len(data); left > 0; left -= min(left, maxBlock) {
			want = append(want, min(left, maxBlock))
		}
		want = append(want, len(pad))
		if got := blockSizes(t, frame); !slices.Equal(got, want) {
			t.Fatalf("%d-byte piece: blocks %v, want %v", len(data), got, want)
		}
		if cap(fw.scratch) >= splitMin {
			t.Fatalf("%d-byte piece: scratch grew to %d bytes", len(data), cap(fw.scratch))
		}
		if len(frame) > frameBound(len(hdr)+len(data)+len(pad)) {
			t.Fatalf("frame %d bytes over its bound %d", len(frame), frameBound(len(hdr)+len(data)+len(pad)))
		}
	}
	// Pieces under splitMin make one block, as one contiguous piece would.
	fw := &frameWriter{}
	small := sqlText(splitMin-1, 8)
	if got := blockSizes(t, fw.frame(nil, hdr, small, pad)); !slices.Equal(got, []int{len(hdr) + len(small) + len(pad)}) {
		t.Fatalf("small pieces: blocks %v, want one", got)
	}
}

// blockSizes decodes frame block by block and returns each block's decoded size.
func blockSizes(t *testing.T, frame []byte) []int {
	t.Helper()
	var sizes []int
	p := len(frameHeader)
	for {
		bs := binary.LittleEndian.Uint32(frame[p:])
		p += 4
		if bs == 0 {
			return sizes
		}
		l := int(bs &^ uncompBit)
		if bs&uncompBit != 0 {
			sizes = append(sizes, l)
		} else {
			dst := make([]byte, maxBlock)
			k, err := lz4.UncompressBlock(frame[p:p+l], dst)
			if err != nil {
				t.Fatal(err)
			}
			sizes = append(sizes, k)
		}
		p += l
	}
}

// Random piece layouts (seeded, reproducible): sizes around splitMin and the 4 MiB block, empty
// pieces, text and random bytes. Every frame decodes to the pieces joined (with this package's
// decoder and with pierrec/lz4's), stays within its bound, and uses no block over 4 MiB.
func TestFrameRandomPieces(t *testing.T) {
	rng := rand.New(rand.NewSource(20261205))
	sizes := []int{0, 1, 511, 512, splitMin - 1, splitMin, splitMin + 1, maxBlock - 1, maxBlock, maxBlock + 1}
	fw := &frameWriter{}
	var out []byte
	for round := 0; round < 30; round++ {
		k := 1 + rng.Intn(5)
		pieces := make([][]byte, k)
		large := 0
		for i := range pieces {
			n := sizes[rng.Intn(len(sizes))]
			if rng.Intn(3) == 0 {
				n = rng.Intn(3 * splitMin)
			}
			if rng.Intn(2) == 0 {
				pieces[i] = sqlText(n, rng.Int63())
			} else {
				pieces[i] = randomBytes(n, rng.Int63())
			}
			if n >= splitMin {
				large++
			}
		}
		want := bytes.Join(pieces, nil)
		out = fw.frame(out, pieces...)
		if len(out) > piecesBound(len(want), large) {
			t.Fatalf("round %d: frame %d bytes over its bound %d", round, len(out), piecesBound(len(want), large))
		}
		dst := make([]byte, len(want)+1)
		n, err := decodeFrame(out, dst)
		if err != nil || n != len(want) || !bytes.Equal(dst[:n], want) {
			t.Fatalf("round %d (pieces %v): decodeFrame %d bytes, %v", round, pieceLens(pieces), n, err)
		}
		got, err := io.ReadAll(lz4.NewReader(bytes.NewReader(out)))
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("round %d (pieces %v): pierrec decode: %v", round, pieceLens(pieces), err)
		}
	}
}

func pieceLens(pieces [][]byte) []int {
	var l []int
	for _, p := range pieces {
		l = append(l, len(p))
	}
	return l
}

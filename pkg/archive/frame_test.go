package archive

import (
	"bytes"
	"io"
	"os/exec"
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
	// Incompressible data is stored, not expanded: overhead is only framing.
	rnd := randomBytes(6<<20, 3)
	if f := fw.frame(nil, rnd); len(f) != frameBound(len(rnd)) {
		t.Fatalf("random data frame %d bytes, want %d", len(f), frameBound(len(rnd)))
	}
	// Text compresses.
	txt := sqlText(6<<20, 4)
	if f := fw.frame(nil, txt); len(f) > len(txt)/2 {
		t.Fatalf("text frame %d bytes for %d", len(f), len(txt))
	}
}

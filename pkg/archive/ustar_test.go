package archive

import (
	"archive/tar"
	"bytes"
	"testing"
	"time"
)

// ustarIs accepts the headers the writer makes (compressJob), and whatever one byte of such a
// header is changed to, it never accepts one archive/tar refuses or reads with another name, size
// or type.
func TestUstarIsAgreesWithArchiveTar(t *testing.T) {
	for _, c := range []struct {
		name string
		size int64
	}{{ChunkPrefix + "0123456789abcdef0123456789abcdef", 4096}, {"t/a.sql.part000001", 0}, {ChunkPrefix + "ffffffffffffffffffffffffffffffff", 16 << 10}} {
		var hb bytes.Buffer
		tw := tar.NewWriter(&hb)
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: c.name, Mode: 0o600, Size: c.size, ModTime: time.Unix(1764800000, 0)}); err != nil {
			t.Fatal(err)
		}
		h := append(hb.Bytes(), make([]byte, 1024)...)
		if !ustarIs(h, c.name, c.size) {
			t.Fatalf("%s: the writer's header is not recognised", c.name)
		}
		if ustarIs(h, c.name, c.size+1) || ustarIs(h, c.name+"x", c.size) || ustarIs(h[:511], c.name, c.size) {
			t.Fatalf("%s: accepted with another size or name, or cut short", c.name)
		}
		accepted := 0
		for i := range tarBlock {
			for _, v := range []byte{0, ' ', '0', '7', 'x', 0xff, h[i] + 1} {
				m := bytes.Clone(h)
				m[i] = v
				if !ustarIs(m, c.name, c.size) {
					continue
				}
				accepted++
				th, err := tar.NewReader(bytes.NewReader(m)).Next()
				if err != nil || th.Name != c.name || th.Size != c.size || th.Typeflag != tar.TypeReg {
					t.Fatalf("%s: byte %d set to %#x: accepted, archive/tar reads %+v, %v", c.name, i, v, th, err)
				}
			}
		}
		if accepted == 0 {
			t.Fatal("no changed header accepted: the test checks nothing")
		}
	}
}

package sqldump

import (
	"fmt"
	"io"
	"runtime"
	"testing"
)

// genDump produces an endless-looking D1 dump of n rows without holding it in memory.
type genDump struct {
	n, i int
	buf  []byte
}

func (g *genDump) Read(p []byte) (int, error) {
	for len(g.buf) == 0 {
		if g.i > g.n {
			return 0, io.EOF
		}
		if g.i == 0 {
			g.buf = []byte("PRAGMA defer_foreign_keys=TRUE;\nCREATE TABLE big(id INTEGER PRIMARY KEY, s TEXT);")
		} else {
			g.buf = fmt.Appendf(nil, "\nINSERT INTO \"big\" (\"id\",\"s\") VALUES(%d,'%0400d');", g.i, g.i)
		}
		g.i++
	}
	n := copy(p, g.buf)
	g.buf = g.buf[n:]
	return n, nil
}

// TestSplitMemoryBounded streams ~200 MB through Split and checks the heap never holds more than a
// small multiple of one read chunk.
func TestSplitMemoryBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("streams 200 MB")
	}
	var peak uint64
	var ms runtime.MemStats
	var total int64
	reads := 0
	err := Split(&genDump{n: 500_000}, SplitOptions{}, func(p *Part, r io.Reader) error {
		buf := make([]byte, 32<<10)
		for {
			n, err := r.Read(buf)
			total += int64(n)
			if reads++; reads%2000 == 0 {
				runtime.ReadMemStats(&ms)
				peak = max(peak, ms.HeapAlloc)
			}
			if err == io.EOF {
				return nil
			}
			if err != nil {
				return err
			}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if total < 200<<20 {
		t.Fatalf("only %d bytes streamed", total)
	}
	if peak > 48<<20 {
		t.Errorf("heap peaked at %d MiB while streaming %d MiB", peak>>20, total>>20)
	}
	t.Logf("streamed %d MiB, heap peak %d MiB", total>>20, peak>>20)
}

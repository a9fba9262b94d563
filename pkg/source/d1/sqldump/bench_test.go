package sqldump

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"path/filepath"
	"sync"
	"testing"
)

var (
	benchOnce sync.Once
	benchDump []byte
)

// benchInput is 64 MiB of D1-style dump: a few tables of typical INSERT rows (ints, quoted text
// with escapes, BLOBs, REALs, NULLs).
func benchInput() []byte {
	benchOnce.Do(func() {
		var b bytes.Buffer
		b.WriteString("PRAGMA defer_foreign_keys=TRUE;")
		for i := 0; b.Len() < 64<<20; i++ {
			if i%100000 == 0 {
				fmt.Fprintf(&b, "\nCREATE TABLE t%d(id INTEGER PRIMARY KEY, name TEXT, data BLOB, v REAL, n);", i/100000)
			}
			fmt.Fprintf(&b, "\nINSERT INTO \"t%d\" (\"id\",\"name\",\"data\",\"v\",\"n\") VALUES(%d,'customer ''%d''; with -- text /* x */',X'%x',%g,NULL);",
				i/100000, i, i, []byte(fmt.Sprintf("blob-%d", i)), float64(i)*1.25)
		}
		benchDump = b.Bytes()
	})
	return benchDump
}

func BenchmarkScanner(b *testing.B) {
	in := benchInput()
	b.SetBytes(int64(len(in)))
	b.ReportAllocs()
	for b.Loop() {
		sc := NewScanner(bytes.NewReader(in), 0)
		for {
			if _, err := sc.Next(); err == io.EOF {
				break
			} else if err != nil {
				b.Fatal(err)
			}
		}
	}
}

func BenchmarkSplit(b *testing.B) {
	in := benchInput()
	b.SetBytes(int64(len(in)))
	b.ReportAllocs()
	for b.Loop() {
		err := Split(bytes.NewReader(in), SplitOptions{}, func(p *Part, r io.Reader) error {
			_, err := io.Copy(io.Discard, r)
			return err
		})
		if err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkLoad measures restore speed into a local modernc SQLite file (16 MiB of INSERTs).
func BenchmarkLoad(b *testing.B) {
	for _, mode := range []string{"text", "bound"} {
		b.Run(mode, func(b *testing.B) {
			noInsertCache = mode == "text"
			defer func() { noInsertCache = false }()
			benchLoad(b)
		})
	}
}

func benchLoad(b *testing.B) {
	in := benchInput()
	cut := bytes.IndexByte(in[16<<20:], '\n') + 16<<20
	in = in[:cut]
	b.SetBytes(int64(len(in)))
	for b.Loop() {
		b.StopTimer()
		_, conn := openDB(b, filepath.Join(b.TempDir(), "bench.db"))
		b.StartTimer()
		if _, err := Load(context.Background(), conn, bytes.NewReader(in), LoadOptions{}); err != nil {
			b.Fatal(err)
		}
	}
}

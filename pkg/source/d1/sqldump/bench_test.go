package sqldump

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os/exec"
	"path/filepath"
	"strings"
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
// BenchmarkLoad compares Load with literal INSERTs compiled as text, with them bound to cached
// prepared statements (fastinsert.go), and the sqlite3 CLI loading the same SQL into a new file
// (the yardstick of scripts/bench-d1.sh).
func BenchmarkLoad(b *testing.B) {
	b.Run("sqlite3", func(b *testing.B) {
		if _, err := exec.LookPath("sqlite3"); err != nil {
			b.Skip("no sqlite3 CLI")
		}
		in := benchInput()
		in = in[:bytes.IndexByte(in[16<<20:], '\n')+16<<20]
		b.SetBytes(int64(len(in)))
		for b.Loop() {
			cmd := exec.Command("sqlite3", filepath.Join(b.TempDir(), "bench.db"))
			// as sqlite3 .dump writes it: one transaction
			cmd.Stdin = io.MultiReader(strings.NewReader("BEGIN TRANSACTION;\n"), bytes.NewReader(in), strings.NewReader("\nCOMMIT;\n"))
			if out, err := cmd.CombinedOutput(); err != nil {
				b.Fatalf("%v: %s", err, out)
			}
		}
	})
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

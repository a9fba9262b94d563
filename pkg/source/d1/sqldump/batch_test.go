package sqldump

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
)

// TestInsertBatchExact loads rows of one table shape (so they are bound in batches of batchRows)
// as text, bound row by row and bound in batches, and requires the same stored values (storage
// class, REAL bits, TEXT and BLOB bytes) and rowids every way.
func TestInsertBatchExact(t *testing.T) {
	lits := literalCorpus()
	var dump bytes.Buffer
	dump.WriteString("CREATE TABLE t(n INTEGER, i INT, r REAL, x TEXT, b BLOB, num NUMERIC, a ANY, none);\n")
	for _, l := range lits {
		fmt.Fprintf(&dump, "INSERT INTO \"t\" (\"n\",\"i\",\"r\",\"x\",\"b\",\"num\",\"a\",\"none\") VALUES(%s,%s,%s,%s,%s,%s,%s,%s);\n", l, l, l, l, l, l, l, l)
	}
	load := func(text, rowByRow bool) ([][]any, LoadStats) {
		noInsertCache, noBatch = text, rowByRow
		defer func() { noInsertCache, noBatch = false, false }()
		_, conn := openDB(t, filepath.Join(t.TempDir(), "t.db"))
		st, err := Load(context.Background(), conn, bytes.NewReader(dump.Bytes()), LoadOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return readAll(t, conn), st
	}
	want, _ := load(true, false)
	single, _ := load(false, true)
	got, st := load(false, false)
	if st.Rows != int64(len(lits)) || st.Bound < st.Rows*8/10 || st.Bound == st.Rows {
		t.Fatalf("stats %+v: the corpus must exercise both paths", st)
	}
	for name, rows := range map[string][][]any{"batched": got, "row by row": single} {
		if len(rows) != len(want) {
			t.Fatalf("%s: %d rows, want %d", name, len(rows), len(want))
		}
		for i := range want {
			for j := range want[i] {
				if !sameValue(rows[i][j], want[i][j]) {
					t.Errorf("%s: literal %.40q column %d: %T %#v, text %T %#v", name, lits[i], j, rows[i][j], rows[i][j], want[i][j], want[i][j])
				}
			}
		}
	}
}

// TestInsertBatchErrorNamesStatement: a constraint failing inside a batch names that row's own
// statement, and the failed load leaves nothing behind.
func TestInsertBatchErrorNamesStatement(t *testing.T) {
	for _, tc := range []struct{ name, create, bad string }{
		{"unique", "CREATE TABLE a(id INTEGER PRIMARY KEY, v TEXT UNIQUE);", "INSERT INTO a VALUES(45,'v3');"},
		{"not null", "CREATE TABLE a(id INTEGER PRIMARY KEY, v TEXT NOT NULL);", "INSERT INTO a VALUES(45,NULL);"},
		{"check", "CREATE TABLE a(id INTEGER PRIMARY KEY, v TEXT CHECK (v <> 'bad'));", "INSERT INTO a VALUES(45,'bad');"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var b strings.Builder
			b.WriteString(tc.create + "\n")
			for i := range 40 { // statements 2…41, then the bad row is statement 42, inside the second batch
				fmt.Fprintf(&b, "INSERT INTO a VALUES(%d,'v%d');\n", i, i)
			}
			b.WriteString(tc.bad + "\nINSERT INTO a VALUES(46,'v46');\n")
			_, conn := openDB(t, filepath.Join(t.TempDir(), "x.db"))
			_, err := Load(context.Background(), conn, strings.NewReader(b.String()), LoadOptions{})
			if err == nil || !strings.Contains(err.Error(), "statement 42 ("+tc.bad[:20]) {
				t.Fatalf("got %v", err)
			}
			if tabs := userTables(t, conn); len(tabs) != 0 {
				t.Errorf("failed load left tables %q", tabs)
			}
		})
	}
}

// TestInsertBatchRefusedNamesStatement: an INSERT the guards refuse is named by its statement even
// when rows of its shape are batched.
func TestInsertBatchRefusedNamesStatement(t *testing.T) {
	var b strings.Builder
	b.WriteString("CREATE TABLE a(x);\nINSERT INTO a VALUES(1);\n")
	for range 5 {
		b.WriteString("INSERT INTO sqlite_dbpage VALUES(1,X'00');\n")
	}
	_, conn := openDB(t, filepath.Join(t.TempDir(), "x.db"))
	_, err := Load(context.Background(), conn, strings.NewReader(b.String()), LoadOptions{})
	if !errors.Is(err, ErrNotAllowed) || !strings.Contains(err.Error(), "statement 3 (INSERT INTO sqlite_dbpage") || !strings.Contains(err.Error(), "sqlite_dbpage") {
		t.Fatalf("got %v", err)
	}
}

// TestOpenFileMapsPages: a restore target reads its pages through a memory map (mmapSize), which
// SQLite silently caps (at 0 where it was built without mmap).
func TestOpenFileMapsPages(t *testing.T) {
	db, err := OpenFile(filepath.Join(t.TempDir(), "m.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var n int64
	if err := db.QueryRow("PRAGMA mmap_size").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != mmapSize {
		t.Fatalf("mmap_size %d, want %d", n, mmapSize)
	}
}

package cftest

import (
	"bytes"
	"context"
	"database/sql"
	"path/filepath"
	"testing"
)

// An empty BLOB must stay a BLOB (X”), not turn into NULL.
func TestDumpEmptyBlob(t *testing.T) {
	db, err := sql.Open("sqlite", filepath.Join(t.TempDir(), "b.sqlite"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(`CREATE TABLE b(x); INSERT INTO b VALUES(x''), (NULL), ('')`); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := dumpSQL(context.Background(), db, DumpOptions{}, &buf); err != nil {
		t.Fatal(err)
	}
	want := "PRAGMA defer_foreign_keys=TRUE;\nCREATE TABLE b(x);\nINSERT INTO \"b\" (\"x\") VALUES(X'');\nINSERT INTO \"b\" (\"x\") VALUES(NULL);\nINSERT INTO \"b\" (\"x\") VALUES('');"
	if buf.String() != want {
		t.Fatalf("got:\n%s", buf.String())
	}
}

package d1

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
)

// checkExact backs up the database made by script, restores it to a file, into a new D1 database
// and in place, and fails on any difference in schema, value or storage class.
func checkExact(t *testing.T, name, script string) (log string) {
	t.Helper()
	e := startEmu(t)
	src := e.addSQL(t, name, script)
	ws, wr := snapshotDB(t, e.srv.DatabasePath(src.UUID))
	cat, m, log := e.backup(t, src)
	paths, errs := e.restoreAll(t, src, cat, m)
	for i, how := range []string{"to file", "to new database", "in place"} {
		if errs[i] != nil {
			t.Errorf("restore %s: %v", how, errs[i])
			continue
		}
		gs, gr := snapshotDB(t, paths[i])
		if d := diffDB(ws, wr, gs, gr); len(d) > 0 {
			t.Errorf("restore %s differs:\n  %s", how, strings.Join(d, "\n  "))
		}
	}
	return log
}

func TestRestoreForeignKeyCycleIntoD1(t *testing.T) {
	checkExact(t, "cycle", `
CREATE TABLE cyc_b (id INTEGER PRIMARY KEY, a_id INTEGER REFERENCES cyc_a(id) DEFERRABLE INITIALLY DEFERRED);
CREATE TABLE cyc_a (id INTEGER PRIMARY KEY, b_id INTEGER REFERENCES cyc_b(id) DEFERRABLE INITIALLY DEFERRED);
INSERT INTO cyc_b VALUES (1, 1), (2, NULL);
INSERT INTO cyc_a VALUES (1, 1), (2, 2);
CREATE TABLE selfref (id INTEGER PRIMARY KEY, parent INTEGER REFERENCES selfref(id));
INSERT INTO selfref VALUES (2, 1), (1, NULL), (3, 2);
`)
}

func TestRestoreReferencesAreCaseInsensitive(t *testing.T) {
	checkExact(t, "casefk", `
CREATE TABLE lines (id INTEGER PRIMARY KEY, order_id INTEGER NOT NULL REFERENCES orders(id));
CREATE TABLE Orders (id INTEGER PRIMARY KEY, note TEXT);
INSERT INTO Orders VALUES (1, 'a'), (2, 'b');
INSERT INTO lines VALUES (10, 1), (11, 2), (12, 2);
`)
}

func TestRestoreBigIntegersWithoutRowid(t *testing.T) {
	checkExact(t, "bigwr", `
CREATE TABLE kv (k TEXT PRIMARY KEY, v INTEGER, w) WITHOUT ROWID;
INSERT INTO kv VALUES ('min', -9223372036854775808, 9223372036854775807), ('max', 9223372036854775807, -9007199254740993), ('small', 5, 1);
CREATE TABLE big_pk (id INTEGER, n, PRIMARY KEY (id)) WITHOUT ROWID;
INSERT INTO big_pk VALUES (9007199254740993, 1), (9007199254740992, 2), (-9223372036854775808, 3);
`)
}

func TestRestoreFixupsFollowRowsNotRowids(t *testing.T) {
	// Rows with rowid gaps: the dump's INSERTs carry no rowid, so replayed rows are renumbered.
	var b strings.Builder
	b.WriteString("CREATE TABLE g (name TEXT, n INTEGER);\nCREATE TABLE h (n);\n")
	for i := 1; i <= 320; i++ {
		fmt.Fprintf(&b, "INSERT INTO g (rowid, name, n) VALUES (%d, 'r%d', %d);\n", i*3, i, 9007199254740993+int64(i)*2)
		fmt.Fprintf(&b, "INSERT INTO h (rowid, n) VALUES (%d, %d);\n", i*7, 9007199254740993+int64(i)*2)
	}
	b.WriteString("DELETE FROM h WHERE rowid % 2 = 0;\n")
	checkExact(t, "gaps", b.String())
}

func TestRestoreRealStaysReal(t *testing.T) {
	checkExact(t, "reals", `
CREATE TABLE r (id INTEGER PRIMARY KEY, untyped, num NUMERIC, b BLOB, re REAL);
INSERT INTO r VALUES (1, 1.0, 1.0, 2.0, 3.0), (2, -0.0, 1e20, -1e300, 1.0), (3, 1e21, 4503599627370496.0, 0.0, -0.0), (4, 12345.0, 1.5, 1, 2);
CREATE TABLE rn (a, b);
INSERT INTO rn VALUES (1.0, 'x'), (2, 2.0), (1e15, -5.0), (9e999, -9e999);
CREATE TABLE rk (code TEXT PRIMARY KEY, v, big INTEGER);
INSERT INTO rk VALUES ('a', 7.0, 9223372036854775807), ('b', 0.5, -9007199254740993), ('c', 3, 4);
`)
}

func TestRestoreTextWithNUL(t *testing.T) {
	checkExact(t, "nul", `
CREATE TABLE t (id INTEGER PRIMARY KEY, s TEXT, u);
INSERT INTO t VALUES (1, CAST(X'610062' AS TEXT), CAST(X'00' AS TEXT)), (2, 'plain', CAST(X'0A000D27' AS TEXT));
CREATE TABLE w (k TEXT PRIMARY KEY, v) WITHOUT ROWID;
INSERT INTO w VALUES ('a', CAST(X'41004200' AS TEXT));
`)
}

func TestRestoreInfinity(t *testing.T) {
	checkExact(t, "inf", `
CREATE TABLE f (id INTEGER PRIMARY KEY, x REAL, y);
INSERT INTO f VALUES (1, 9e999, -9e999), (2, 1.5, 2.5);
`)
}

func TestContentlessFTSWarnedAtBackup(t *testing.T) {
	e := startEmu(t)
	src := e.addSQL(t, "fts", `
CREATE TABLE docs (id INTEGER PRIMARY KEY, body TEXT);
INSERT INTO docs VALUES (1, 'hello world'), (2, 'bye');
CREATE VIRTUAL TABLE docs_ext USING fts5(body, content='docs', content_rowid='id');
INSERT INTO docs_ext(docs_ext) VALUES('rebuild');
CREATE VIRTUAL TABLE notes USING fts5(title, body);
INSERT INTO notes VALUES ('a', 'b c'), ('d', 'e');
CREATE VIRTUAL TABLE blind USING fts5(body, content='');
INSERT INTO blind(rowid, body) VALUES (1, 'secret words');
`)
	cat, m, log := e.backup(t, src)
	if !strings.Contains(log, "level=WARN") || !strings.Contains(log, "contentless") || !strings.Contains(log, "table=blind") {
		t.Fatalf("no backup-time warning for the contentless table:\n%s", log)
	}
	for _, it := range cat.Items {
		if got := len(it.Warnings) > 0; got != (it.Table == "blind") {
			t.Errorf("item %s %s: warnings %q", it.Kind, it.Table, it.Warnings)
		}
	}
	paths, errs := e.restoreAll(t, src, cat, m)
	for i, err := range errs {
		if err != nil {
			t.Fatalf("restore %d: %v", i, err)
		}
		db, err := sql.Open("sqlite", paths[i])
		if err != nil {
			t.Fatal(err)
		}
		var n int
		if err := db.QueryRow("SELECT count(*) FROM notes WHERE notes MATCH 'c'").Scan(&n); err != nil || n != 1 {
			t.Errorf("restore %d: notes MATCH c = %d, %v", i, n, err)
		}
		if err := db.QueryRow("SELECT count(*) FROM docs_ext WHERE docs_ext MATCH 'hello'").Scan(&n); err != nil || n != 1 {
			t.Errorf("restore %d: docs_ext MATCH hello = %d, %v", i, n, err)
		}
		db.Close()
	}
}

func TestRestoreLargeExactTextIntoD1(t *testing.T) {
	// A table without a key holding an integer beyond 2^53 is replayed from exact rows, whose text
	// is written as CAST(X'…' AS TEXT); a 150 KB value must still be split under D1's
	// 100,000-byte statement limit.
	checkExact(t, "largeexact", `
CREATE TABLE nokey (n, body TEXT);
INSERT INTO nokey VALUES (9007199254740993, CAST(X'00' AS TEXT) || replace(hex(zeroblob(75000)), '00', 'é')), (1, 'small');
`)
}

func TestRestoreTextThatIsNotUTF8(t *testing.T) {
	checkExact(t, "notutf8", `
CREATE TABLE t (id INTEGER PRIMARY KEY, s TEXT, u);
INSERT INTO t VALUES (1, CAST(X'6261642066ff' AS TEXT), CAST(X'80' AS TEXT)), (2, 'fine ✓', CAST(X'c080' AS TEXT)), (3, CAST(X'e29c' AS TEXT), CAST(X'eda080' AS TEXT));
CREATE TABLE nk (s);
INSERT INTO nk VALUES (CAST(X'ff' AS TEXT)), ('ok');
`)
}

func TestRestoreExactRowsWithoutARowidName(t *testing.T) {
	// Columns shadow every name of the rowid and there is no key: the exact rows are paged by all
	// columns.
	checkExact(t, "shadowed", `
CREATE TABLE s (rowid, _rowid_, oid);
INSERT INTO s VALUES (9007199254740993, 1.0, 'a'), (2, 3, 'b'), (2, 3, 'b');
`)
}

func TestPartialRestoreOfAReplacedTable(t *testing.T) {
	e := startEmu(t)
	src := e.addSQL(t, "partial", `
CREATE TABLE g (name TEXT, n INTEGER);
INSERT INTO g (rowid, name, n) VALUES (3, 'a', 9007199254740993), (9, 'b', 1.0), (20, 'c', 5);
CREATE TABLE other (id INTEGER PRIMARY KEY, v);
INSERT INTO other VALUES (1, 2.0);
`)
	_, wr := snapshotDB(t, e.srv.DatabasePath(src.UUID))
	cat, m, _ := e.backup(t, src)
	kinds := map[string]bool{}
	for _, it := range cat.Items {
		kinds[it.Kind+":"+it.Table] = true
	}
	if !kinds["rows:g"] || !kinds["fixup:other"] {
		t.Fatalf("items %v: want exact rows for g (no key) and a fixup for other", kinds)
	}
	sel, err := Select(cat, src.UUID, []string{"g"})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "g.sqlite")
	res, err := RestoreToFile(context.Background(), m.open, sel, path)
	if err != nil {
		t.Fatal(err)
	}
	if res.Tables["g"] != 3 || len(res.Tables) != 1 {
		t.Fatalf("tables %v", res.Tables)
	}
	_, gr := snapshotDB(t, path)
	if strings.Join(gr["g"], "\n") != strings.Join(wr["g"], "\n") {
		t.Fatalf("g = %q, want %q", gr["g"], wr["g"])
	}
	// The exact rows keep the rowids too.
	db, _ := sql.Open("sqlite", path)
	defer db.Close()
	var ids string
	db.QueryRow("SELECT group_concat(rowid) FROM (SELECT rowid FROM g ORDER BY rowid)").Scan(&ids)
	if ids != "3,9,20" {
		t.Fatalf("rowids %s, want 3,9,20", ids)
	}
}

func TestExactnessCheckInWindows(t *testing.T) {
	defer func(n int) { scanWindow = n }(scanWindow)
	scanWindow = 7 // the check reads 7 rows per query: values far into the table must still be found
	var b strings.Builder
	b.WriteString("CREATE TABLE a (id INTEGER PRIMARY KEY, v);\nCREATE TABLE u (id INTEGER PRIMARY KEY, w UNIQUE);\n")
	for i := 1; i <= 50; i++ {
		fmt.Fprintf(&b, "INSERT INTO a VALUES (%d, %d);\nINSERT INTO u VALUES (%d, %d);\n", i*2, i, i*3, i)
	}
	b.WriteString("UPDATE a SET v = 45.0 WHERE id = 90;\nUPDATE u SET w = 9007199254740993 WHERE id = 120;\nUPDATE u SET w = 9007199254740992 WHERE id = 123;\n")
	e := startEmu(t)
	src := e.addSQL(t, "windows", b.String())
	cat, _, _ := e.backup(t, src)
	kinds := map[string]bool{}
	for _, it := range cat.Items {
		kinds[it.Kind+":"+it.Table] = true
	}
	if !kinds["fixup:a"] || !kinds["rows:u"] {
		t.Fatalf("items %v: want a fixup for a (row 45 of 50) and exact rows for u (UNIQUE values that round alike)", kinds)
	}
	checkExact(t, "windows", b.String())
}

func TestExactRowsPagedByBytes(t *testing.T) {
	defer func(n int) { pageBudget = n }(pageBudget)
	pageBudget = 300 // a page holds one or two of these rows: large rows never arrive in one answer
	var b strings.Builder
	b.WriteString("CREATE TABLE nk (n, body TEXT);\nCREATE TABLE wr (k INTEGER PRIMARY KEY, body) WITHOUT ROWID;\nCREATE TABLE pk (id INTEGER PRIMARY KEY, v, body);\n")
	for i := 1; i <= 40; i++ {
		fmt.Fprintf(&b, "INSERT INTO nk VALUES (%d, '%s');\n", 9007199254740993+int64(i)*2, strings.Repeat("x", 100+i))
		fmt.Fprintf(&b, "INSERT INTO wr VALUES (%d, '%s');\n", 9007199254740993+int64(i)*2, strings.Repeat("y", 90+i))
		fmt.Fprintf(&b, "INSERT INTO pk VALUES (%d, %d.0, '%s');\n", i, i, strings.Repeat("z", 120))
	}
	checkExact(t, "paged", b.String())
}

package sqldump

import (
	"bytes"
	"context"
	"crypto/md5"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"testing/iotest"

	_ "modernc.org/sqlite"

	"github.com/cfbackup/cfbackup/internal/testutil/tools"
)

// openDB opens a modernc SQLite file with foreign keys enforced, as D1 does, in defensive mode
// (as OpenFile does) so Load accepts it as a target.
func openDB(t testing.TB, path string) (*sql.DB, *sql.Conn) {
	t.Helper()
	db, err := sql.Open("sqlite", path+"?_pragma=foreign_keys(1)&_defensive=1")
	if err != nil {
		t.Fatal(err)
	}
	conn, err := db.Conn(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(); db.Close() })
	return db, conn
}

// sourceSchema covers the dump hazards: a child table created before its parent (FK order), an
// AUTOINCREMENT table (sqlite_sequence), a quoted table name (D1 injects IF NOT EXISTS), a WITHOUT
// ROWID table, an index, a view and a trigger whose body holds CASE…END and ';' inside strings.
const sourceSchema = `
CREATE TABLE orders(id INTEGER PRIMARY KEY, customer_id INTEGER NOT NULL REFERENCES customers(id), note TEXT, total REAL, raw BLOB, big INTEGER);
CREATE TABLE customers(id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL, photo BLOB, anything);
CREATE TABLE "My ""Odd"" Table"("key;" TEXT PRIMARY KEY, [v a l] ANY) WITHOUT ROWID;
CREATE TABLE empty(x);
CREATE TABLE audit(msg TEXT);
CREATE INDEX orders_by_customer ON orders(customer_id, total);
CREATE VIEW big_orders AS SELECT * FROM orders WHERE total > 100;
CREATE TRIGGER orders_audit AFTER INSERT ON orders BEGIN
  INSERT INTO audit(msg) VALUES (CASE WHEN NEW.total > 100 THEN 'big; END;' ELSE 'small' END);
  INSERT INTO audit(msg) VALUES ('x'';y');
END;
`

func populate(t testing.TB, conn *sql.Conn) {
	t.Helper()
	ctx := context.Background()
	for _, q := range []string{sourceSchema} {
		if _, err := conn.ExecContext(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	names := []string{"Ann", "O'Brien; DROP TABLE x;--", "multi\nline\r\nwith \\n and \\012", "日本語 ✓ 🎉", "", "END;", `"quoted"`}
	for i, n := range names {
		var photo any
		if i%2 == 0 {
			photo = []byte{0, byte(i), 0xff, '\'', ';'}
		}
		anything := []any{int64(7), 3.0, "txt", nil, []byte("b"), int64(math.MinInt64), 1e300}[i]
		if _, err := conn.ExecContext(ctx, "INSERT INTO customers(name, photo, anything) VALUES(?,?,?)", n, photo, anything); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := conn.ExecContext(ctx, "DELETE FROM customers WHERE id = 7"); err != nil { // sqlite_sequence stays at 7
		t.Fatal(err)
	}
	for i := 0; i < 200; i++ {
		var note any = fmt.Sprintf("order %d; 'quoted' -- not a comment /* nor this */", i)
		if i%7 == 0 {
			note = nil
		}
		if _, err := conn.ExecContext(ctx, "INSERT INTO orders(customer_id, note, total, raw, big) VALUES(?,?,?,?,?)",
			1+i%6, note, float64(i)*1.1+0.1, bytes.Repeat([]byte{byte(i)}, i%5), int64(1<<53)+int64(i)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := conn.ExecContext(ctx, `INSERT INTO "My ""Odd"" Table" VALUES('k1', 1), ('k;2', 'two'), ('k3', X'00'), ('k4', 9223372036854775807)`); err != nil {
		t.Fatal(err)
	}
}

// d1Dump mimics miniflare/D1 dumpSql (workers-sdk packages/miniflare/src/workers/d1/dumpSql.ts):
// statement order, IF NOT EXISTS injection for quoted names, INSERT with quoted column names, and
// sqlite_sequence last; statements joined by "\n", no trailing newline. Numbers use FormatValue
// (exact) where D1 uses JavaScript numbers.
func d1Dump(t testing.TB, conn *sql.Conn) string {
	t.Helper()
	dump, err := d1DumpTables(t, conn, nil)
	if err != nil {
		t.Fatal(err)
	}
	return dump
}

// d1DumpTables is d1Dump with dump_options.tables: like D1 it refuses virtual tables among the
// exported tables, and keeps an index, trigger or view only if its own name is in the list.
func d1DumpTables(t testing.TB, conn *sql.Conn, filter []string) (string, error) {
	t.Helper()
	keep := map[string]bool{}
	for _, f := range filter {
		keep[f] = true
	}
	ctx := context.Background()
	out := []string{"PRAGMA defer_foreign_keys=TRUE;"}
	type tbl struct{ name, sql string }
	var tables []tbl
	rows, err := conn.QueryContext(ctx, `SELECT name, sql FROM sqlite_schema WHERE type=='table' AND sql NOT NULL ORDER BY tbl_name='sqlite_sequence', rowid`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var x tbl
		if err := rows.Scan(&x.name, &x.sql); err != nil {
			t.Fatal(err)
		}
		tables = append(tables, x)
	}
	rows.Close()
	quoted := regexp.MustCompile(`^CREATE TABLE ['"]`)
	for _, tb := range tables {
		if len(keep) > 0 && !keep[tb.name] {
			continue
		}
		switch {
		case strings.HasPrefix(tb.sql, "CREATE VIRTUAL TABLE"):
			return "", errors.New("D1 Export error: cannot export databases with Virtual Tables (fts5)")
		case tb.name == "sqlite_sequence":
			out = append(out, "DELETE FROM sqlite_sequence;")
		case strings.HasPrefix(tb.name, "sqlite_") || strings.HasPrefix(tb.name, "_cf_"):
			continue
		case quoted.MatchString(tb.sql):
			out = append(out, "CREATE TABLE IF NOT EXISTS "+tb.sql[13:]+";")
		default:
			out = append(out, tb.sql+";")
		}
		cols := tableColumns(t, conn, tb.name)
		qcols := make([]string, len(cols))
		for i, c := range cols {
			qcols[i] = QuoteIdent(c)
		}
		rows, err := conn.QueryContext(ctx, "SELECT "+strings.Join(qcols, ", ")+" FROM "+QuoteIdent(tb.name))
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			vals := make([]any, len(cols))
			ptrs := make([]any, len(cols))
			for i := range vals {
				ptrs[i] = &vals[i]
			}
			if err := rows.Scan(ptrs...); err != nil {
				t.Fatal(err)
			}
			out = append(out, FormatInsert(tb.name, cols, vals))
		}
		rows.Close()
	}
	rows, err = conn.QueryContext(ctx, `SELECT name, sql FROM sqlite_schema AS o WHERE sql NOT NULL AND type IN ('index','trigger','view') ORDER BY type COLLATE NOCASE`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var n, s string
		rows.Scan(&n, &s)
		if len(keep) > 0 && !keep[n] {
			continue
		}
		out = append(out, s+";")
	}
	rows.Close()
	return strings.Join(out, "\n"), nil
}

func tableColumns(t testing.TB, conn *sql.Conn, table string) []string {
	t.Helper()
	rows, err := conn.QueryContext(context.Background(), "SELECT name FROM pragma_table_info(?)", table)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var cols []string
	for rows.Next() {
		var c string
		rows.Scan(&c)
		cols = append(cols, c)
	}
	return cols
}

// tableDump returns every row of table with each value's SQLite type, in rowid (or primary key) order.
func tableDump(t testing.TB, conn *sql.Conn, table string) [][]any {
	t.Helper()
	cols := tableColumns(t, conn, table)
	var sel []string
	for _, c := range cols {
		sel = append(sel, "typeof("+QuoteIdent(c)+")", QuoteIdent(c))
	}
	order := "rowid"
	var wr int
	conn.QueryRowContext(context.Background(), "SELECT wr FROM pragma_table_list WHERE name = ?", table).Scan(&wr)
	if wr == 1 {
		order = "1, 2"
	}
	rows, err := conn.QueryContext(context.Background(), "SELECT "+strings.Join(sel, ", ")+" FROM "+QuoteIdent(table)+" ORDER BY "+order)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out [][]any
	for rows.Next() {
		vals := make([]any, len(sel))
		ptrs := make([]any, len(sel))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			t.Fatal(err)
		}
		out = append(out, vals)
	}
	return out
}

func userTables(t testing.TB, conn *sql.Conn) []string {
	return strings1(t, conn, "SELECT name FROM sqlite_schema WHERE type='table' AND name NOT LIKE 'sqlite_%' ORDER BY name")
}

func schemaOf(t testing.TB, conn *sql.Conn) []string {
	return strings1(t, conn, "SELECT type || ' ' || name FROM sqlite_schema ORDER BY 1")
}

// strings1 returns the single text column of a query's rows.
func strings1(t testing.TB, conn *sql.Conn, q string) []string {
	t.Helper()
	rows, err := conn.QueryContext(context.Background(), q)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var n string
		rows.Scan(&n)
		out = append(out, n)
	}
	return out
}

func assertSameDB(t *testing.T, src, dst *sql.Conn) {
	t.Helper()
	if a, b := schemaOf(t, src), schemaOf(t, dst); !reflect.DeepEqual(a, b) {
		t.Fatalf("schema differs:\n src %q\n dst %q", a, b)
	}
	for _, tb := range append(userTables(t, src), "sqlite_sequence") {
		if a, b := tableDump(t, src, tb), tableDump(t, dst, tb); !reflect.DeepEqual(a, b) {
			t.Errorf("table %q differs:\n src %v\n dst %v", tb, a, b)
		}
	}
	if err := Check(context.Background(), dst); err != nil {
		t.Error(err)
	}
}

type splitPart struct {
	Part
	text string
}

func splitAll(t *testing.T, dump string) []splitPart {
	t.Helper()
	var parts []splitPart
	err := Split(strings.NewReader(dump), SplitOptions{}, func(p *Part, r io.Reader) error {
		if len(dump) < 1<<20 {
			r = iotest.OneByteReader(r) // exercise the part reader's statement/newline boundaries
		}
		b, err := io.ReadAll(r)
		if err != nil {
			return err
		}
		parts = append(parts, splitPart{*p, string(b)})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range parts {
		if p.Bytes != int64(len(p.text)) || int64(strings.Count(p.text, ";\n")) < p.Statements {
			t.Errorf("part %q: info %+v does not match text of %d bytes", p.Table, p.Part, len(p.text))
		}
	}
	return parts
}

func makeSource(t *testing.T) (string, *sql.Conn) {
	dir := t.TempDir()
	path := filepath.Join(dir, "src.db")
	_, conn := openDB(t, path)
	populate(t, conn)
	return path, conn
}

func TestSplitLoadD1Dump(t *testing.T) {
	ctx := context.Background()
	_, src := makeSource(t)
	dump := d1Dump(t, src)
	if strings.HasSuffix(dump, "\n") || !strings.HasPrefix(dump, "PRAGMA defer_foreign_keys=TRUE;\n") {
		t.Fatal("helper does not produce D1's framing")
	}
	parts := splitAll(t, dump)
	var order []string
	for _, p := range parts {
		order = append(order, p.Kind+":"+p.Table)
	}
	want := []string{"table:orders", "table:customers", `table:My "Odd" Table`, "table:empty", "table:audit", "schema:"}
	if !reflect.DeepEqual(order, want) {
		t.Fatalf("parts %q, want %q", order, want)
	}
	for _, p := range parts[:len(parts)-1] {
		n, err := CountRows(ctx, src, p.Table)
		if err != nil {
			t.Fatal(err)
		}
		if p.Rows != n || p.Statements != n+1 {
			t.Errorf("part %q: rows %d statements %d, source has %d rows", p.Table, p.Rows, p.Statements, n)
		}
	}
	schema := parts[len(parts)-1]
	for _, s := range []string{"PRAGMA defer_foreign_keys=TRUE;", "DELETE FROM sqlite_sequence;", `INSERT INTO "sqlite_sequence"`, "CREATE INDEX orders_by_customer", "CREATE TRIGGER orders_audit", "CREATE VIEW big_orders"} {
		if !strings.Contains(schema.text, s) {
			t.Errorf("schema part lacks %q:\n%s", s, schema.text)
		}
	}

	// all parts in order into a fresh database
	_, dst := openDB(t, filepath.Join(t.TempDir(), "dst.db"))
	var total LoadStats
	for _, p := range parts {
		st, err := Load(ctx, dst, strings.NewReader(p.text), LoadOptions{SkipForeignKeyCheck: true})
		if err != nil {
			t.Fatalf("load %s %q: %v", p.Kind, p.Table, err)
		}
		total.Rows += st.Rows
		total.Tables += st.Tables
	}
	if total.Tables != 5 {
		t.Errorf("created %d tables", total.Tables)
	}
	assertSameDB(t, src, dst)

	// the whole dump in one Load gives the same database
	_, dst2 := openDB(t, filepath.Join(t.TempDir(), "dst2.db"))
	if _, err := Load(ctx, dst2, strings.NewReader(dump), LoadOptions{}); err != nil {
		t.Fatal(err)
	}
	assertSameDB(t, src, dst2)

	// one table part alone
	_, one := openDB(t, filepath.Join(t.TempDir(), "one.db"))
	if _, err := Load(ctx, one, strings.NewReader(parts[1].text), LoadOptions{}); err != nil {
		t.Fatal(err)
	}
	if a, b := tableDump(t, src, "customers"), tableDump(t, one, "customers"); !reflect.DeepEqual(a, b) {
		t.Errorf("single table restore differs")
	}
	if got := userTables(t, one); !reflect.DeepEqual(got, []string{"customers"}) {
		t.Errorf("single table restore created %q", got)
	}
	if err := Check(ctx, one); err != nil {
		t.Error(err)
	}
}

func TestSplitLoadSqlite3CLIDump(t *testing.T) {
	tools.Require(t, "sqlite3")
	ctx := context.Background()
	path, src := makeSource(t)
	out, err := exec.Command("sqlite3", path, ".dump").Output()
	if err != nil {
		t.Fatal(err)
	}
	full := string(out)
	if !strings.Contains(full, "BEGIN TRANSACTION;") {
		t.Fatalf("unexpected .dump output:\n%.300s", full)
	}
	stripped := strings.Replace(strings.Replace(full, "BEGIN TRANSACTION;\n", "", 1), "\nCOMMIT;\n", "\n", 1)
	for name, dump := range map[string]string{"as-is": full, "begin-commit-removed": stripped} {
		t.Run(name, func(t *testing.T) {
			parts := splitAll(t, dump)
			if len(parts) != 6 || parts[0].Table != "orders" || parts[5].Kind != PartSchema {
				t.Fatalf("unexpected parts %+v", parts)
			}
			_, dst := openDB(t, filepath.Join(t.TempDir(), "dst.db"))
			for _, p := range parts {
				if _, err := Load(ctx, dst, strings.NewReader(p.text), LoadOptions{SkipForeignKeyCheck: true}); err != nil {
					t.Fatalf("load %q: %v", p.Table, err)
				}
			}
			assertSameDB(t, src, dst)
		})
	}
}

func TestSplitInterleavedAndDataOnly(t *testing.T) {
	dump := "CREATE TABLE a(x);\nCREATE TABLE b(y);\nINSERT INTO a VALUES(1);\nINSERT INTO \"B\" VALUES(2);\n" +
		"CREATE INDEX i ON a(x);\nINSERT INTO b VALUES(3);\nINSERT INTO a VALUES(4);\nINSERT INTO a VALUES(5)"
	parts := splitAll(t, dump)
	type pi struct {
		table           string
		cont            bool
		rows, statement int64
	}
	var got []pi
	for _, p := range parts {
		got = append(got, pi{p.Table, p.Continued, p.Rows, p.Statements})
	}
	want := []pi{{"a", false, 0, 1}, {"b", false, 0, 1}, {"a", true, 1, 1}, {"B", true, 2, 2}, {"a", true, 2, 2}, {"", false, 0, 1}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %+v\nwant %+v", got, want)
	}
	if parts[4].text != "INSERT INTO a VALUES(4);\nINSERT INTO a VALUES(5);\n" {
		t.Errorf("last part text %q", parts[4].text)
	}
}

func TestSplitErrors(t *testing.T) {
	dump := "CREATE TABLE a(x);INSERT INTO a VALUES(1);CREATE TABLE b(x);"
	err := Split(strings.NewReader(dump), SplitOptions{}, func(p *Part, r io.Reader) error { return nil })
	if !errors.Is(err, ErrPartNotConsumed) {
		t.Errorf("unconsumed part: %v", err)
	}
	boom := errors.New("boom")
	err = Split(strings.NewReader(dump), SplitOptions{}, func(p *Part, r io.Reader) error { return boom })
	if !errors.Is(err, boom) {
		t.Errorf("emit error: %v", err)
	}
	err = Split(strings.NewReader("CREATE TABLE a(x);INSERT INTO a VALUES('"+strings.Repeat("x", 3000)+"');"),
		SplitOptions{MaxStatement: 1000}, func(p *Part, r io.Reader) error { _, err := io.Copy(io.Discard, r); return err })
	if !errors.Is(err, ErrStatementTooLong) {
		t.Errorf("long statement: %v", err)
	}
	err = Split(strings.NewReader("CREATE INDEX i ON a(x);CREATE INDEX j ON a(y);"), SplitOptions{MaxSchemaBytes: 30},
		func(p *Part, r io.Reader) error { _, err := io.Copy(io.Discard, r); return err })
	if !errors.Is(err, ErrSchemaTooLarge) {
		t.Errorf("schema limit: %v", err)
	}
}

func TestLoadErrorNamesStatement(t *testing.T) {
	_, conn := openDB(t, filepath.Join(t.TempDir(), "x.db"))
	_, err := Load(context.Background(), conn, strings.NewReader("CREATE TABLE a(x PRIMARY KEY);\nINSERT INTO a VALUES(1);\nINSERT INTO a VALUES(1);"), LoadOptions{})
	if err == nil || !strings.Contains(err.Error(), "statement 3 (INSERT INTO a VALUES(1);") {
		t.Fatalf("got %v", err)
	}
	if tabs := userTables(t, conn); len(tabs) != 0 {
		t.Errorf("failed load left tables %q", tabs)
	}
	// a foreign key violation fails at commit (deferred) and rolls everything back
	_, err = Load(context.Background(), conn, strings.NewReader("CREATE TABLE p(id INTEGER PRIMARY KEY);CREATE TABLE c(p REFERENCES p(id));INSERT INTO c VALUES(9);"), LoadOptions{})
	if !errors.Is(err, ErrCheckFailed) || !strings.Contains(err.Error(), "c rowid 1 has no parent in p") {
		t.Fatalf("fk violation: %v", err)
	}
	if tabs := userTables(t, conn); len(tabs) != 0 {
		t.Errorf("failed load left tables %q", tabs)
	}
	var fk int
	if conn.QueryRowContext(context.Background(), "PRAGMA foreign_keys").Scan(&fk); fk != 1 {
		t.Error("Load did not restore foreign_keys=ON")
	}
}

func TestLoadCancelled(t *testing.T) {
	_, conn := openDB(t, filepath.Join(t.TempDir(), "c.db"))
	ctx, cancel := context.WithCancel(context.Background())
	r := io.MultiReader(strings.NewReader("CREATE TABLE a(x);INSERT INTO a VALUES(1);"), readerFunc(func(p []byte) (int, error) {
		cancel()
		return copy(p, "INSERT INTO a VALUES(2);"), io.EOF
	}))
	if _, err := Load(ctx, conn, r, LoadOptions{}); !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v", err)
	}
	if tabs := userTables(t, conn); len(tabs) != 0 {
		t.Errorf("cancelled load left tables %q", tabs)
	}
}

type readerFunc func([]byte) (int, error)

func (f readerFunc) Read(p []byte) (int, error) { return f(p) }

func TestCheckReportsForeignKeyViolation(t *testing.T) {
	ctx := context.Background()
	db, err := sql.Open("sqlite", filepath.Join(t.TempDir(), "fk.db")) // foreign keys off: violations get stored
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	conn, _ := db.Conn(ctx)
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, "CREATE TABLE p(id INTEGER PRIMARY KEY); CREATE TABLE c(p REFERENCES p(id)); INSERT INTO c VALUES(9);"); err != nil {
		t.Fatal(err)
	}
	err = Check(ctx, conn)
	if !errors.Is(err, ErrCheckFailed) || !strings.Contains(err.Error(), "c rowid 1 has no parent in p") {
		t.Fatalf("got %v", err)
	}
}

func TestFormatInsertRoundTrip(t *testing.T) {
	ctx := context.Background()
	_, conn := openDB(t, filepath.Join(t.TempDir(), "f.db"))
	if _, err := conn.ExecContext(ctx, `CREATE TABLE "f ""t"""(k INTEGER PRIMARY KEY, "v;")`); err != nil {
		t.Fatal(err)
	}
	values := []any{
		nil, int64(math.MaxInt64), int64(math.MinInt64), int64(1<<53 + 1), 0.1, 1.0, -2.5e-300, math.MaxFloat64,
		math.SmallestNonzeroFloat64, math.Inf(1), math.Inf(-1), "", "it's", "a\nb\r\nc", `lit \n \012 (\n0) \r`,
		"日本語 ✓ 🎉", "END; --", []byte{}, []byte{0, 1, 0xff, '\''},
	}
	for i, v := range values {
		q := FormatInsert(`f "t"`, []string{"k", "v;"}, []any{int64(i), v})
		if strings.ContainsAny(q, "\n\r") {
			t.Errorf("statement spans lines: %q", q)
		}
		if _, err := conn.ExecContext(ctx, q); err != nil {
			t.Fatalf("%q: %v", q, err)
		}
		var got any
		var typ string
		if err := conn.QueryRowContext(ctx, `SELECT typeof("v;"), "v;" FROM "f ""t""" WHERE k = ?`, i).Scan(&typ, &got); err != nil {
			t.Fatal(err)
		}
		want := v
		if b, ok := v.([]byte); ok && len(b) == 0 {
			if typ != "blob" {
				t.Errorf("empty blob stored as %s", typ)
			}
			continue
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("value %d: %q loaded as %s %#v, want %#v", i, q, typ, got, want)
		}
	}
	if got := FormatInsert("t", []string{"a", "b", "c", "d"}, []any{true, float32(0.5), "x\ny", []byte(nil)}); got != `INSERT INTO "t" ("a","b","c","d") VALUES(1,0.5,replace('x\ny','\n',char(10)),X'');` {
		t.Errorf("got %s", got)
	}
	if FormatValue(math.NaN()) != "NULL" || FormatValue(jsonNumber("12e3")) != "12e3" || FormatValue(jsonNumber("1); DROP")) != "'1); DROP'" {
		t.Error("NaN / json.Number encoding")
	}
}

func TestPlanPartsRoundTrip(t *testing.T) {
	ctx := context.Background()
	_, src := makeSource(t)
	dump := d1Dump(t, src)
	const limit = 4096
	prologue := "PRAGMA defer_foreign_keys=TRUE;\n"
	plans, err := PlanParts(strings.NewReader(dump), PlanOptions{Limit: limit, Prologue: prologue})
	if err != nil {
		t.Fatal(err)
	}
	if len(plans) < 5 {
		t.Fatalf("only %d parts", len(plans))
	}
	// D1 enforces foreign keys per import, so load files into a database with enforcement off
	// (see the report on FK order across files); each file must load on its own.
	db, err := OpenFile(filepath.Join(t.TempDir(), "d.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	dst, _ := db.Conn(ctx)
	defer dst.Close()
	var all strings.Builder
	var next int64 = 1
	for i, p := range plans {
		if p.Index != i || p.FirstStatement != next {
			t.Errorf("plan %d: %+v", i, p)
		}
		next += p.Statements
		var buf bytes.Buffer
		sec := io.NewSectionReader(strings.NewReader(dump), p.InputOffset, p.InputEnd-p.InputOffset)
		if err := WritePart(&buf, sec, p); err != nil {
			t.Fatal(err)
		}
		sum := md5.Sum(buf.Bytes())
		if int64(buf.Len()) != p.Bytes || buf.Len() > limit || hex.EncodeToString(sum[:]) != p.MD5 || !strings.HasPrefix(buf.String(), prologue) {
			t.Fatalf("part %d: %d bytes, plan %+v", i, buf.Len(), p)
		}
		if _, err := Load(ctx, dst, bytes.NewReader(buf.Bytes()), LoadOptions{SkipForeignKeyCheck: true}); err != nil {
			t.Fatalf("part %d: %v", i, err)
		}
		all.WriteString(strings.TrimPrefix(buf.String(), prologue))
	}
	if _, err := exec.LookPath("sqlite3"); err == nil { // interop: the whole set loads in the real CLI too
		path := filepath.Join(t.TempDir(), "cli.db")
		cmd := exec.Command("sqlite3", path)
		cmd.Stdin = strings.NewReader(all.String())
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("sqlite3: %v %s", err, out)
		}
	}
	assertSameDB(t, src, dst)

	// a changed input is detected in the second pass, in exactly the file that holds the change
	changed := strings.Replace(dump, "'Ann'", "'Bob'", 1)
	mismatches := 0
	for _, p := range plans {
		err := WritePart(io.Discard, io.NewSectionReader(strings.NewReader(changed), p.InputOffset, p.InputEnd-p.InputOffset), p)
		if errors.Is(err, ErrPlanMismatch) {
			mismatches++
		} else if err != nil {
			t.Fatal(err)
		}
	}
	if mismatches != 1 {
		t.Errorf("%d files flagged as changed, want 1", mismatches)
	}
}

func TestPlanPartsRejectsLargeStatement(t *testing.T) {
	dump := "CREATE TABLE a(x);\nINSERT INTO a VALUES(1);\nINSERT INTO \"a\" (\"x\") VALUES('" + strings.Repeat("z", 100_001) + "');"
	_, err := PlanParts(strings.NewReader(dump), PlanOptions{Limit: 1 << 30})
	if !errors.Is(err, ErrStatementTooLarge) || !strings.Contains(err.Error(), `statement 3 (table "a"`) {
		t.Fatalf("got %v", err)
	}
}

func jsonNumber(s string) any { return json.Number(s) }

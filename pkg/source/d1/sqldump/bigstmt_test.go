package sqldump

import (
	"bytes"
	"context"
	"crypto/md5" //nolint:gosec // D1 import etag
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/cfbackup/cfbackup/internal/cftest"
	"github.com/cfbackup/cfbackup/pkg/cloudflare"
	_ "modernc.org/sqlite"
)

// bsBigSchema has the column types where a split value could go wrong: affinity (INTEGER, REAL),
// a CHECK that rejects partial values, a WITHOUT ROWID table and a table dumped without a column list.
const bsBigSchema = `PRAGMA defer_foreign_keys=TRUE;
CREATE TABLE "docs" ("id" TEXT PRIMARY KEY, "big" TEXT, "bin" BLOB, "num" INTEGER, "n" INTEGER, "r" REAL, "z" TEXT, "j" TEXT CHECK (json_valid("j")), "u" TEXT UNIQUE);
CREATE TABLE "kv" ("k" TEXT PRIMARY KEY, "v") WITHOUT ROWID;
CREATE TABLE "plain" (a, b NUMERIC);
`

var bsDocCols = []string{"id", "big", "bin", "num", "n", "r", "z", "j", "u"}

func bsBigText(rng *rand.Rand, n int) string {
	pieces := []string{"日本語のテキスト", "😀🎉👩‍👩‍👧", "it's ''quoted''", "semi;colon", "\n", "\r\n", `back\slash \n \012 (\n0)`, "Ωμέγα", "-- not a comment", "/* nor this */"}
	var b strings.Builder
	for b.Len() < n {
		if rng.IntN(3) == 0 {
			b.WriteString(pieces[rng.IntN(len(pieces))])
		} else {
			b.WriteRune(rune(0x20 + rng.IntN(0x2FFF)))
		}
	}
	return b.String()
}

func bsBigBlob(rng *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		if i%7 == 0 {
			continue // plenty of NULs
		}
		b[i] = byte(rng.UintN(256))
	}
	return b
}

// bsBigDump is a D1-style dump whose rows are far over D1's statement limit.
func bsBigDump(t testing.TB) string {
	t.Helper()
	rng := rand.New(rand.NewPCG(1, 2))
	var b strings.Builder
	b.WriteString(bsBigSchema)
	digits := strings.Repeat("0123456789", 12_000)
	var js strings.Builder
	js.WriteString(`{"items":[`)
	for i := 0; js.Len() < 300_000; i++ {
		if i > 0 {
			js.WriteByte(',')
		}
		fmt.Fprintf(&js, `{"i":%d,"s":"it's \u00e9 %d"}`, i, i*i)
	}
	js.WriteString("]}")
	rows := [][]any{
		{"k1", bsBigText(rng, 1_500_000), bsBigBlob(rng, 700_000), "00" + digits + "x", int64(-42), -1.5e-7, nil, js.String(), "u1"},
		{"k2", "small", []byte{0, 1, 2}, "00123", int64(9223372036854775807), 3.0, "z", `{}`, "u2"},
		{"k3", nil, nil, digits, nil, 1e300, "", "[1]", nil},                                      // a long all-digit text in an INTEGER column
		{"k4", strings.Repeat("'", 250_000), []byte{}, "12", int64(0), nil, "a\nb", "null", "u4"}, // every byte needs escaping
	}
	for _, r := range rows {
		b.WriteString(FormatInsert("docs", bsDocCols, r))
		b.WriteByte('\n')
	}
	b.WriteString(FormatInsert("kv", []string{"k", "v"}, []any{"big", bsBigText(rng, 400_000)}))
	b.WriteByte('\n')
	// sqlite3 .dump style: no column list, several values over the limit together
	b.WriteString("INSERT INTO plain VALUES(" + FormatValue(strings.Repeat("ab", 40_000)) + "," + FormatValue("0000"+strings.Repeat("7", 70_000)) + ");")
	return b.String()
}

func bsOpenDB(t testing.TB, path string) *sql.DB {
	t.Helper()
	db, err := OpenFile(path)
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(1)
	t.Cleanup(func() { db.Close() })
	return db
}

func bsLoadInto(t testing.TB, path, dump string) *sql.DB {
	t.Helper()
	db := bsOpenDB(t, path)
	ctx := context.Background()
	conn, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := Load(ctx, conn, strings.NewReader(dump), LoadOptions{}); err != nil {
		t.Fatalf("load: %v", err)
	}
	return db
}

// bsRowsOf returns quote(col) and typeof(col) of every column of every row, in key order.
func bsRowsOf(t testing.TB, db *sql.DB, table, key string, cols []string) []string {
	t.Helper()
	var sel []string
	for _, c := range cols {
		sel = append(sel, "quote("+QuoteIdent(c)+")", "typeof("+QuoteIdent(c)+")")
	}
	rows, err := db.Query("SELECT " + strings.Join(sel, ",") + " FROM " + QuoteIdent(table) + " ORDER BY " + QuoteIdent(key))
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		vals := make([]string, len(sel))
		ptrs := make([]any, len(sel))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			t.Fatal(err)
		}
		for i := 0; i < len(vals); i += 2 {
			out = append(out, cols[i/2]+": "+vals[i+1]+" "+vals[i])
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func bsSameDatabases(t testing.TB, want, got *sql.DB) {
	t.Helper()
	for _, tc := range []struct {
		table, key string
		cols       []string
	}{{"docs", "id", bsDocCols}, {"kv", "k", []string{"k", "v"}}, {"plain", "a", []string{"a", "b"}}} {
		w, g := bsRowsOf(t, want, tc.table, tc.key, tc.cols), bsRowsOf(t, got, tc.table, tc.key, tc.cols)
		if len(w) == 0 || len(w) != len(g) {
			t.Fatalf("%s: %d values, want %d", tc.table, len(g), len(w))
		}
		for i := range w {
			if w[i] != g[i] {
				t.Errorf("%s value %d differs: got %.80q…, want %.80q…", tc.table, i, g[i], w[i])
			}
		}
	}
	var n int
	if err := got.QueryRow("SELECT count(*) FROM sqlite_schema WHERE name = ?", StageTable).Scan(&n); err != nil || n != 0 {
		t.Errorf("stage table left behind (%d, %v)", n, err)
	}
}

func bsRewriteAll(t testing.TB, dump string, limit int) string {
	t.Helper()
	out, err := io.ReadAll(NewRewriter(strings.NewReader(dump), limit, 0))
	if err != nil {
		t.Fatalf("rewrite (limit %d): %v", limit, err)
	}
	return string(out)
}

func TestRewriteLargeRoundTrip(t *testing.T) {
	dump := bsBigDump(t)
	dir := t.TempDir()
	want := bsLoadInto(t, filepath.Join(dir, "orig.db"), dump)
	for _, limit := range []int{D1StatementLimit, 1000} {
		t.Run(fmt.Sprint(limit), func(t *testing.T) {
			out := bsRewriteAll(t, dump, limit)
			if _, err := PlanParts(strings.NewReader(dump), PlanOptions{Limit: 1 << 40, StatementLimit: limit}); !errors.Is(err, ErrStatementTooLarge) {
				t.Fatalf("original dump plans without error (%v); the test proves nothing", err)
			}
			sc := NewScanner(strings.NewReader(out), 0)
			var n, staged int
			for {
				st, err := sc.Next()
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
				n++
				if len(st.SQL) > limit {
					t.Fatalf("statement %d is %d bytes > %d: %.100s", st.Number, len(st.SQL), limit, st.SQL)
				}
				if !utf8.ValidString(st.SQL) {
					t.Fatalf("statement %d cuts a UTF-8 character: %.100q", st.Number, st.SQL)
				}
				if strings.Contains(st.SQL, QuoteIdent(StageTable)) {
					staged++
				}
			}
			if staged == 0 {
				t.Fatal("nothing was rewritten")
			}
			if !strings.HasSuffix(out, ";\n") || strings.Count(out, ";\n") < n {
				t.Errorf("statements are not each on their own line ending \";\\n\"")
			}
			if _, err := PlanParts(strings.NewReader(out), PlanOptions{Limit: 1 << 40, StatementLimit: limit}); err != nil {
				t.Fatalf("rewritten dump does not plan: %v", err)
			}
			got := bsLoadInto(t, filepath.Join(dir, fmt.Sprintf("rewritten-%d.db", limit)), out)
			bsSameDatabases(t, want, got)
			t.Logf("limit %d: %d statements, %d touch the stage table, %d → %d bytes", limit, n, staged, len(dump), len(out))
		})
	}
}

func TestRewriteLargeUnchangedAndErrors(t *testing.T) {
	small := Statement{SQL: `INSERT INTO "t" ("a") VALUES('x');`, Kind: Insert, Table: "t"}
	got, err := RewriteLarge(small, 100)
	if err != nil || len(got) != 1 || got[0] != small.SQL {
		t.Fatalf("small statement changed: %q, %v", got, err)
	}
	big := strings.Repeat("x", 5000)
	many := strings.TrimSuffix(strings.Repeat("123456789,", 1000), ",")
	for _, tc := range []struct {
		name, sql string
		limit     int
		want      string
	}{
		{"view", `CREATE VIEW "v" AS SELECT '` + big + `';`, 1000, "only INSERT"},
		{"insert select", `INSERT INTO "t" SELECT '` + big + `';`, 1000, "can parse"},
		{"numbers only", `INSERT INTO "t" VALUES(` + many + `);`, 1000, "still"},
		{"limit too small", `INSERT INTO "t" ("a") VALUES('` + big + `');`, 100, "no room"},
		{"unterminated", `INSERT INTO "t" ("a") VALUES('` + big + `);`, 1000, "can parse"},
		{"other function", `INSERT INTO "t" ("a") VALUES(upper('` + big + `'));`, 1000, "still"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := Statement{SQL: tc.sql, Number: 7}
			classify(&st)
			_, err := RewriteLarge(st, tc.limit)
			if !errors.Is(err, ErrStatementTooLarge) || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "--to-file") || !strings.Contains(err.Error(), "statement 7") {
				t.Fatalf("err = %v; want ErrStatementTooLarge mentioning %q and the remedy", err, tc.want)
			}
		})
	}
	// The streaming form reports the same error from Read.
	_, err = io.ReadAll(NewRewriter(strings.NewReader(`CREATE VIEW "v" AS SELECT '`+big+`';`), 1000, 0))
	if !errors.Is(err, ErrStatementTooLarge) {
		t.Fatalf("NewRewriter: %v", err)
	}
}

func TestDecodeValues(t *testing.T) {
	sql := `INSERT INTO "t" ("a","b","c","d","e","f","g","h") VALUES('it''s',X'00fF',-42,1.5e-7,NULL,replace(replace('a\r\nb\n','\r',char(13)),'\n',char(10)),char(10,13),replace('x','',char(10))),('r2',  -- c
 X'',+3,'',CAST('y' AS BLOB),"q",[w],0x1F) ON CONFLICT DO NOTHING;`
	vals, ok := parseValues(sql)
	if !ok {
		t.Fatal("not parsed")
	}
	type want struct {
		text    string
		decoded bool
		blob    bool
		val     string
	}
	wants := []want{
		{`'it''s'`, true, false, "it's"}, {`X'00fF'`, true, true, "\x00\xff"}, {"-42", false, false, ""}, {"1.5e-7", false, false, ""},
		{"NULL", false, false, ""}, {`replace(replace('a\r\nb\n','\r',char(13)),'\n',char(10))`, true, false, "a\r\nb\n"},
		{"char(10,13)", true, false, "\n\r"}, {"replace('x','',char(10))", true, false, "x"},
		{"'r2'", true, false, "r2"}, {"X''", true, true, ""}, {"+3", false, false, ""}, {"''", true, false, ""},
		{"CAST('y' AS BLOB)", false, false, ""}, {`"q"`, false, false, ""}, {"[w]", false, false, ""}, {"0x1F", false, false, ""},
	}
	if len(vals) != len(wants) {
		t.Fatalf("%d values, want %d", len(vals), len(wants))
	}
	for i, w := range wants {
		v := vals[i]
		if got := sql[v.start:v.end]; got != w.text || v.decoded != w.decoded || v.blob != w.blob || v.val != w.val {
			t.Errorf("value %d: %q decoded=%v blob=%v %q; want %q %v %v %q", i, got, v.decoded, v.blob, v.val, w.text, w.decoded, w.blob, w.val)
		}
	}
	for _, bad := range []string{`INSERT INTO t VALUES`, `INSERT INTO t VALUES(1,`, `INSERT INTO t VALUES()`, `INSERT INTO t (a) SELECT 1`, `INSERT INTO t VALUES('x`} {
		if _, ok := parseValues(bad); ok {
			t.Errorf("parseValues(%q) succeeded", bad)
		}
	}
}

// TestSQLiteConcatenation records the SQLite behaviour the design rests on: growing a value in its
// own column with UPDATE … || corrupts numeric-looking text (affinity applies to every partial
// value), while || plus CAST(… AS BLOB) in an untyped column keeps every byte of a BLOB.
func TestSQLiteConcatenation(t *testing.T) {
	db := bsOpenDB(t, filepath.Join(t.TempDir(), "c.db"))
	var q, typ string
	bsMustExec(t, db, `CREATE TABLE t(a INTEGER); INSERT INTO t VALUES('00123'); UPDATE t SET a = a || '45x'`)
	if err := db.QueryRow(`SELECT quote(a), typeof(a) FROM t`).Scan(&q, &typ); err != nil {
		t.Fatal(err)
	}
	if q != "'12345x'" || typ != "text" {
		t.Fatalf("naive UPDATE || gave %s %s; the design note in bigstmt.go is out of date", q, typ)
	}
	bsMustExec(t, db, `CREATE TABLE s(k INTEGER PRIMARY KEY, v); INSERT INTO s VALUES(1, X'00ff0041');
		UPDATE s SET v = CAST(v || X'00c3fe80' AS BLOB) WHERE k=1`)
	if err := db.QueryRow(`SELECT quote(v), typeof(v) FROM s`).Scan(&q, &typ); err != nil {
		t.Fatal(err)
	}
	if q != "X'00FF004100C3FE80'" || typ != "blob" {
		t.Fatalf("blob concatenation gave %s %s", q, typ)
	}
}

func bsMustExec(t testing.TB, db *sql.DB, q string) {
	t.Helper()
	if _, err := db.Exec(q); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
}

// TestRewriteImportsIntoEmulatedD1 runs the rewritten dump through the planner and the emulated D1
// import (which enforces the 100,000-byte statement limit) and compares every value.
func TestRewriteImportsIntoEmulatedD1(t *testing.T) {
	if testing.Short() {
		t.Skip("imports several MB")
	}
	ctx := context.Background()
	dump := bsBigDump(t)
	srv, base := cftest.Start(t, cftest.Options{AccountID: "acct"})
	cf, err := cloudflare.New(cloudflare.Config{AccountID: srv.AccountID(), APIToken: "test-token", BaseURL: base + "/client/v4"})
	if err != nil {
		t.Fatal(err)
	}
	importFile := func(id string, file []byte) error {
		sum := bsMd5hex(file)
		_, err := cf.Import(ctx, id, sum, int64(len(file)), func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(file)), nil })
		return err
	}
	// The dump as exported is refused, as D1 would refuse it.
	orig, err := srv.CreateDatabase("orig")
	if err != nil {
		t.Fatal(err)
	}
	if err := importFile(orig, []byte(dump)); err == nil {
		t.Fatal("emulated D1 accepted a statement over 100,000 bytes; the test proves nothing")
	}

	id, err := srv.CreateDatabase("restored")
	if err != nil {
		t.Fatal(err)
	}
	rewritten := bsRewriteAll(t, dump, D1StatementLimit)
	plans, err := PlanParts(strings.NewReader(rewritten), PlanOptions{Limit: 5_000_000_000})
	if err != nil || len(plans) != 1 {
		t.Fatalf("plan: %d parts, %v", len(plans), err)
	}
	var file bytes.Buffer
	if err := WritePart(&file, strings.NewReader(rewritten), plans[0]); err != nil {
		t.Fatal(err)
	}
	if err := importFile(id, file.Bytes()); err != nil {
		t.Fatalf("import rewritten dump: %v", err)
	}
	want := bsLoadInto(t, filepath.Join(t.TempDir(), "want.db"), dump)
	path := srv.DatabasePath(id)
	if _, err := os.Stat(path); err != nil {
		t.Fatal(err)
	}
	bsSameDatabases(t, want, bsOpenDB(t, path))
}

func FuzzRewrite(f *testing.F) {
	f.Add(`INSERT INTO "t" ("a","b") VALUES('`+strings.Repeat("é'", 200)+`',X'`+strings.Repeat("00ff", 300)+`');`, 300)
	f.Add(`INSERT INTO t VALUES(replace(replace('a\r\n`+strings.Repeat("x", 500)+`','\r',char(13)),'\n',char(10)),-1.5e3,NULL),('b',2);`, 200)
	f.Add(`INSERT INTO t VALUES(char(1114111,55296),'x'`, 10)
	f.Add(`CREATE TABLE t(a); -- `+strings.Repeat("z", 100), 50)
	f.Add(`INSERT INTO VALUES(replACe(replACe('00000000000000000000000000000000000000000000000','00',ChAr(01)),'00',ChAr(10)))00000000000000'0'000`, 134)
	f.Fuzz(func(t *testing.T, sql string, limit int) {
		if !strings.HasSuffix(sql, ";") {
			sql += ";" // as the Scanner delivers every statement
		}
		st := Statement{SQL: sql}
		classify(&st)
		out, err := RewriteLarge(st, limit)
		if err != nil {
			if !errors.Is(err, ErrStatementTooLarge) {
				t.Fatalf("unexpected error %v", err)
			}
			return
		}
		if len(sql) <= limit {
			if len(out) != 1 || out[0] != sql {
				t.Fatalf("small statement changed")
			}
			return
		}
		for _, s := range out {
			if len(s) > limit || !strings.HasSuffix(s, ";") {
				t.Fatalf("bad statement (%d bytes, limit %d): %.80q", len(s), limit, s)
			}
		}
	})
}

func bsMd5hex(b []byte) string {
	h := md5.Sum(b) //nolint:gosec // D1's import etag
	return hex.EncodeToString(h[:])
}

// BenchmarkRewriter measures NewRewriter's throughput on a dump of multi-MB rows (limit 100,000).
func BenchmarkRewriter(b *testing.B) {
	dump := bsBigDump(b)
	b.SetBytes(int64(len(dump)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := io.Copy(io.Discard, NewRewriter(strings.NewReader(dump), D1StatementLimit, 0)); err != nil {
			b.Fatal(err)
		}
	}
}

package sqldump

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"math"
	"math/rand/v2"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

func TestSplitInsertShapes(t *testing.T) {
	for _, tc := range []struct {
		sql  string
		head string // "" = falls back to the text path
		n    int
	}{
		{`INSERT INTO "t" ("a","b") VALUES(1,'x');`, `INSERT INTO "t" ("a","b") VALUES`, 2},
		{"insert into t values (1 , -2.5e3 ,NULL, X'00ff')  ;\n", "insert into t values", 4},
		{`INSERT INTO "a""b" VALUES('it''s');`, `INSERT INTO "a""b" VALUES`, 1},
		{`INSERT INTO t VALUES(1),(2);`, "", 0},                                                // several rows
		{`INSERT INTO t VALUES(1+1);`, "", 0},                                                  // an expression
		{`INSERT INTO t VALUES(abs(1));`, "", 0},                                               // a function
		{`INSERT INTO t VALUES(X'');`, "", 0},                                                  // empty blob: the driver would bind NULL
		{`INSERT INTO t VALUES(X'abc');`, "", 0},                                               // odd hex
		{`INSERT INTO t VALUES(9223372036854775808);`, "", 0},                                  // beyond int64: SQLite makes a REAL
		{`INSERT INTO t VALUES(1.2345678901234567891);`, "", 0},                                // more digits than sqlite3AtoF uses
		{`INSERT INTO t VALUES(1e-320);`, "", 0},                                               // subnormal
		{`INSERT INTO t VALUES(0x10);`, "", 0},                                                 // hex integer
		{`INSERT INTO t VALUES(1_000);`, "", 0},                                                // digit separator
		{`INSERT INTO t VALUES(1); -- c`, "", 0},                                               // comment
		{`INSERT INTO main.t VALUES(1);`, "", 0},                                               // schema-qualified
		{`INSERT INTO t VALUES(CAST(X'6100' AS TEXT));`, "", 0},                                // the NUL rewrite
		{`INSERT OR REPLACE INTO t VALUES(1);`, "", 0},                                         // conflict clause
		{`INSERT INTO t VALUES(TRUE);`, "", 0},                                                 // keyword value
		{`INSERT INTO t VALUES(1) RETURNING *;`, "", 0},                                        // trailing clause
		{`INSERT INTO t VALUES('a` + "\x00" + `b');`, "", 0},                                   // raw NUL in text
		{`INSERT INTO [t] VALUES(1);`, "", 0},                                                  // bracket quoting
		{`INSERT INTO t VALUES(9e999, -9e999, -0.0, .5, 5., 007);`, "INSERT INTO t VALUES", 6}, // ±Inf, -0.0
	} {
		head, args, ok := splitInsert(tc.sql, nil)
		if tc.head == "" {
			if ok {
				t.Errorf("%q: bound (%q %v), want the text path", tc.sql, head, args)
			}
			continue
		}
		if !ok || head != tc.head || len(args) != tc.n {
			t.Errorf("%q: got %q %v %v, want %q with %d values", tc.sql, head, args, ok, tc.head, tc.n)
		}
	}
}

// literalCorpus is every kind of literal a dump holds, with the edge cases of each, including ones
// that must take the text path.
func literalCorpus() []string {
	lits := []string{"NULL", "0", "-0", "1", "-1", "007", "9223372036854775807", "-9223372036854775808",
		"9223372036854775808", "-9223372036854775809", "18446744073709551616", "0.0", "-0.0", "1.0", "1.5", ".5", "5.",
		"1e5", "1E+5", "1e-5", "-2.5e-3", "9e999", "-9e999", "1e308", "1.7976931348623157e308", "2.2250738585072014e-308",
		"2.225073858507201e-308", "5e-324", "1e-400", "0.1", "0.30000000000000004", "3500000000000000.25",
		"3500000000000000.2500001", "123456789012345678", "1234567890123456789.0", "9007199254740993", "9007199254740993.0",
		"''", "'x'", "'it''s'", "''''", "'1e5'", "' 12 '", "'12'", "'0x10'", "'ünï©ødé 🎉'", "'a;b -- c /* d */'",
		"X'00'", "X'deadBEEF'", "x'41'", "X''", "'" + strings.Repeat("long ", 1000) + "'"}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 3000 {
		f := math.Float64frombits(rng.Uint64())
		if math.IsNaN(f) || math.IsInf(f, 0) {
			continue
		}
		switch rng.IntN(5) {
		case 0:
			lits = append(lits, strconv.FormatFloat(f, 'g', -1, 64)) // shortest (JavaScript's String(n))
		case 1:
			lits = append(lits, strconv.FormatFloat(f, 'g', 15, 64)) // SQLite quote()'s first try
		case 2:
			lits = append(lits, strconv.FormatFloat(f, 'e', 17, 64))
		case 3:
			lits = append(lits, strconv.FormatFloat(f, 'e', 20, 64)) // quote()'s second try: the text path
		default:
			lits = append(lits, strconv.FormatFloat(rng.NormFloat64()*1e6, 'f', rng.IntN(12), 64))
		}
		lits = append(lits, strconv.FormatInt(int64(rng.Uint64()), 10))
	}
	return lits
}

// TestInsertCacheExact loads the same dump with and without the prepared-statement cache into
// columns of every affinity and requires every stored value to be identical: storage class,
// bits of REALs (sign of zero included), bytes of TEXT and BLOB.
func TestInsertCacheExact(t *testing.T) {
	lits := literalCorpus()
	var dump bytes.Buffer
	dump.WriteString("CREATE TABLE t(n INTEGER, i INT, r REAL, x TEXT, b BLOB, num NUMERIC, a ANY, none);\n")
	for k, l := range lits {
		// the same literal in every column, and in a column list or not
		if k%2 == 0 {
			fmt.Fprintf(&dump, "INSERT INTO \"t\" (\"n\",\"i\",\"r\",\"x\",\"b\",\"num\",\"a\",\"none\") VALUES(%s,%s,%s,%s,%s,%s,%s,%s);\n", l, l, l, l, l, l, l, l)
		} else {
			fmt.Fprintf(&dump, "INSERT INTO t VALUES (%s, %s, %s, %s, %s, %s, %s, %s);\n", l, l, l, l, l, l, l, l)
		}
	}
	load := func(text bool) ([][]any, LoadStats) {
		noInsertCache = text
		defer func() { noInsertCache = false }()
		path := filepath.Join(t.TempDir(), "t.db")
		db, err := OpenFile(path)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		conn, err := db.Conn(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		st, err := Load(context.Background(), conn, bytes.NewReader(dump.Bytes()), LoadOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return readAll(t, conn), st
	}
	want, textStats := load(true)
	got, st := load(false)
	if textStats.Bound != 0 || st.Rows != int64(len(lits)) {
		t.Fatalf("stats: text %+v, cached %+v", textStats, st)
	}
	if st.Bound < st.Rows*8/10 || st.Bound == st.Rows {
		t.Fatalf("%d of %d rows bound: the corpus must exercise both paths", st.Bound, st.Rows)
	}
	if len(got) != len(want) {
		t.Fatalf("%d rows, want %d", len(got), len(want))
	}
	for i := range want {
		for j := range want[i] {
			if !sameValue(got[i][j], want[i][j]) {
				t.Errorf("literal %.40q column %d: cached %T %#v, text %T %#v", lits[i], j, got[i][j], got[i][j], want[i][j], want[i][j])
			}
		}
	}
}

func readAll(t *testing.T, conn *sql.Conn) [][]any {
	t.Helper()
	rows, err := conn.QueryContext(context.Background(), "SELECT n, i, r, x, b, num, a, none FROM t ORDER BY rowid")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out [][]any
	for rows.Next() {
		v := make([]any, 8)
		p := make([]any, 8)
		for i := range v {
			p[i] = &v[i]
		}
		if err := rows.Scan(p...); err != nil {
			t.Fatal(err)
		}
		out = append(out, v)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// sameValue compares storage class and exact value (modernc returns int64, float64, string, []byte
// or nil by storage class).
func sameValue(a, b any) bool {
	switch x := a.(type) {
	case float64:
		y, ok := b.(float64)
		return ok && math.Float64bits(x) == math.Float64bits(y)
	case []byte:
		y, ok := b.([]byte)
		return ok && bytes.Equal(x, y)
	default:
		return fmt.Sprintf("%T", a) == fmt.Sprintf("%T", b) && a == b
	}
}

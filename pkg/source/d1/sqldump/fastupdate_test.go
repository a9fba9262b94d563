package sqldump

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"testing"
)

func TestSplitUpdateShapes(t *testing.T) {
	for _, tc := range []struct {
		sql, tmpl string // tmpl "" = runs as text
		n         int
	}{
		{`UPDATE "users" SET "external_id" = 374397263748345693 WHERE "id" = CAST(X'6162' AS TEXT);`,
			`UPDATE "users" SET "external_id" = ? WHERE "id" = CAST(? AS TEXT)`, 2},
		{"update t set a = -1.5, \"b\" = 'x''y', c = NULL where k = 1 and j = X'00';\n",
			"update t SET a = ?, \"b\" = ?, c = ? WHERE k = ? AND j = ?", 5},
		{`UPDATE sqlite_sequence SET seq = 9007199254740993 WHERE name = 'a';`, `UPDATE sqlite_sequence SET seq = ? WHERE name = ?`, 2},
		{`UPDATE t SET a = 1+1 WHERE k = 1;`, "", 0},                  // an expression
		{`UPDATE t SET a = 1 WHERE k > 1;`, "", 0},                    // not an equality
		{`UPDATE t SET a = 1 WHERE k = 1 OR j = 2;`, "", 0},           // OR
		{`UPDATE t SET a = 1;`, "", 0},                                // no WHERE
		{`UPDATE t SET a = 1 WHERE k = 1 RETURNING *;`, "", 0},        // another clause
		{`UPDATE OR REPLACE t SET a = 1 WHERE k = 1;`, "", 0},         // a conflict clause
		{`UPDATE t SET a = CAST(X'' AS TEXT) WHERE k = 1;`, "", 0},    // empty blob: the driver would bind NULL
		{`UPDATE t SET a = CAST(X'61' AS BLOB) WHERE k = 1;`, "", 0},  // another type
		{`UPDATE t SET a = CAST('a' AS TEXT) WHERE k = 1;`, "", 0},    // CAST of text
		{`UPDATE t SET a = 1 WHERE k = 1; -- c`, "", 0},               // a comment
		{`UPDATE t SET a = 1 WHERE k = 1 /* c */;`, "", 0},            // a comment
		{`UPDATE t SET a = 'x` + "\x00" + `' WHERE k = 1;`, "", 0},    // NUL in a literal
		{`UPDATE t SET a = 99999999999999999999 WHERE k = 1;`, "", 0}, // beyond int64
		{`UPDATE main.t SET a = 1 WHERE k = 1;`, "", 0},               // a schema name
		{`UPDATE t SET a = 1 WHERE k = 1 AND;`, "", 0},                // broken
	} {
		tmpl, args, ok := splitUpdate(tc.sql, nil)
		if tc.tmpl == "" {
			if ok {
				t.Errorf("%q: bound as %q", tc.sql, tmpl)
			}
			continue
		}
		if !ok || tmpl != tc.tmpl || len(args) != tc.n {
			t.Errorf("%q: got %q %d %v, want %q %d", tc.sql, tmpl, len(args), ok, tc.tmpl, tc.n)
		}
	}
}

// TestUpdateBoundExact runs the same fixup-style UPDATEs (values from the literal corpus and
// CAST(X'…' AS TEXT) text holding NUL or invalid UTF-8, keys an integer or CAST text in an untyped
// column, where the CAST's TEXT affinity makes an integer key match too) as text and bound, and
// requires identical stored values.
func TestUpdateBoundExact(t *testing.T) {
	lits := literalCorpus()
	lits = lits[:min(len(lits), 400)] // each text-path UPDATE scans the table (k has no index)
	rng := rand.New(rand.NewPCG(3, 4))
	var dump bytes.Buffer
	dump.WriteString("CREATE TABLE t(k, n INTEGER, i INT, r REAL, x TEXT, b BLOB, num NUMERIC, a ANY, none);\n")
	for j := range lits {
		fmt.Fprintf(&dump, "INSERT INTO t(k) VALUES(%d);\nINSERT INTO t(k) VALUES('%d');\n", j, j)
	}
	cols := []string{"n", "i", "r", "x", "b", "num", "a", "none"}
	for j, l := range lits {
		key := fmt.Sprint(j)
		if j%2 == 1 {
			key = fmt.Sprintf("CAST(X'%X' AS TEXT)", key)
		}
		var set []string
		for c, col := range cols {
			v := l
			if (j+c)%5 == 0 {
				b := make([]byte, 1+rng.IntN(6))
				for i := range b {
					b[i] = []byte{0, 0xff, 'a', 0xc3, '\''}[rng.IntN(5)]
				}
				v = fmt.Sprintf("CAST(X'%x' AS TEXT)", b)
			}
			set = append(set, fmt.Sprintf("%q = %s", col, v))
		}
		fmt.Fprintf(&dump, "UPDATE \"t\" SET %s WHERE \"k\" = %s;\n", strings.Join(set, ", "), key)
	}
	load := func(text bool) ([][]any, LoadStats) {
		noInsertCache = text
		defer func() { noInsertCache = false }()
		_, conn := openDB(t, filepath.Join(t.TempDir(), "t.db"))
		st, err := Load(context.Background(), conn, bytes.NewReader(dump.Bytes()), LoadOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return readAll(t, conn), st
	}
	want, _ := load(true)
	got, st := load(false)
	if updates := st.Bound - st.Rows; updates < int64(len(lits))*8/10 || updates == int64(len(lits)) {
		t.Fatalf("%d of %d UPDATEs bound: the corpus must exercise both paths", updates, len(lits))
	}
	if len(got) != len(want) {
		t.Fatalf("%d rows, want %d", len(got), len(want))
	}
	for i := range want {
		for j := range want[i] {
			if !sameValue(got[i][j], want[i][j]) {
				t.Errorf("row %d column %s: bound %T %#v, text %T %#v", i, cols[j], got[i][j], got[i][j], want[i][j], want[i][j])
			}
		}
	}
}

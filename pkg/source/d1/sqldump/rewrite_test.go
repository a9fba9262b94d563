package sqldump

import (
	"strings"
	"testing"
)

func TestRewriteNUL(t *testing.T) {
	in := "INSERT INTO \"t\" (\"a\",\"b\") VALUES('x\x00y','it''s',replace('p\x00\\nq','\\n',char(10)));"
	want := "INSERT INTO \"t\" (\"a\",\"b\") VALUES(CAST(X'780079' AS TEXT),'it''s',replace(CAST(X'70005c6e71' AS TEXT),'\\n',char(10)));"
	if got := RewriteNUL(in); got != want {
		t.Fatalf("RewriteNUL =\n%s\nwant\n%s", got, want)
	}
	if s := "INSERT INTO t VALUES('plain');"; RewriteNUL(s) != s {
		t.Fatal("statement without NUL changed")
	}
}

func TestRewriteNonFinite(t *testing.T) {
	in := `INSERT INTO "Infinity" ("NaN") VALUES(Infinity,-Infinity,'Infinity',NaN,1);`
	want := `INSERT INTO "Infinity" ("NaN") VALUES(9e999,-9e999,'Infinity',NULL,1);`
	if got := RewriteNonFinite(in); got != want {
		t.Fatalf("RewriteNonFinite =\n%s\nwant\n%s", got, want)
	}
}

func TestFormatValueNUL(t *testing.T) {
	if got := FormatValue("a\x00b"); got != "CAST(X'610062' AS TEXT)" {
		t.Fatalf("FormatValue = %s", got)
	}
}

func TestRewriteLargeCastText(t *testing.T) {
	v := strings.Repeat("\x00é'\n", 30000)
	st := Statement{SQL: "INSERT INTO \"t\" (\"a\") VALUES(" + FormatValue(v) + ");", Kind: Insert, Table: "t", Number: 1}
	out, err := RewriteLarge(st, D1StatementLimit)
	if err != nil {
		t.Fatal(err)
	}
	if len(out) < 4 {
		t.Fatalf("not split: %d statements", len(out))
	}
	for _, s := range out {
		if len(s) > D1StatementLimit || strings.IndexByte(s, 0) >= 0 {
			t.Fatalf("statement of %d bytes (NUL: %v)", len(s), strings.IndexByte(s, 0) >= 0)
		}
	}
}

func TestFoldName(t *testing.T) {
	if FoldName("OrDers") != "orders" || FoldName("ÅB") != "Åb" || FoldName("Åb") == FoldName("åb") {
		t.Fatal("FoldName must fold ASCII letters only, as SQLite does")
	}
}

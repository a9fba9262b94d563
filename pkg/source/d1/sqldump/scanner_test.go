package sqldump

import (
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

func scanAll(t testing.TB, in string, max int, oneByte bool) ([]Statement, error) {
	t.Helper()
	var r io.Reader = strings.NewReader(in)
	if oneByte {
		r = iotest.OneByteReader(r)
	}
	sc := NewScanner(r, max)
	var out []Statement
	for {
		st, err := sc.Next()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		out = append(out, st)
	}
}

func TestScanner(t *testing.T) {
	trigger := "CREATE TRIGGER trg AFTER INSERT ON \"orders\" FOR EACH ROW BEGIN\n" +
		"  UPDATE stock SET note = 'a;b END; x' WHERE id = NEW.item;\n" +
		"  INSERT INTO log(msg) VALUES (CASE WHEN NEW.qty > 1 THEN 'many;' ELSE 'one' END);\n" +
		"  SELECT CASE NEW.qty WHEN 0 THEN RAISE(ABORT, 'zero;') END;\n" +
		"END;"
	big := "INSERT INTO \"b\" (\"v\") VALUES('" + strings.Repeat("xy;'' ", 2<<20/6) + "');"
	type want struct {
		sql   string
		kind  Kind
		table string
		name  string
	}
	tests := []struct {
		name string
		in   string
		want []want
	}{
		{"d1 prologue and no trailing newline",
			"PRAGMA defer_foreign_keys=TRUE;\nCREATE TABLE t(a);\nINSERT INTO \"t\" (\"a\") VALUES(1);",
			[]want{{"PRAGMA defer_foreign_keys=TRUE;", Pragma, "", ""},
				{"CREATE TABLE t(a);", CreateTable, "t", "t"},
				{`INSERT INTO "t" ("a") VALUES(1);`, Insert, "t", ""}}},
		{"string with escapes, semicolon and newline",
			"INSERT INTO t VALUES('it''s; a\nnew;line');SELECT 1;",
			[]want{{"INSERT INTO t VALUES('it''s; a\nnew;line');", Insert, "t", ""}, {"SELECT 1;", Other, "", ""}}},
		{"quoted identifiers",
			"CREATE TABLE \"we;ird\"\"name\"([a;b], `c;``d`);INSERT INTO [x;y] VALUES(1);INSERT INTO `q``t` VALUES(2);",
			[]want{{"CREATE TABLE \"we;ird\"\"name\"([a;b], `c;``d`);", CreateTable, "we;ird\"name", "we;ird\"name"},
				{"INSERT INTO [x;y] VALUES(1);", Insert, "x;y", ""},
				{"INSERT INTO `q``t` VALUES(2);", Insert, "q`t", ""}}},
		{"comments",
			"-- lead; comment\nCREATE TABLE a(x /* ; */ INT); /* c; */ INSERT INTO a VALUES(1) -- tail;\n;",
			[]want{{"-- lead; comment\nCREATE TABLE a(x /* ; */ INT);", CreateTable, "a", "a"},
				{"/* c; */ INSERT INTO a VALUES(1) -- tail;\n;", Insert, "a", ""}}},
		{"blob", "INSERT INTO \"t\" (\"b\") VALUES(X'3b27');", []want{{"INSERT INTO \"t\" (\"b\") VALUES(X'3b27');", Insert, "t", ""}}},
		{"trigger with CASE END and strings with END;", trigger + "\nCREATE INDEX i ON t(a);",
			[]want{{trigger, CreateTrigger, "orders", "trg"}, {"CREATE INDEX i ON t(a);", CreateIndex, "t", "i"}}},
		{"temp trigger, update of columns", "CREATE TEMP TRIGGER IF NOT EXISTS main.tg BEFORE UPDATE OF a, b ON main.t BEGIN SELECT 1; END;",
			[]want{{"CREATE TEMP TRIGGER IF NOT EXISTS main.tg BEFORE UPDATE OF a, b ON main.t BEGIN SELECT 1; END;", CreateTrigger, "t", "tg"}}},
		{"unicode", "INSERT INTO \"täble\" (\"ключ\") VALUES('日本語; ✓ 🎉');",
			[]want{{"INSERT INTO \"täble\" (\"ключ\") VALUES('日本語; ✓ 🎉');", Insert, "täble", ""}}},
		{"missing final semicolon", "CREATE VIEW v AS SELECT 1;\nSELECT 2  \n",
			[]want{{"CREATE VIEW v AS SELECT 1;", CreateView, "", "v"}, {"SELECT 2;", Other, "", ""}}},
		{"trigger without final semicolon", "CREATE TRIGGER x AFTER DELETE ON t BEGIN DELETE FROM u; END",
			[]want{{"CREATE TRIGGER x AFTER DELETE ON t BEGIN DELETE FROM u; END;", CreateTrigger, "t", "x"}}},
		{"empty statements and trailing comment", ";;\n BEGIN TRANSACTION; ;COMMIT;\n-- bye",
			[]want{{"BEGIN TRANSACTION;", Transaction, "", ""}, {"COMMIT;", Transaction, "", ""}}},
		{"d1 quoted create and sequence", "CREATE TABLE IF NOT EXISTS \"My Table\"(id INTEGER PRIMARY KEY AUTOINCREMENT);DELETE FROM sqlite_sequence;INSERT INTO \"sqlite_sequence\" (\"name\",\"seq\") VALUES('My Table',3);",
			[]want{{"CREATE TABLE IF NOT EXISTS \"My Table\"(id INTEGER PRIMARY KEY AUTOINCREMENT);", CreateTable, "My Table", "My Table"},
				{"DELETE FROM sqlite_sequence;", Delete, "sqlite_sequence", ""},
				{"INSERT INTO \"sqlite_sequence\" (\"name\",\"seq\") VALUES('My Table',3);", Insert, "sqlite_sequence", ""}}},
		{"virtual table, unique index, replace", "CREATE VIRTUAL TABLE docs USING fts5(body, content='');CREATE UNIQUE INDEX IF NOT EXISTS u ON \"t\"(a);INSERT OR REPLACE INTO t VALUES(1);REPLACE INTO t2 VALUES(2);",
			[]want{{"CREATE VIRTUAL TABLE docs USING fts5(body, content='');", CreateVirtualTable, "docs", "docs"},
				{"CREATE UNIQUE INDEX IF NOT EXISTS u ON \"t\"(a);", CreateIndex, "t", "u"},
				{"INSERT OR REPLACE INTO t VALUES(1);", Insert, "t", ""},
				{"REPLACE INTO t2 VALUES(2);", Insert, "t2", ""}}},
		{"division and minus are not comments", "SELECT 4/2-1 -x;", []want{{"SELECT 4/2-1 -x;", Other, "", ""}}},
		{"2 MB statement", big + "\nSELECT 1;", []want{{big, Insert, "b", ""}, {"SELECT 1;", Other, "", ""}}},
	}
	for _, tc := range tests {
		for _, oneByte := range []bool{false, true} {
			if oneByte && len(tc.in) > 1<<20 {
				continue
			}
			got, err := scanAll(t, tc.in, 4<<20, oneByte)
			if err != nil {
				t.Fatalf("%s: %v", tc.name, err)
			}
			if len(got) != len(tc.want) {
				t.Fatalf("%s (oneByte=%v): got %d statements %+v, want %d", tc.name, oneByte, len(got), got, len(tc.want))
			}
			for i, w := range tc.want {
				g := got[i]
				if g.SQL != w.sql || g.Kind != w.kind || g.Table != w.table || g.Name != w.name {
					t.Errorf("%s #%d: got {%.80q %v %q %q}, want {%.80q %v %q %q}", tc.name, i, g.SQL, g.Kind, g.Table, g.Name, w.sql, w.kind, w.table, w.name)
				}
				if g.Number != int64(i+1) {
					t.Errorf("%s #%d: number %d", tc.name, i, g.Number)
				}
			}
		}
	}
}

func TestScannerOffsets(t *testing.T) {
	in := "  SELECT 1;\n\nSELECT 'x;y';SELECT 3"
	got, err := scanAll(t, in, 0, true)
	if err != nil {
		t.Fatal(err)
	}
	var prev int64
	for _, st := range got {
		if st.Offset != prev {
			t.Errorf("%q offset %d, want %d", st.SQL, st.Offset, prev)
		}
		if seg := in[st.Offset:st.End]; strings.TrimSpace(seg) != strings.TrimSuffix(st.SQL, ";") && strings.TrimSpace(seg) != st.SQL {
			t.Errorf("segment %q does not match %q", seg, st.SQL)
		}
		prev = st.End
	}
	if prev != int64(len(in)) {
		t.Errorf("last end %d, want %d", prev, len(in))
	}
}

func TestScannerErrors(t *testing.T) {
	_, err := scanAll(t, "INSERT INTO t VALUES('"+strings.Repeat("a", 5000)+"');", 1000, false)
	if !errors.Is(err, ErrStatementTooLong) || !strings.Contains(err.Error(), "1000") {
		t.Errorf("too long: %v", err)
	}
	for _, in := range []string{"SELECT 'abc", "CREATE TRIGGER t AFTER INSERT ON x BEGIN SELECT 1;", "SELECT [abc"} {
		if _, err := scanAll(t, in, 0, false); !errors.Is(err, ErrIncomplete) {
			t.Errorf("%q: got %v, want ErrIncomplete", in, err)
		}
	}
	// an unterminated block comment at the end is fine for SQLite too
	got, err := scanAll(t, "SELECT 1 /* open", 0, false)
	if err != nil || len(got) != 1 {
		t.Errorf("open comment: %v %+v", err, got)
	}
}

// FuzzScanner: never panics; statements appear in the input in order, and what lies between them
// is only whitespace and ';' (comments stay attached to the following statement), with a
// comment-only tail allowed.
func FuzzScanner(f *testing.F) {
	for _, s := range []string{
		"PRAGMA defer_foreign_keys=TRUE;\nCREATE TABLE t(a);\nINSERT INTO \"t\" (\"a\") VALUES('x;''y');",
		"CREATE TRIGGER a AFTER INSERT ON t BEGIN SELECT CASE WHEN 1 THEN 'END;' END; END;SELECT 1",
		"-- c\n/* d; */ SELECT [a;b], `c;d`, \"e;f\" ; ;; -- tail",
		"INSERT INTO t VALUES(X'00ff');SELECT 2/3-1",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		got, err := scanAll(t, in, 1<<16, len(in)%2 == 0)
		if err != nil {
			return
		}
		var prev int64
		for _, st := range got {
			if st.Offset != prev || st.End < st.Offset || st.End > int64(len(in)) {
				t.Fatalf("offsets %d..%d after %d for %q in %q", st.Offset, st.End, prev, st.SQL, in)
			}
			seg := in[st.Offset:st.End]
			body := st.SQL
			if !strings.HasSuffix(seg, body) {
				body = strings.TrimSuffix(strings.TrimSuffix(body, ";"), "\n") // the scanner added the ';'
			}
			if !strings.HasSuffix(strings.TrimRight(seg, " \t\r\n\f\v"), strings.TrimRight(body, " \t\r\n\f\v")) {
				t.Fatalf("segment %q does not end with statement %q (input %q)", seg, st.SQL, in)
			}
			gap := strings.Trim(seg[:len(strings.TrimRight(seg, " \t\r\n\f\v"))-len(strings.TrimRight(body, " \t\r\n\f\v"))], " \t\r\n\f\v;")
			if gap != "" && !strings.HasPrefix(gap, "--") && !strings.HasPrefix(gap, "/*") {
				t.Fatalf("non-blank gap %q before %q in %q", gap, st.SQL, in)
			}
			prev = st.End
		}
		if tail := strings.Trim(in[prev:], " \t\r\n\f\v;"); tail != "" && !strings.HasPrefix(tail, "--") && !strings.HasPrefix(tail, "/*") {
			t.Fatalf("unscanned tail %q of %q", tail, in)
		}
	})
}

package sqldump

import (
	"context"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestVirtualTableInfo(t *testing.T) {
	tests := []struct {
		sql, module, content string
		contentless          bool
	}{
		{"CREATE VIRTUAL TABLE docs_fts USING fts5(body, content='docs', content_rowid='id')", "fts5", "docs", false},
		{`CREATE VIRTUAL TABLE IF NOT EXISTS "x" USING FTS5(a, b UNINDEXED, content="", tokenize='porter unicode61')`, "fts5", "", true},
		{"CREATE VIRTUAL TABLE n USING fts5(title, body, tokenize = 'trigram')", "fts5", "", false},
		{"CREATE VIRTUAL TABLE f4 USING fts4(content=\"src\", a)", "fts4", "src", false},
		{"CREATE VIRTUAL TABLE r USING rtree(id, minX, maxX)", "rtree", "", false},
		{"CREATE VIRTUAL TABLE c USING fts5(\"content\", x, prefix='2 3')", "fts5", "", false}, // a column named content
		{"CREATE VIRTUAL TABLE e USING csv", "csv", "", false},
	}
	for _, tc := range tests {
		m, c, cl := VirtualTableInfo(tc.sql)
		if m != tc.module || c != tc.content || cl != tc.contentless {
			t.Errorf("%s: got %q %q %v", tc.sql, m, c, cl)
		}
	}
}

func TestShadowTablesFTS4(t *testing.T) { // modernc's SQLite has no FTS3/4, so by name only
	got := ShadowTables(map[string]string{"Old": "CREATE VIRTUAL TABLE Old USING fts4(body)", "x": "CREATE VIRTUAL TABLE x USING mystery(a)"},
		[]string{"Old", "old_content", "Old_segments", "old_segdir", "old_docsize", "old_stat", "old_other", "x_data", "docs"})
	if want := []string{"old_content", "Old_segments", "old_segdir", "old_docsize", "old_stat"}; !reflect.DeepEqual(got, want) {
		t.Errorf("got %q want %q", got, want)
	}
}

func TestReferencedTables(t *testing.T) {
	got := ReferencedTables(`CREATE TABLE IF NOT EXISTS "child"(id INTEGER PRIMARY KEY, p REFERENCES parent(id), q INT REFERENCES "Other Table", r REFERENCES child(id), FOREIGN KEY (q, r) REFERENCES main.parent(a, b))`)
	if want := []string{"parent", "Other Table"}; !reflect.DeepEqual(got, want) {
		t.Errorf("got %q want %q", got, want)
	}
}

// TestVirtualTablesRestore follows cfbackup's FTS plan on a real database: export only the real
// tables (D1 refuses virtual ones), then recreate the virtual tables, rebuild external-content
// indexes and re-insert regular FTS rows rendered with FormatInsert.
func TestVirtualTablesRestore(t *testing.T) {
	ctx := context.Background()
	_, src := openDB(t, filepath.Join(t.TempDir(), "src.db"))
	schema := `
CREATE TABLE docs(id INTEGER PRIMARY KEY, body TEXT);
CREATE VIRTUAL TABLE docs_fts USING fts5(body, content='docs', content_rowid='id');
CREATE VIRTUAL TABLE notes USING fts5(title, body);
CREATE VIRTUAL TABLE idx_only USING fts5(body, content='');
CREATE VIRTUAL TABLE boxes USING rtree(id, minX, maxX);
CREATE TABLE notes_extra(id INTEGER PRIMARY KEY);
INSERT INTO docs(body) VALUES ('the quick brown fox'), ('lazy dogs; sleep'), ('it''s quick');
INSERT INTO docs_fts(docs_fts) VALUES('rebuild');
INSERT INTO notes(title, body) VALUES ('a', 'quick note'), ('b', 'multi
line quick');
`
	if _, err := src.ExecContext(ctx, schema); err != nil {
		t.Fatal(err)
	}
	vtabs := map[string]string{}
	var all []string
	rows, err := src.QueryContext(ctx, "SELECT name, sql FROM sqlite_schema WHERE type='table' ORDER BY rowid")
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var n, s string
		rows.Scan(&n, &s)
		all = append(all, n)
		if strings.HasPrefix(s, "CREATE VIRTUAL TABLE") {
			vtabs[n] = s
		}
	}
	rows.Close()
	shadows := ShadowTables(vtabs, all)
	want := []string{"docs_fts_data", "docs_fts_idx", "docs_fts_docsize", "docs_fts_config", "notes_data", "notes_idx",
		"notes_content", "notes_docsize", "notes_config", "idx_only_data", "idx_only_idx", "idx_only_docsize", "idx_only_config",
		"boxes_node", "boxes_rowid", "boxes_parent"}
	if !sameSet(shadows, want) {
		t.Fatalf("shadow tables %q\nwant %q", shadows, want)
	}
	if _, err := d1DumpTables(t, src, all); err == nil {
		t.Fatal("dump with virtual tables should fail like D1")
	}
	skip := map[string]bool{}
	for _, s := range append(shadows, keys(vtabs)...) {
		skip[s] = true
	}
	var real []string
	for _, n := range all {
		if !skip[n] {
			real = append(real, n)
		}
	}
	if !reflect.DeepEqual(real, []string{"docs", "notes_extra"}) {
		t.Fatalf("real tables %q", real)
	}
	dump, err := d1DumpTables(t, src, real)
	if err != nil {
		t.Fatal(err)
	}
	// restore: real tables, then each virtual table by its kind
	_, dst := openDB(t, filepath.Join(t.TempDir(), "dst.db"))
	if _, err := Load(ctx, dst, strings.NewReader(dump), LoadOptions{}); err != nil {
		t.Fatal(err)
	}
	var restore strings.Builder
	for _, name := range []string{"docs_fts", "notes", "idx_only", "boxes"} {
		restore.WriteString(vtabs[name] + ";\n")
		module, content, contentless := VirtualTableInfo(vtabs[name])
		switch {
		case content != "":
			restore.WriteString(FormatInsert(name, []string{name}, []any{"rebuild"}) + "\n")
		case module == "fts5" && !contentless:
			rows, err := src.QueryContext(ctx, "SELECT rowid, title, body FROM notes ORDER BY rowid")
			if err != nil {
				t.Fatal(err)
			}
			for rows.Next() {
				var id int64
				var title, body string
				rows.Scan(&id, &title, &body)
				restore.WriteString(FormatInsert(name, []string{"rowid", "title", "body"}, []any{id, title, body}) + "\n")
			}
			rows.Close()
		}
	}
	if _, err := Load(ctx, dst, strings.NewReader(restore.String()), LoadOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{
		"SELECT group_concat(rowid) FROM docs_fts WHERE docs_fts MATCH 'quick'",
		"SELECT group_concat(rowid || title) FROM notes WHERE notes MATCH 'quick'",
		"SELECT group_concat(rowid) FROM docs_fts WHERE docs_fts MATCH 'dogs'",
	} {
		var a, b string
		if err := src.QueryRowContext(ctx, q).Scan(&a); err != nil {
			t.Fatal(err)
		}
		if err := dst.QueryRowContext(ctx, q).Scan(&b); err != nil {
			t.Fatal(err)
		}
		if a != b || a == "" {
			t.Errorf("%s: src %q dst %q", q, a, b)
		}
	}
	if err := Check(ctx, dst); err != nil {
		t.Error(err)
	}
}

func keys(m map[string]string) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

func sameSet(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	m := map[string]int{}
	for _, x := range a {
		m[x]++
	}
	for _, x := range b {
		m[x]--
	}
	for _, v := range m {
		if v != 0 {
			return false
		}
	}
	return true
}

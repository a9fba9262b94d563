package d1

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/cfbackup/cfbackup/pkg/archive"
	"github.com/cfbackup/cfbackup/pkg/manifest"
)

func item(kind, table string) manifest.Item {
	return manifest.Item{Component: Component, Source: "db1", Kind: kind, Table: table, ItemRef: archive.ItemRef{Name: ItemName("db1", kind, table)}}
}

func names(items []manifest.Item) []string {
	var out []string
	for _, it := range items {
		out = append(out, it.Kind+":"+it.Table)
	}
	return out
}

func TestSelectReplayOrder(t *testing.T) {
	cat := &manifest.Catalogue{Items: []manifest.Item{
		item("table", "users"), item("virtual", "users_fts"), item("table", "events"),
		item("schema", ""), item("fixup", "users"), item("rows", "events"),
		{Component: Component, Source: "other", Kind: "table", Table: "x"},
		{Component: "r2", Source: "db1", Kind: "object", Table: "y"},
	}}
	sel, err := Select(cat, "db1", nil)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"table:users", "table:events", "rows:events", "fixup:users", "schema:", "virtual:users_fts"}
	if got := names(sel.Items); !reflect.DeepEqual(got, want) {
		t.Fatalf("order = %v, want %v", got, want)
	}
	sel, err = Select(cat, "db1", []string{"events"})
	if err != nil {
		t.Fatal(err)
	}
	if got := names(sel.Items); !reflect.DeepEqual(got, []string{"table:events", "rows:events", "schema:"}) {
		t.Fatalf("filtered = %v", got)
	}
	if _, err := Select(cat, "db1", []string{"events", "ghost"}); !errors.Is(err, ErrNotInSnapshot) || !strings.Contains(err.Error(), "ghost") {
		t.Fatalf("missing table: %v", err)
	}
}

func TestItemNameStaysOnePathElement(t *testing.T) {
	for _, tc := range []struct{ kind, table, want string }{
		{"table", "users", "d1/u/tables/users.sql"},
		{"table", "a/b", "d1/u/tables/a%2Fb.sql"},
		{"table", "..", "d1/u/tables/%2E%2E.sql"},
		{"table", "100%", "d1/u/tables/100%25.sql"},
		{"virtual", "fts", "d1/u/virtual/fts.sql"},
		{"fixup", "t", "d1/u/fixups/t.sql"},
		{"schema", "", "d1/u/schema.sql"},
	} {
		if got := ItemName("u", tc.kind, tc.table); got != tc.want {
			t.Errorf("ItemName(%q,%q) = %q, want %q", tc.kind, tc.table, got, tc.want)
		}
		if err := archive.ValidName(ItemName("u", tc.kind, tc.table)); err != nil {
			t.Errorf("%s: %v", tc.table, err)
		}
	}
}

func TestDropStatementsOrder(t *testing.T) {
	live := []schemaObject{
		{Type: "table", Name: "users", SQL: "CREATE TABLE users(id)"},
		{Type: "table", Name: "events", SQL: "CREATE TABLE events(id, user_id REFERENCES users(id))"},
		{Type: "index", Name: "ix", Table: "events", SQL: "CREATE INDEX ix ON events(user_id)"},
		{Type: "view", Name: "v", Table: "v", SQL: "CREATE VIEW v AS SELECT 1"},
		{Type: "trigger", Name: "tr", Table: "users", SQL: "CREATE TRIGGER tr …"},
		{Type: "table", Name: "fts", SQL: "CREATE VIRTUAL TABLE fts USING fts5(a, content='users')"},
		{Type: "table", Name: "fts_data", SQL: "CREATE TABLE 'fts_data'(id INTEGER PRIMARY KEY, block BLOB)"},
		{Type: "table", Name: "fts_idx", SQL: "CREATE TABLE 'fts_idx'(segid, term, pgno)"},
		{Type: "table", Name: "fts_docsize", SQL: "CREATE TABLE 'fts_docsize'(id INTEGER PRIMARY KEY, sz BLOB)"},
		{Type: "table", Name: "fts_config", SQL: "CREATE TABLE 'fts_config'(k PRIMARY KEY, v)"},
	}
	got := strings.Split(strings.TrimSpace(dropStatements(live, nil)), "\n")
	want := []string{
		`DROP VIEW IF EXISTS "v";`,
		`DROP TRIGGER IF EXISTS "tr";`,
		`DROP TABLE IF EXISTS "fts";`,
		`DROP TABLE IF EXISTS "events";`,
		`DROP TABLE IF EXISTS "users";`,
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("drops =\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	got = strings.Split(strings.TrimSpace(dropStatements(live, map[string]bool{"events": true})), "\n")
	if !reflect.DeepEqual(got, []string{`DROP TABLE IF EXISTS "events";`}) {
		t.Fatalf("filtered drops = %v", got)
	}
}

func TestSelectRefusesUnknownItemKinds(t *testing.T) {
	cat := &manifest.Catalogue{Items: []manifest.Item{item("table", "users"), item("hologram", "users")}}
	if _, err := Select(cat, "db1", nil); err == nil || !strings.Contains(err.Error(), "upgrade cfbackup") {
		t.Fatalf("unknown kind: %v", err)
	}
}

func TestParentsFirst(t *testing.T) {
	tb := func(name string, refs ...string) manifest.Item {
		it := item("table", name)
		it.References = refs
		return it
	}
	in := []manifest.Item{tb("c", "b"), tb("b", "a"), tb("x"), tb("a"), tb("c"), tb("p", "q"), tb("q", "p"), tb("self", "self"), tb("lines", "ORDERS"), tb("Orders")}
	got := names(parentsFirst(in))
	want := []string{"table:a", "table:b", "table:c", "table:c", "table:x", "table:q", "table:p", "table:self", "table:Orders", "table:lines"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("order = %v, want %v", got, want)
	}
}

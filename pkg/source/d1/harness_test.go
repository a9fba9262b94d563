package d1

import (
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/cfbackup/cfbackup/internal/cftest"
	"github.com/cfbackup/cfbackup/pkg/archive"
	"github.com/cfbackup/cfbackup/pkg/cloudflare"
	"github.com/cfbackup/cfbackup/pkg/manifest"
	"github.com/cfbackup/cfbackup/pkg/source/d1/sqldump"
)

// memItems keeps items in memory: the archive format is tested on its own, these tests are about
// what D1 SQL goes in and comes out.
type memItems struct {
	mu    sync.Mutex
	items map[string][]byte
}

func (m *memItems) WriteItem(name string, r io.Reader) (archive.ItemRef, error) {
	b, err := io.ReadAll(r)
	if err != nil {
		return archive.ItemRef{}, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.items == nil {
		m.items = map[string][]byte{}
	}
	if _, dup := m.items[name]; dup {
		return archive.ItemRef{}, fmt.Errorf("item %s written twice", name)
	}
	m.items[name] = b
	sum := sha256.Sum256(b)
	return archive.ItemRef{Name: name, Size: int64(len(b)), SHA256: hex.EncodeToString(sum[:])}, nil
}

func (m *memItems) open(_ context.Context, ref archive.ItemRef) (io.ReadCloser, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	b, ok := m.items[ref.Name]
	if !ok {
		return nil, fmt.Errorf("no item %s", ref.Name)
	}
	return io.NopCloser(bytes.NewReader(b)), nil
}

// emu is an emulated account with a client.
type emu struct {
	srv *cftest.Server
	api *cloudflare.Client
}

func startEmu(t testing.TB) *emu {
	t.Helper()
	srv, base := cftest.Start(t, cftest.Options{})
	api, err := cloudflare.New(cloudflare.Config{AccountID: srv.AccountID(), APIToken: "test-token", BaseURL: base + "/client/v4", PollInterval: 1})
	if err != nil {
		t.Fatal(err)
	}
	return &emu{srv: srv, api: api}
}

// addSQL creates a database in the emulator from SQL run in a local SQLite file (so the test can use
// statements D1's import would refuse, like CAST(x'…' AS TEXT)).
func (e *emu) addSQL(t testing.TB, name, script string) cloudflare.Database {
	t.Helper()
	path := filepath.Join(t.TempDir(), name+".sqlite")
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(script); err != nil {
		db.Close()
		t.Fatalf("source schema: %v", err)
	}
	db.Close()
	return e.addFile(t, name, path)
}

func (e *emu) addFile(t testing.TB, name, path string) cloudflare.Database {
	t.Helper()
	id, err := e.srv.AddDatabase(name, path)
	if err != nil {
		t.Fatal(err)
	}
	d, err := e.api.GetDatabase(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// backup runs Backup into memory and returns the catalogue, the items and the log.
func (e *emu) backup(t testing.TB, db cloudflare.Database) (*manifest.Catalogue, *memItems, string) {
	t.Helper()
	var logb bytes.Buffer
	m := &memItems{}
	_, items, err := Backup(context.Background(), e.api, m, db, BackupOptions{Log: slog.New(slog.NewTextHandler(&logb, nil))})
	if err != nil {
		t.Fatalf("backup: %v", err)
	}
	return &manifest.Catalogue{Items: items}, m, logb.String()
}

// restoreAll restores cat's database three ways — to a file, into a new D1 database, and in place
// over the source — and returns the three SQLite files' paths (errors as strings, "" when fine).
func (e *emu) restoreAll(t testing.TB, src cloudflare.Database, cat *manifest.Catalogue, m *memItems) (paths [3]string, errs [3]error) {
	t.Helper()
	ctx := context.Background()
	sel, err := Select(cat, src.UUID, nil)
	if err != nil {
		t.Fatal(err)
	}
	paths[0] = filepath.Join(t.TempDir(), "restored.sqlite")
	_, errs[0] = RestoreToFile(ctx, m.open, sel, paths[0])

	nd, err := e.api.CreateDatabase(ctx, fmt.Sprintf("%s-new-%d", src.Name, len(e.srvNames())))
	if err != nil {
		t.Fatal(err)
	}
	_, errs[1] = RestoreToDatabase(ctx, e.api, m.open, sel, nd, DatabaseOptions{})
	paths[1] = e.srv.DatabasePath(nd.UUID)

	_, errs[2] = RestoreToDatabase(ctx, e.api, m.open, sel, src, DatabaseOptions{InPlace: true})
	paths[2] = e.srv.DatabasePath(src.UUID)
	return paths, errs
}

func (e *emu) srvNames() []string {
	all, _ := e.api.ListDatabases(context.Background())
	var out []string
	for _, d := range all {
		out = append(out, d.Name)
	}
	return out
}

// snapshotDB describes a SQLite file exactly: every schema object's SQL, and every row of every
// table (rowid included where the table has one) as typeof:hex pairs, sorted.
func snapshotDB(t testing.TB, path string) (schema map[string]string, rows map[string][]string) {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+path+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	schema = map[string]string{}
	rows = map[string][]string{}
	type obj struct{ typ, name, sql string }
	var objs []obj
	r, err := db.Query("SELECT type, name, coalesce(sql,'') FROM sqlite_master WHERE name NOT LIKE 'sqlite_autoindex%'")
	if err != nil {
		t.Fatal(err)
	}
	for r.Next() {
		var o obj
		if err := r.Scan(&o.typ, &o.name, &o.sql); err != nil {
			t.Fatal(err)
		}
		objs = append(objs, o)
	}
	r.Close()
	vtabs := map[string]string{}
	var tables []string
	for _, o := range objs {
		if o.typ == "table" {
			tables = append(tables, o.name)
			if strings.HasPrefix(o.sql, "CREATE VIRTUAL TABLE") {
				vtabs[o.name] = o.sql
			}
		}
	}
	shadow := map[string]bool{}
	for _, s := range sqldump.ShadowTables(vtabs, tables) {
		shadow[s] = true
	}
	for _, o := range objs {
		schema[o.typ+" "+o.name] = normalizeSQL(o.sql)
		// Shadow tables hold a full-text index's storage, whose layout a rebuild may change; the
		// virtual table's own rows are compared instead.
		if o.typ != "table" || shadow[o.name] {
			continue
		}
		rows[o.name] = tableRows(t, db, o.name)
	}
	return schema, rows
}

// normalizeSQL drops the IF NOT EXISTS D1's dump adds to quoted table names.
func normalizeSQL(s string) string {
	return strings.Replace(s, "CREATE TABLE IF NOT EXISTS ", "CREATE TABLE ", 1)
}

func tableRows(t testing.TB, db *sql.DB, table string) []string {
	t.Helper()
	q := QuoteIdentForTest(table)
	var cols []string
	cr, err := db.Query("SELECT name FROM pragma_table_xinfo(?) WHERE hidden IN (0,2,3)", table)
	if err != nil {
		t.Fatal(err)
	}
	for cr.Next() {
		var c string
		cr.Scan(&c)
		cols = append(cols, c)
	}
	cr.Close()
	// rowids are compared only where they are data (INTEGER PRIMARY KEY columns are in cols).
	var sel []string
	for _, c := range cols {
		cq := QuoteIdentForTest(c)
		// printf('%!.17g') shows REAL exactly; -0.0 is told apart by its sign
		sel = append(sel, fmt.Sprintf("typeof(%[1]s)||':'||CASE typeof(%[1]s) WHEN 'real' THEN printf('%%!.17g', %[1]s)||CASE WHEN %[1]s=0 AND 1/%[1]s<0 THEN '-' ELSE '' END ELSE hex(%[1]s) END", cq))
	}
	if len(sel) == 0 {
		return nil
	}
	r, err := db.Query("SELECT " + strings.Join(sel, "||' '||") + " FROM " + q)
	if err != nil {
		t.Fatalf("read %s: %v", table, err)
	}
	defer r.Close()
	var out []string
	for r.Next() {
		var s string
		if err := r.Scan(&s); err != nil {
			t.Fatal(err)
		}
		out = append(out, s)
	}
	sort.Strings(out)
	return out
}

// QuoteIdentForTest quotes an identifier.
func QuoteIdentForTest(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }

// diffDB lists how got differs from want, schema object by object and row by row.
func diffDB(wantSchema map[string]string, wantRows map[string][]string, gotSchema map[string]string, gotRows map[string][]string) []string {
	var out []string
	for k, v := range wantSchema {
		if g, ok := gotSchema[k]; !ok {
			out = append(out, "missing "+k)
		} else if g != v {
			out = append(out, fmt.Sprintf("%s: sql %q, want %q", k, g, v))
		}
	}
	for k := range gotSchema {
		if _, ok := wantSchema[k]; !ok {
			out = append(out, "extra "+k)
		}
	}
	for tb, want := range wantRows {
		got := gotRows[tb]
		if strings.Join(got, "\n") == strings.Join(want, "\n") {
			continue
		}
		w := map[string]int{}
		for _, r := range want {
			w[r]++
		}
		for _, r := range got {
			w[r]--
		}
		n := 0
		for r, c := range w {
			if c != 0 && n < 4 {
				out = append(out, fmt.Sprintf("table %s: row %s (%+d)", tb, clip(r), -c))
				n++
			}
		}
		if n == 0 {
			out = append(out, fmt.Sprintf("table %s: %d rows, want %d", tb, len(got), len(want)))
		}
	}
	sort.Strings(out)
	return out
}

func clip(s string) string {
	if len(s) > 300 {
		return s[:300] + "…"
	}
	return s
}

func copyFile(t testing.TB, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

package d1

import (
	"context"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	_ "modernc.org/sqlite" // the "sqlite" database/sql driver, pure Go

	"github.com/cfbackup/cfbackup/pkg/cloudflare"
	"github.com/cfbackup/cfbackup/pkg/errclass"
	"github.com/cfbackup/cfbackup/pkg/manifest"
	"github.com/cfbackup/cfbackup/pkg/source"
	"github.com/cfbackup/cfbackup/pkg/source/d1/sqldump"
)

var (
	// ErrNotInSnapshot: a requested table or database is not in the snapshot.
	ErrNotInSnapshot = errclass.New(errclass.NotFound, "not in this snapshot")
	// ErrTargetNotEmpty: the restore target already holds data; nothing was changed.
	ErrTargetNotEmpty = errclass.New(errclass.Refused, "restore target is not empty")
	// ErrMismatch: the restored data does not match the catalogue (row counts).
	ErrMismatch = errclass.New(errclass.Integrity, "restored data does not match the snapshot")
)

// Opener reads one item from the archive, verifying it (archive.OpenItem bound to a snapshot).
type Opener = source.Opener

// Selection is the ordered list of items one restore replays, and the table filter.
type Selection struct {
	Items  []manifest.Item
	Tables map[string]bool // nil: every table
}

// Select picks a database's items from the catalogue in replay order — tables (dump order), then the
// schema part (indexes, views, triggers), then virtual tables — keeping only the named tables if any.
func Select(cat *manifest.Catalogue, sourceID string, tables []string) (Selection, error) {
	var tbl, fix, exact, schema, virt []manifest.Item
	have := map[string]bool{}
	err := cat.Each(func(it manifest.Item) error {
		if it.Component != Component || it.Source != sourceID {
			return nil
		}
		switch it.Kind {
		case "schema":
			schema = append(schema, it)
		case "virtual":
			virt = append(virt, it)
			have[it.Table] = true
		case "fixup":
			fix = append(fix, it)
		case "rows":
			exact = append(exact, it)
		case "table":
			tbl = append(tbl, it)
			have[it.Table] = true
		default:
			// Fail closed: an item kind from a newer cfbackup must not be replayed as table SQL.
			return fmt.Errorf("item %s has kind %q, which this cfbackup does not know: upgrade cfbackup", it.Name, it.Kind)
		}
		return nil
	})
	if err != nil {
		return Selection{}, err
	}
	sel := Selection{}
	if len(tables) > 0 {
		sel.Tables = map[string]bool{}
		var missing []string
		for _, t := range tables {
			if !have[t] {
				missing = append(missing, t)
			}
			sel.Tables[t] = true
		}
		if len(missing) > 0 {
			return sel, fmt.Errorf("table %s: %w (it has: %s)", strings.Join(missing, ", "), ErrNotInSnapshot, strings.Join(sortedKeys(have), ", "))
		}
	}
	keep := func(it manifest.Item) bool { return sel.Tables == nil || sel.Tables[it.Table] }
	tbl = parentsFirst(tbl)
	for _, it := range tbl {
		if keep(it) {
			sel.Items = append(sel.Items, it)
		}
	}
	for _, it := range append(exact, fix...) {
		if keep(it) {
			sel.Items = append(sel.Items, it)
		}
	}
	sel.Items = append(sel.Items, schema...)
	for _, it := range virt {
		if keep(it) {
			sel.Items = append(sel.Items, it)
		}
	}
	return sel, nil
}

// parentsFirst orders table items so every table comes after the tables its foreign keys reference,
// matching names case-insensitively as SQLite does (REFERENCES orders names a table created as
// Orders). Otherwise dump order is kept; items of one table stay together in their order; in a
// reference cycle the table met first in dump order comes first. Since a restore creates every
// table before it inserts any row (see writeStream), this order is not needed for correctness any
// more; it keeps the replay readable and deterministic.
func parentsFirst(items []manifest.Item) []manifest.Item {
	var order []string
	byTable := map[string][]manifest.Item{}
	refs := map[string][]string{}
	for _, it := range items {
		k := sqldump.FoldName(it.Table)
		if _, ok := byTable[k]; !ok {
			order = append(order, k)
		}
		byTable[k] = append(byTable[k], it)
		refs[k] = append(refs[k], it.References...)
	}
	state := map[string]int{} // 0 new, 1 visiting, 2 done
	var out []manifest.Item
	var visit func(t string)
	visit = func(t string) {
		if state[t] != 0 {
			return
		}
		state[t] = 1
		for _, p := range refs[t] {
			p = sqldump.FoldName(p)
			if _, ok := byTable[p]; ok && p != t {
				visit(p)
			}
		}
		state[t] = 2
		out = append(out, byTable[t]...)
	}
	for _, t := range order {
		visit(t)
	}
	return out
}

// rowsPerTable sums the recorded rows of each table (a table whose rows were not contiguous in the
// dump has several items); a table with a "rows" item has that item's rows.
func (s Selection) rowsPerTable() map[string]int64 {
	out := map[string]int64{}
	replaced := s.replaced()
	for _, it := range s.Items {
		if it.Kind == "table" && !replaced[sqldump.FoldName(it.Table)] || it.Kind == "rows" {
			out[it.Table] += it.Rows
		}
	}
	return out
}

// replaced names (lower case) the tables whose rows a "rows" item replaces.
func (s Selection) replaced() map[string]bool {
	out := map[string]bool{}
	for _, it := range s.Items {
		if it.Kind == "rows" {
			out[sqldump.FoldName(it.Table)] = true
		}
	}
	return out
}

// Stream replays the selection as one SQL text stream. prefix is written first (after the PRAGMA),
// e.g. the DROP statements of an in-place restore. Schema statements are filtered to the selected
// tables. Integrity errors of any item end the stream with that error.
func Stream(ctx context.Context, open Opener, sel Selection, prefix string) io.ReadCloser {
	pr, pw := io.Pipe()
	go func() {
		pw.CloseWithError(writeStream(ctx, open, sel, prefix, pw))
	}()
	return pr
}

// writeStream writes the replay in a fixed order, so that no statement meets a table that does not
// exist yet, whatever the foreign-key graph (cycles included):
//
//  1. PRAGMA defer_foreign_keys=TRUE; and the prefix (an in-place restore's DROP statements);
//  2. every selected table's CREATE TABLE, in table order (parentsFirst);
//  3. every table's rows (its items' statements other than CREATE TABLE), in the same order — for a
//     table with a "rows" item, that item's rows instead of the export's INSERTs (fixups.go);
//  4. the fixups (exact values D1's export cannot write, see fixups.go);
//  5. the schema part: indexes, triggers, views, AUTOINCREMENT counters (so triggers do not fire
//     on restored rows and indexes are built once), then the counters' own fixup (exact values of
//     counters beyond ±2^53);
//  6. virtual tables (their CREATE, then their rows or 'rebuild').
//
// D1 enforces foreign keys during an import; with every table created first and
// defer_foreign_keys on, a row whose parent row comes later is checked at commit only.
// String literals holding a NUL byte (D1's export writes them raw, and SQLite ends a statement's text
// at a NUL) are rewritten as CAST(X'…' AS TEXT), which stores the same bytes; the bare words
// Infinity and NaN D1's export writes for non-finite REALs become 9e999 and NULL.
func writeStream(ctx context.Context, open Opener, sel Selection, prefix string, w io.Writer) error {
	if _, err := io.WriteString(w, "PRAGMA defer_foreign_keys=TRUE;\n"+prefix); err != nil {
		return err
	}
	rs := replayStream{ctx: ctx, open: open, sel: sel, w: w}
	isTable := func(it manifest.Item) bool { return it.Kind == "table" }
	// 2. tables: the CREATE TABLE statements at the head of each table item.
	if err := rs.each(isTable, rs.creates); err != nil {
		return err
	}
	// 3. rows.
	if err := rs.each(func(it manifest.Item) bool { return isTable(it) || it.Kind == "rows" }, rs.rows(sel.replaced())); err != nil {
		return err
	}
	// 4.–6. (the AUTOINCREMENT counters' fixup after the schema part, which sets the counters)
	for _, kind := range []string{"fixup", "schema", "sequence", "virtual"} {
		match := func(it manifest.Item) bool {
			switch kind {
			case "fixup":
				return it.Kind == "fixup" && it.Table != "sqlite_sequence"
			case "sequence":
				return it.Kind == "fixup" && it.Table == "sqlite_sequence"
			}
			return it.Kind == kind
		}
		if err := rs.each(match, func(it manifest.Item, r io.Reader) error {
			if kind == "schema" {
				return copySchema(w, r, sel.Tables)
			}
			if _, err := io.Copy(w, r); err != nil {
				return err
			}
			_, err := io.WriteString(w, "\n")
			return err
		}); err != nil {
			return err
		}
	}
	return nil
}

// replayStream writes one restore's SQL stream from the selection's items.
type replayStream struct {
	ctx  context.Context
	open Opener
	sel  Selection
	w    io.Writer
}

// each replays, in selection order, the items keep accepts, each through fn.
func (rs replayStream) each(keep func(manifest.Item) bool, fn func(it manifest.Item, rc io.Reader) error) error {
	for _, it := range rs.sel.Items {
		if !keep(it) {
			continue
		}
		rc, err := rs.open(rs.ctx, it.ItemRef)
		if err != nil {
			return fmt.Errorf("open %s: %w", it.Name, err)
		}
		err = fn(it, rc)
		rc.Close()
		if err != nil {
			return fmt.Errorf("replay %s: %w", it.Name, err)
		}
	}
	return nil
}

// creates writes the CREATE TABLE statements at the head of a table item.
func (rs replayStream) creates(_ manifest.Item, r io.Reader) error {
	sc := sqldump.NewScanner(r, 0)
	for {
		st, err := sc.Next()
		if err == io.EOF || err == nil && st.Kind != sqldump.CreateTable {
			return nil
		}
		if err != nil {
			return err
		}
		if _, err := io.WriteString(rs.w, st.SQL+"\n"); err != nil {
			return err
		}
	}
}

// rows writes an item's statements after its CREATE TABLE (a table's INSERTs are left out when a
// rows item replaces them), with NUL bytes and non-finite REALs rewritten.
func (rs replayStream) rows(replaced map[string]bool) func(it manifest.Item, r io.Reader) error {
	return func(it manifest.Item, r io.Reader) error {
		skipInserts := it.Kind == "table" && replaced[sqldump.FoldName(it.Table)]
		sc := sqldump.NewScanner(r, 0)
		for {
			st, err := sc.Next()
			if err == io.EOF {
				return nil
			}
			if err != nil {
				return err
			}
			if st.Kind == sqldump.CreateTable || skipInserts && st.Kind == sqldump.Insert {
				continue
			}
			if _, err := io.WriteString(rs.w, sqldump.RewriteNonFinite(sqldump.RewriteNUL(st.SQL))+"\n"); err != nil {
				return err
			}
		}
	}
}

// copySchema copies schema statements, leaving out PRAGMAs (the stream has its own) and, when a
// table filter is set, everything that does not belong to a selected table.
func copySchema(w io.Writer, r io.Reader, tables map[string]bool) error {
	sc := sqldump.NewScanner(r, 64<<20)
	for {
		st, err := sc.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if st.Kind == sqldump.Pragma {
			continue
		}
		if tables != nil && (st.Kind == sqldump.CreateView || !hasFold(tables, st.Table)) {
			continue
		}
		if _, err := io.WriteString(w, strings.TrimSpace(st.SQL)+"\n"); err != nil {
			return err
		}
	}
}

// FileResult reports a restore to a local SQLite file.
type FileResult struct {
	Path       string
	Statements int64
	Tables     map[string]int64 // table → rows found after restore
	Check      string           // the PRAGMA that checked the file: "quick_check" or "integrity_check"
}

// FileOptions tune a restore to a local SQLite file.
type FileOptions struct {
	// FullCheck runs PRAGMA integrity_check after the load instead of quick_check (which leaves out
	// only the index-against-table and UNIQUE cross-checks; sqldump.QuickCheck says why that is
	// enough for a file just built): restore --full-check, and always test-restore.
	FullCheck bool
}

// RestoreToFile is RestoreToFileWith with the default FileOptions (PRAGMA quick_check).
func RestoreToFile(ctx context.Context, open Opener, sel Selection, path string) (*FileResult, error) {
	return RestoreToFileWith(ctx, open, sel, path, FileOptions{})
}

// RestoreToFileWith replays the selection into a new SQLite file at path, then runs quick_check (or
// integrity_check, o.FullCheck) and foreign_key_check and compares every table's row count with the
// catalogue. The file is built as path+".partial" and renamed only when everything passed: a failed
// restore leaves nothing at path. The file is created 0600 (it holds user data). The SQL is loaded
// through sqldump's allow-list and SQLite guards, so a forged item fails with sqldump.ErrNotAllowed
// and writes nothing elsewhere.
func RestoreToFileWith(ctx context.Context, open Opener, sel Selection, path string, o FileOptions) (*FileResult, error) {
	if _, err := os.Stat(path); err == nil {
		return nil, fmt.Errorf("%s: %w: the file exists; choose a new --to-file path or remove it", path, ErrTargetNotEmpty)
	}
	tmp := path + ".partial"
	_ = os.Remove(tmp)
	ok := false
	defer func() {
		if !ok {
			os.Remove(tmp)
			os.Remove(tmp + "-journal")
			os.Remove(tmp + "-wal")
			os.Remove(tmp + "-shm")
		}
	}()
	// The .partial file is created here, 0600 and exclusively, before SQLite opens it: the database
	// holds user data (SQLite would create it 0644), and nothing already at tmp (a planted link) is
	// followed. It only becomes visible by the final rename, so the load keeps its rollback journal
	// in memory and skips fsyncs (OpenFile): a failed load deletes the .partial file instead. The SQL
	// comes from the repository, so OpenFile's defensive mode and Load's guards apply.
	f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, err
	}
	if err := f.Close(); err != nil {
		return nil, err
	}
	db, err := sqldump.OpenFile(tmp)
	if err != nil {
		return nil, err
	}
	defer db.Close()
	conn, err := db.Conn(ctx)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	stream := Stream(ctx, open, sel, "")
	defer stream.Close()
	// Check runs foreign_key_check once the load is in (and a failure deletes the .partial file), so
	// Load need not run it a first time before its commit.
	st, err := sqldump.Load(ctx, conn, stream, sqldump.LoadOptions{SkipForeignKeyCheck: true})
	if err != nil {
		return nil, fmt.Errorf("load into %s: %w", path, err)
	}
	res := &FileResult{Path: path, Statements: st.Statements, Tables: map[string]int64{}, Check: "quick_check"}
	check := sqldump.QuickCheck
	if o.FullCheck {
		check, res.Check = sqldump.Check, "integrity_check"
	}
	if err := check(ctx, conn); err != nil {
		return nil, err
	}
	for table, want := range sel.rowsPerTable() {
		n, err := sqldump.CountRows(ctx, conn, table)
		if err != nil {
			return nil, err
		}
		res.Tables[table] = n
		if n != want {
			return nil, fmt.Errorf("%w: table %s has %d rows, the snapshot recorded %d", ErrMismatch, table, n, want)
		}
	}
	conn.Close()
	if err := db.Close(); err != nil {
		return nil, err
	}
	if err := syncFile(tmp); err != nil {
		return nil, err
	}
	if err := os.Rename(tmp, path); err != nil {
		return nil, err
	}
	ok = true
	return res, nil
}

// DatabaseOptions tune a restore into a D1 database.
type DatabaseOptions struct {
	// InPlace drops the selected objects of the live database first (the caller has recorded a
	// Time Travel bookmark to undo it). Without it the target must hold no tables.
	InPlace bool
	// ImportLimit is the largest file one import may take (D1: 5 GB); larger restores are split.
	ImportLimit int64
}

// DatabaseResult reports a restore into D1.
type DatabaseResult struct {
	Database      cloudflare.Database
	Files         int
	Bytes         int64
	FinalBookmark string
	Tables        map[string]int64
}

// RestoreToDatabase replays the selection into a D1 database through the import API. The SQL is
// produced twice from the archive — once to learn each file's size and MD5 (D1 wants them before the
// upload), once to upload it — so nothing is staged on disk or held in memory.
func RestoreToDatabase(ctx context.Context, api API, open Opener, sel Selection, target cloudflare.Database, o DatabaseOptions) (*DatabaseResult, error) {
	if o.ImportLimit <= 0 {
		o.ImportLimit = 5_000_000_000
	}
	live, err := listSchema(ctx, api, target.UUID)
	if err != nil {
		return nil, err
	}
	prefix := ""
	if o.InPlace {
		prefix = dropStatements(live, sel.Tables)
	} else {
		for _, ob := range live {
			if ob.Type == "table" {
				return nil, fmt.Errorf("D1 database %s: %w (it has table %s): restore into a new database with --to-database NEW --create, or replace it with --in-place --yes", target.Name, ErrTargetNotEmpty, ob.Name)
			}
		}
	}
	// D1's import refuses statements over 100,000 bytes; rows that large are rewritten into
	// several statements. The rewrite is deterministic, so both passes see the same bytes.
	importStream := func() (io.Reader, io.Closer) {
		s := Stream(ctx, open, sel, prefix)
		return sqldump.NewRewriter(s, 0, 0), s
	}
	plans, err := func() ([]sqldump.PartPlan, error) {
		r, c := importStream()
		defer c.Close()
		return sqldump.PlanParts(r, sqldump.PlanOptions{Limit: o.ImportLimit, Prologue: "PRAGMA defer_foreign_keys=TRUE;\n"})
	}()
	if err != nil {
		return nil, fmt.Errorf("prepare import: %w", err)
	}
	res := &DatabaseResult{Database: target, Tables: map[string]int64{}}
	for _, plan := range plans {
		plan := plan
		imp, err := api.Import(ctx, target.UUID, plan.MD5, plan.Bytes, func() (io.ReadCloser, error) {
			r, c := importStream()
			pr, pw := io.Pipe()
			go func() {
				_, err := io.CopyN(io.Discard, r, plan.InputOffset)
				if err == nil {
					err = sqldump.WritePart(pw, r, plan)
				}
				c.Close()
				pw.CloseWithError(err)
			}()
			return pr, nil
		})
		if err != nil {
			return res, fmt.Errorf("import file %d of %d into %s: %w", res.Files+1, len(plans), target.Name, err)
		}
		res.Files++
		res.Bytes += plan.Bytes
		res.FinalBookmark = imp.FinalBookmark
	}
	for table, want := range sel.rowsPerTable() {
		_, rows, err := api.Raw(ctx, target.UUID, "SELECT count(*) FROM "+sqldump.QuoteIdent(table))
		if err != nil {
			return res, fmt.Errorf("count rows of %s: %w", table, err)
		}
		var n int64
		if len(rows) == 1 && len(rows[0]) == 1 {
			fmt.Sscan(numString(rows[0][0]), &n)
		}
		res.Tables[table] = n
		if n != want {
			return res, fmt.Errorf("%w: table %s in %s has %d rows, the snapshot recorded %d", ErrMismatch, table, target.Name, n, want)
		}
	}
	return res, nil
}

// dropStatements removes what an in-place restore will recreate: everything when no table filter is
// set, else the selected tables (their indexes and triggers go with them).
func dropStatements(live []schemaObject, tables map[string]bool) string {
	var b strings.Builder
	vtabs := map[string]string{}
	var names []string
	for _, ob := range live {
		if ob.Type == "table" {
			names = append(names, ob.Name)
			if strings.HasPrefix(strings.ToUpper(strings.TrimSpace(ob.SQL)), "CREATE VIRTUAL TABLE") {
				vtabs[ob.Name] = ob.SQL
			}
		}
	}
	shadow := map[string]bool{}
	for _, n := range sqldump.ShadowTables(vtabs, names) {
		shadow[n] = true
	}
	drop := func(typ, name string) {
		fmt.Fprintf(&b, "DROP %s IF EXISTS %s;\n", typ, sqldump.QuoteIdent(name))
	}
	if tables == nil {
		for _, ob := range live {
			if ob.Type == "view" {
				drop("VIEW", ob.Name)
			}
		}
		for _, ob := range live {
			if ob.Type == "trigger" {
				drop("TRIGGER", ob.Name)
			}
		}
	}
	// Virtual tables before the tables they index (FTS5 reads its content table when dropped),
	// then the rest in reverse creation order, children before parents.
	for _, ob := range live {
		if ob.Type == "table" && vtabs[ob.Name] != "" && (tables == nil || tables[ob.Name]) {
			drop("TABLE", ob.Name)
		}
	}
	for i := len(live) - 1; i >= 0; i-- {
		ob := live[i]
		if ob.Type == "table" && vtabs[ob.Name] == "" && !shadow[ob.Name] && (tables == nil || tables[ob.Name]) {
			drop("TABLE", ob.Name)
		}
	}
	return b.String()
}

// hasFold reports whether m has name, compared as SQLite compares names (ASCII case-insensitively).
func hasFold(m map[string]bool, name string) bool {
	if m[name] {
		return true
	}
	for k := range m {
		if sqldump.FoldName(k) == sqldump.FoldName(name) {
			return true
		}
	}
	return false
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// syncFile flushes a file to disk (the load ran with synchronous=OFF) before it is renamed into place.
func syncFile(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

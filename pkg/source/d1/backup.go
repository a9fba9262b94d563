// Package d1 backs up and restores Cloudflare D1 databases.
//
// Backup streams D1's REST export (an SQL dump behind a signed URL) straight into the archive, cut into
// one item per table so a single table can be restored alone, with no temporary file and no whole dump
// in memory. D1 refuses to export databases that hold virtual tables (FTS5), so those are handled on the
// side: the real tables are exported by name, and each virtual table is kept as its CREATE statement
// plus, where its rows are not derivable from another table, its rows read page by page.
package d1

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"strings"
	"time"

	"github.com/cfbackup/cfbackup/pkg/archive"
	"github.com/cfbackup/cfbackup/pkg/cloudflare"
	"github.com/cfbackup/cfbackup/pkg/manifest"
	"github.com/cfbackup/cfbackup/pkg/source/d1/sqldump"
)

// Component is the component name of D1 in manifests and flags.
const Component = "d1"

// ItemWriter is the part of archive.Writer a source needs.
type ItemWriter interface {
	WriteItem(name string, r io.Reader) (archive.ItemRef, error)
}

// BackupOptions tune one database's backup.
type BackupOptions struct {
	Log *slog.Logger
	// Progress, if set, is called with every byte count read from the export download.
	Progress func(n int)
	// Attempts is how many times an export is retried when its signed URL expires or its download
	// breaks (default 3).
	Attempts int
	// MaxStatement guards the scanner against a runaway statement (default 64 MiB).
	MaxStatement int
}

// schemaObject is a row of sqlite_master.
type schemaObject struct{ Type, Name, Table, SQL string }

// Backup captures one database into w and returns its manifest summary and catalogue items.
func Backup(ctx context.Context, api API, w ItemWriter, db cloudflare.Database, o BackupOptions) (manifest.Source, []manifest.Item, error) {
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Attempts <= 0 {
		o.Attempts = 3
	}
	if o.MaxStatement <= 0 {
		o.MaxStatement = 64 << 20
	}
	src := manifest.Source{Component: Component, ID: db.UUID, Name: db.Name, Version: db.Version}
	objs, err := listSchema(ctx, api, db.UUID)
	if err != nil {
		return src, nil, err
	}
	vtabs, exportTables := splitTables(objs)
	if len(vtabs) > 0 {
		o.Log.Info("database has virtual tables; exporting real tables by name and virtual tables separately",
			"database", db.Name, "virtual_tables", len(vtabs), "tables", len(exportTables))
	}
	items, exp, err := export(ctx, api, w, db, vtabs, exportTables, o)
	if err != nil {
		return src, nil, err
	}
	fixups, warnings, err := backupExactValues(ctx, api, w, db, items, o.Log)
	if err != nil {
		return src, nil, err
	}
	warned := map[string]bool{}
	for i := range items {
		if items[i].Kind == "table" && !warned[items[i].Table] {
			warned[items[i].Table] = true
			items[i].Warnings = append(items[i].Warnings, warnings[items[i].Table]...)
		}
	}
	items = append(items, fixups...)
	if exportTables != nil {
		// An export limited to named tables leaves out indexes, triggers, views and sqlite_sequence
		// (D1 filters them by name), so they are captured from the live schema instead.
		it, err := backupSchema(ctx, api, w, db, objs, vtabs)
		if err != nil {
			return src, nil, err
		}
		items = append(items, it)
	}
	names := make([]string, 0, len(vtabs))
	for n := range vtabs {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		it, err := backupVirtual(ctx, api, w, db, n, vtabs[n], o.Log)
		if err != nil {
			return src, nil, err
		}
		items = append(items, it)
	}
	addReferences(items, objs, vtabs)
	src.AtBookmark = exp.AtBookmark
	src.Blocked = manifest.Duration(exp.Blocked)
	for _, it := range items {
		src.Items++
		src.Size += it.Size
		if it.Kind == "table" {
			src.Tables++
		}
	}
	return src, items, nil
}

// splitTables finds the virtual tables (D1 refuses to export them) and, when there are any, the real
// tables to export by name (not the virtual tables' shadow tables). exportTables is nil when the
// whole database can be exported.
func splitTables(objs []schemaObject) (vtabs map[string]string, exportTables []string) {
	vtabs = map[string]string{}
	var tables []string
	for _, ob := range objs {
		if ob.Type != "table" {
			continue
		}
		if strings.HasPrefix(strings.ToUpper(strings.TrimSpace(ob.SQL)), "CREATE VIRTUAL TABLE") {
			vtabs[ob.Name] = ob.SQL
		} else {
			tables = append(tables, ob.Name)
		}
	}
	if len(vtabs) == 0 {
		return vtabs, nil
	}
	shadow := map[string]bool{}
	for _, s := range sqldump.ShadowTables(vtabs, tables) {
		shadow[s] = true
	}
	for _, t := range tables {
		if !shadow[t] {
			exportTables = append(exportTables, t)
		}
	}
	return vtabs, exportTables
}

// export runs D1's export (again, on a retryable failure) and splits it into items; a database with
// only virtual tables exports nothing but records its current bookmark.
func export(ctx context.Context, api API, w ItemWriter, db cloudflare.Database, vtabs map[string]string, exportTables []string, o BackupOptions) ([]manifest.Item, cloudflare.Export, error) {
	var exp cloudflare.Export
	if len(vtabs) > 0 && len(exportTables) == 0 {
		if bm, err := api.CurrentBookmark(ctx, db.UUID); err == nil {
			exp.AtBookmark = bm
		}
		return nil, exp, nil
	}
	for attempt := 1; ; attempt++ {
		items, exp, err := exportOnce(ctx, api, w, db, exportTables, o)
		if err == nil {
			return items, exp, nil
		}
		if ctx.Err() != nil || attempt >= o.Attempts || !retryable(err) {
			return nil, exp, err
		}
		o.Log.Warn("export failed; exporting again", "database", db.Name, "attempt", attempt, "err", err)
	}
}

// addReferences records, on each table item, the tables its foreign keys reference (restore order).
func addReferences(items []manifest.Item, objs []schemaObject, vtabs map[string]string) {
	refs := map[string][]string{}
	for _, ob := range objs {
		if ob.Type == "table" && vtabs[ob.Name] == "" {
			refs[ob.Name] = sqldump.ReferencedTables(ob.SQL)
		}
	}
	for i := range items {
		if items[i].Kind == "table" {
			items[i].References = refs[items[i].Table]
		}
	}
}

func retryable(err error) bool {
	if errors.Is(err, cloudflare.ErrAuth) || errors.Is(err, cloudflare.ErrNotFound) || errors.Is(err, cloudflare.ErrTaskFailed) {
		return false
	}
	var se *storeError
	return !errors.As(err, &se)
}

// storeError marks failures writing the archive: retrying the export would not help.
type storeError struct{ err error }

func (e *storeError) Error() string { return e.err.Error() }
func (e *storeError) Unwrap() error { return e.err }

// exportOnce runs one export and streams its dump into the archive, one item per part.
func exportOnce(ctx context.Context, api API, w ItemWriter, db cloudflare.Database, tables []string, o BackupOptions) ([]manifest.Item, cloudflare.Export, error) {
	start := time.Now()
	exp, err := api.Export(ctx, db.UUID, cloudflare.ExportOptions{
		Tables:   tables,
		Progress: func(m string) { o.Log.Debug("d1 export", "database", db.Name, "message", m) },
	})
	if err != nil {
		return nil, exp, err
	}
	o.Log.Info("export ready", "database", db.Name, "bookmark", exp.AtBookmark, "blocked", exp.Blocked.Round(time.Millisecond), "waited", time.Since(start).Round(time.Millisecond))
	body, err := api.Download(ctx, exp.SignedURL)
	if err != nil {
		return nil, exp, err
	}
	defer body.Close()
	// src remembers a download failure, so a broken connection (retry: export again) is told apart
	// from a failing repository (no retry) when WriteItem reports either as a failed item.
	src := &sourceReader{r: body, fn: o.Progress}
	var items []manifest.Item
	err = sqldump.Split(src, sqldump.SplitOptions{MaxStatement: o.MaxStatement}, func(p *sqldump.Part, pr io.Reader) error {
		name := ItemName(db.UUID, p.Kind, p.Table)
		if p.Continued {
			// More rows of a table seen earlier in the dump: a distinct item name, so tar
			// extraction does not overwrite the first part.
			name = strings.TrimSuffix(name, ".sql") + fmt.Sprintf(".cont%d.sql", p.Index)
		}
		ref, err := w.WriteItem(name, pr)
		if err != nil {
			if src.err != nil {
				return fmt.Errorf("download export: %w", src.err)
			}
			return &storeError{fmt.Errorf("write %s: %w", name, err)}
		}
		items = append(items, manifest.Item{Component: Component, Source: db.UUID, Kind: p.Kind, Table: p.Table, Rows: p.Rows, ItemRef: ref})
		return nil
	})
	if err != nil {
		var se *storeError
		if src.err != nil && !errors.As(err, &se) {
			err = fmt.Errorf("download export: %w", src.err)
		}
		return nil, exp, fmt.Errorf("stream export of %s: %w", db.Name, err)
	}
	return items, exp, nil
}

// ItemName is the archive name of a D1 item: d1/<uuid>/tables/<table>.sql, d1/<uuid>/schema.sql,
// d1/<uuid>/virtual/<table>.sql. Table names are escaped so they stay one path element.
func ItemName(uuid, kind, table string) string {
	switch kind {
	case "schema":
		return "d1/" + uuid + "/schema.sql"
	case "fixup":
		return "d1/" + uuid + "/fixups/" + escapeName(table) + ".sql"
	case "rows":
		return "d1/" + uuid + "/rows/" + escapeName(table) + ".sql"
	case "schema-live":
		return "d1/" + uuid + "/schema-live.sql"
	case "virtual":
		return "d1/" + uuid + "/virtual/" + escapeName(table) + ".sql"
	default:
		return "d1/" + uuid + "/tables/" + escapeName(table) + ".sql"
	}
}

func escapeName(s string) string {
	r := strings.NewReplacer("/", "%2F", "%", "%25", "\x00", "%00")
	s = r.Replace(s)
	if s == "." || s == ".." {
		s = strings.ReplaceAll(s, ".", "%2E")
	}
	return s
}

func listSchema(ctx context.Context, api API, id string) ([]schemaObject, error) {
	cols, rows, err := api.Raw(ctx, id, "SELECT type, name, tbl_name, sql FROM sqlite_master WHERE name NOT LIKE 'sqlite_%' AND name NOT LIKE '_cf_%' ORDER BY rowid")
	if err != nil {
		return nil, fmt.Errorf("read schema: %w", err)
	}
	if len(cols) < 4 {
		return nil, nil
	}
	out := make([]schemaObject, 0, len(rows))
	for _, r := range rows {
		if len(r) < 4 {
			continue
		}
		out = append(out, schemaObject{Type: str(r[0]), Name: str(r[1]), Table: str(r[2]), SQL: str(r[3])})
	}
	return out, nil
}

func str(v any) string {
	if v == nil {
		return ""
	}
	if s, ok := v.(string); ok {
		return s
	}
	return fmt.Sprint(v)
}

// backupVirtual stores a virtual table as its CREATE statement followed by what rebuilds its contents:
// 'rebuild' for external-content FTS, its rows for regular FTS (read with quote() so every value
// survives exactly), nothing for contentless tables (which cannot be read back).
func backupVirtual(ctx context.Context, api API, w ItemWriter, db cloudflare.Database, name, create string, log *slog.Logger) (manifest.Item, error) {
	var rows int64
	ref, err := writeGenerated(w, ItemName(db.UUID, "virtual", name), func(pw io.Writer) error {
		return writeVirtual(ctx, api, db.UUID, name, create, pw, &rows)
	})
	if err != nil {
		return manifest.Item{}, fmt.Errorf("virtual table %s: %w", name, err)
	}
	it := manifest.Item{Component: Component, Source: db.UUID, Kind: "virtual", Table: name, Rows: rows, ItemRef: ref}
	if _, external, contentless := sqldump.VirtualTableInfo(create); contentless && external == "" {
		msg := "contentless full-text table (content=''): its index cannot be read back, so a restore creates it empty; the application must re-insert its documents"
		log.Warn("backup cannot capture a table exactly: "+msg, "database", db.Name, "table", name)
		it.Warnings = append(it.Warnings, msg)
	}
	return it, nil
}

// writeGenerated streams what gen writes into one archive item, so generated SQL (virtual-table rows,
// big-integer fixups) never sits in memory whole. A gen error fails the item.
func writeGenerated(w ItemWriter, name string, gen func(io.Writer) error) (archive.ItemRef, error) {
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(gen(pw)) }()
	ref, err := w.WriteItem(name, pr)
	pr.CloseWithError(errors.New("archive writer stopped"))
	return ref, err
}

func writeVirtual(ctx context.Context, api API, id, name, create string, w io.Writer, rows *int64) error {
	stmt := strings.TrimSpace(create)
	if !strings.HasSuffix(stmt, ";") {
		stmt += ";"
	}
	if _, err := io.WriteString(w, stmt+"\n"); err != nil {
		return err
	}
	module, external, contentless := sqldump.VirtualTableInfo(create)
	q := sqldump.QuoteIdent(name)
	switch {
	case external != "":
		_, err := fmt.Fprintf(w, "INSERT INTO %s(%s) VALUES('rebuild');\n", q, q)
		return err
	case contentless:
		return nil
	case !strings.EqualFold(module, "fts5") && !strings.EqualFold(module, "fts4") && !strings.EqualFold(module, "fts3"):
		// Other modules (rtree…) keep rows too; read them the same way.
	}
	cols, _, err := api.Raw(ctx, id, "SELECT * FROM "+q+" LIMIT 0")
	if err != nil {
		return fmt.Errorf("read columns of %s: %w", name, err)
	}
	ti := tableInfo{name: name, rowid: "rowid"}
	sel := make([]string, 0, len(cols))
	colList := make([]string, 0, len(cols)+1)
	colList = append(colList, "rowid")
	for _, c := range cols {
		ti.cols = append(ti.cols, column{name: c})
		sel = append(sel, literal(column{name: c})) // quote() would cut text at a NUL
		colList = append(colList, sqldump.QuoteIdent(c))
	}
	// Paged by rowid and by bytes (pageRows), so memory stays bounded however large the rows.
	err = pageRows(ctx, api, id, ti, "1", sel, nil, func(r []any) error {
		vals := make([]string, 0, len(r))
		vals = append(vals, numString(r[0]))
		for _, v := range r[1:] {
			vals = append(vals, str(v))
		}
		*rows++
		_, err := fmt.Fprintf(w, "INSERT INTO %s (%s) VALUES(%s);\n", q, strings.Join(colList, ","), strings.Join(vals, ","))
		return err
	})
	if err != nil {
		return fmt.Errorf("read rows of %s: %w", name, err)
	}
	return nil
}

func numString(v any) string {
	switch x := v.(type) {
	case float64:
		return fmt.Sprintf("%.0f", x)
	default:
		return str(v)
	}
}

// sourceReader reports bytes read to fn (if set) and remembers the first read error other than EOF.
type sourceReader struct {
	r   io.Reader
	fn  func(int)
	err error
}

func (c *sourceReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if n > 0 && c.fn != nil {
		c.fn(n)
	}
	if err != nil && err != io.EOF && c.err == nil {
		c.err = err
	}
	return n, err
}

// backupSchema writes the indexes, triggers and views of the live schema (except those of virtual
// tables' shadow tables) and the AUTOINCREMENT counters, as one "schema" item.
func backupSchema(ctx context.Context, api API, w ItemWriter, db cloudflare.Database, objs []schemaObject, vtabs map[string]string) (manifest.Item, error) {
	var b strings.Builder
	var tables []string
	for _, ob := range objs {
		if ob.Type == "table" {
			tables = append(tables, ob.Name)
		}
	}
	shadow := map[string]bool{}
	for _, s := range sqldump.ShadowTables(vtabs, tables) {
		shadow[s] = true
	}
	for _, typ := range []string{"index", "trigger", "view"} {
		for _, ob := range objs {
			if ob.Type != typ || ob.SQL == "" || shadow[ob.Table] || vtabs[ob.Table] != "" {
				continue
			}
			b.WriteString(strings.TrimSpace(ob.SQL) + ";\n")
		}
	}
	if _, rows, err := api.Raw(ctx, db.UUID, "SELECT name, CAST(seq AS TEXT) FROM sqlite_sequence"); err == nil {
		for _, r := range rows {
			if len(r) == 2 && !shadow[str(r[0])] {
				name, seq := sqldump.FormatValue(str(r[0])), str(r[1])
				fmt.Fprintf(&b, "UPDATE sqlite_sequence SET seq = %s WHERE name = %s;\n", seq, name)
				fmt.Fprintf(&b, "INSERT INTO sqlite_sequence (name, seq) SELECT %s, %s WHERE NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = %s);\n", name, seq, name)
			}
		}
	}
	ref, err := w.WriteItem(ItemName(db.UUID, "schema-live", ""), strings.NewReader(b.String()))
	if err != nil {
		return manifest.Item{}, &storeError{err}
	}
	return manifest.Item{Component: Component, Source: db.UUID, Kind: "schema", ItemRef: ref}, nil
}

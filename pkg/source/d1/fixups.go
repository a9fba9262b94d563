package d1

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"regexp"
	"strconv"
	"strings"

	"github.com/cfbackup/cfbackup/pkg/cloudflare"
	"github.com/cfbackup/cfbackup/pkg/manifest"
	"github.com/cfbackup/cfbackup/pkg/source/d1/sqldump"
)

// What D1's export cannot write exactly, and what cfbackup does about it (docs/FORMAT.md, "D1: what
// comes back exactly").
//
// D1's dump (dumpSql) reads every value into JavaScript, so:
//   - an INTEGER beyond ±2^53 comes out rounded (9007199254740993 → 9007199254740992, and
//     9223372036854775807 → 9223372036854775808, which SQLite then reads as REAL);
//   - a REAL with an integral value comes out without a decimal point (1.0 → 1), which SQLite reads
//     as INTEGER; columns with REAL affinity turn it back into REAL, but columns with BLOB
//     affinity (no declared type, BLOB, STRICT ANY) or NUMERIC/INTEGER affinity keep INTEGER;
//   - text that is not UTF-8 comes out with U+FFFD in place of its bad bytes (the runtime makes a
//     JavaScript string of it); SQLite has no validator, so notUTF8Glob finds what it can.
//
// cfbackup finds such values right after the export (one query per 100,000 rows) and stores their exact
// values — INTEGER and REAL by SQLite's own quote(), text as CAST(X'…' AS TEXT) of its bytes — as one
// of two item kinds:
//
//   - "fixup": UPDATE statements that set the inexact columns of each affected row, addressing the
//     row by something the replay keeps: its INTEGER PRIMARY KEY (the dump writes it, so the
//     replayed row has the same rowid), or else its PRIMARY KEY columns. Used when every affected
//     row's key is exact and non-NULL, no inexact value sits in a column of a UNIQUE index (a
//     rounded value there could collide while the rows replay) and the table is not STRICT.
//   - "rows": every row of the table, exact, with its rowid (rowid tables) — restore plays these
//     instead of the export's INSERTs for that table. Used otherwise (no usable key, an inexact
//     key, an inexact value under a UNIQUE index, or a STRICT table, which may refuse a rounded
//     value outright), so the replay never needs to find a row that D1's INSERTs renumbered (they
//     carry no rowid) or whose key they rounded.
//
// Text holding NUL bytes is exported as is and is rewritten at restore (sqldump.RewriteNUL);
// ±Infinity, which the dump writes as a bare word, likewise (sqldump.RewriteNonFinite).

// twoTo53 is 2^53: integers beyond ±2^53 do not survive a JavaScript double.
const twoTo53 = "9007199254740992"

// exactPage is how many rows one query of the exact-value pass returns.
const exactPage = 500

type column struct {
	name     string
	decl     string
	affinity string // INTEGER, TEXT, BLOB, REAL, NUMERIC
	pk       int
}

type tableInfo struct {
	name         string
	cols         []column
	withoutRowid bool
	strict       bool
	alias        string   // the INTEGER PRIMARY KEY column, if any
	unique       []string // columns of UNIQUE indexes (PRIMARY KEY included)
	rowid        string   // a name for the rowid no column shadows ("" if none)
}

var withoutRowidRe = regexp.MustCompile(`(?is)\)\s*((WITHOUT\s+ROWID|STRICT)\s*,\s*)?WITHOUT\s+ROWID(\s*,\s*STRICT)?\s*;?\s*$`)
var strictRe = regexp.MustCompile(`(?is)\)\s*((WITHOUT\s+ROWID)\s*,\s*)?STRICT(\s*,\s*WITHOUT\s+ROWID)?\s*;?\s*$`)

// affinity applies SQLite's column affinity rules to a declared type.
func affinity(decl string, strict bool) string {
	t := strings.ToUpper(decl)
	if strict {
		switch t {
		case "INT", "INTEGER":
			return "INTEGER"
		case "REAL":
			return "REAL"
		case "TEXT":
			return "TEXT"
		default: // BLOB, ANY: values kept as given
			return "BLOB"
		}
	}
	switch {
	case strings.Contains(t, "INT"):
		return "INTEGER"
	case strings.Contains(t, "CHAR"), strings.Contains(t, "CLOB"), strings.Contains(t, "TEXT"):
		return "TEXT"
	case t == "", strings.Contains(t, "BLOB"):
		return "BLOB"
	case strings.Contains(t, "REAL"), strings.Contains(t, "FLOA"), strings.Contains(t, "DOUB"):
		return "REAL"
	}
	return "NUMERIC"
}

func readTableInfo(ctx context.Context, api API, db, table, createSQL string) (tableInfo, error) {
	ti := tableInfo{name: table}
	ti.withoutRowid = withoutRowidRe.MatchString(createSQL)
	strict := strictRe.MatchString(createSQL)
	ti.strict = strict
	_, rows, err := api.Raw(ctx, db, "SELECT name, type, pk FROM pragma_table_info(?1) ORDER BY cid", table)
	if err != nil {
		return ti, fmt.Errorf("columns of %s: %w", table, err)
	}
	var pks []column
	names := map[string]bool{}
	for _, r := range rows {
		if len(r) < 3 {
			continue
		}
		pk, _ := strconv.Atoi(numString(r[2]))
		c := column{name: str(r[0]), decl: str(r[1]), affinity: affinity(str(r[1]), strict), pk: pk}
		ti.cols = append(ti.cols, c)
		names[sqldump.FoldName(c.name)] = true
		if pk > 0 {
			pks = append(pks, c)
		}
	}
	if !ti.withoutRowid {
		for _, n := range []string{"rowid", "_rowid_", "oid"} {
			if !names[n] {
				ti.rowid = n
				break
			}
		}
		if len(pks) == 1 && strings.EqualFold(pks[0].decl, "INTEGER") && !descPK(createSQL) {
			ti.alias = pks[0].name
		}
	}
	_, urows, err := api.Raw(ctx, db, `SELECT DISTINCT ii.name FROM pragma_index_list(?1) AS il, pragma_index_info(il.name) AS ii WHERE il."unique" = 1 AND ii.name IS NOT NULL`, table)
	if err != nil {
		// Not knowing the UNIQUE columns, treat every column as one: an inexact value then makes
		// the table's rows be read again exactly (never a fixup that might collide).
		for _, c := range ti.cols {
			ti.unique = append(ti.unique, c.name)
		}
		urows = nil
	}
	for _, r := range urows {
		if len(r) > 0 {
			ti.unique = append(ti.unique, str(r[0]))
		}
	}
	for _, c := range pks {
		ti.unique = append(ti.unique, c.name)
	}
	return ti, nil
}

// descPK spots "INTEGER PRIMARY KEY DESC", which (a SQLite quirk) is not a rowid alias.
var descPKRe = regexp.MustCompile(`(?is)\bPRIMARY\s+KEY\s+DESC\b`)

func descPK(createSQL string) bool { return descPKRe.MatchString(createSQL) }

func (ti tableInfo) pkCols() []column {
	var out []column
	for i := 1; ; i++ {
		found := false
		for _, c := range ti.cols {
			if c.pk == i {
				out = append(out, c)
				found = true
			}
		}
		if !found {
			return out
		}
	}
}

// inexact is an SQL condition true when column c's value would not come back from D1's dump
// exactly (value and storage class).
func inexact(c column) string {
	q := sqldump.QuoteIdent(c.name)
	cond := fmt.Sprintf("(typeof(%s)='integer' AND (%s > %s OR %s < -%s))", q, q, twoTo53, q, twoTo53)
	if c.affinity != "REAL" {
		cond += fmt.Sprintf(" OR (typeof(%s)='real' AND %s = CAST(%s AS INTEGER))", q, q, q)
	}
	cond += fmt.Sprintf(" OR (typeof(%s)='text' AND %s GLOB %s)", q, q, notUTF8Glob)
	return "(" + cond + ")"
}

// notUTF8Glob matches text that is probably not UTF-8, which D1's export (through a JavaScript
// string) writes with U+FFFD in place of the bad bytes. SQLite has no UTF-8 validator; its decoder
// reads a stray continuation byte 0x80–0x9F as U+0080–U+009F (C1 controls, which real text does
// not use) and an impossible lead byte, an overlong or a surrogate as U+FFFD. It misses some
// cases (a stray 0xA0–0xBF, a 3- or 4-byte sequence cut short or overlong continuation runs that
// decode outside those ranges: docs/FORMAT.md lists them) and matches text that really holds
// U+FFFD (a harmless extra fixup).
const notUTF8Glob = "('*[' || char(128) || '-' || char(159) || char(65533) || ']*')"

// literal renders column c's value as an exact SQL literal: quote() (exact for INTEGER, REAL,
// BLOB and NULL), and CAST(X'…' AS TEXT) for text — its exact bytes, whatever they are: quote()
// would cut text at a NUL, and the JSON that carries query results cannot carry bytes that are not
// UTF-8.
func literal(c column) string {
	q := sqldump.QuoteIdent(c.name)
	return fmt.Sprintf("CASE WHEN typeof(%s)='text' THEN 'CAST(X''' || hex(%s) || ''' AS TEXT)' ELSE quote(%s) END", q, q, q)
}

// backupExactValues writes the "fixup" or "rows" item of every exported table that holds values
// D1's export cannot write exactly (see the comment at the top of this file).
// warnings maps a table to what its restore will not bring back exactly.
func backupExactValues(ctx context.Context, api API, w ItemWriter, db cloudflare.Database, items []manifest.Item, log *slog.Logger) (out []manifest.Item, warnings map[string][]string, err error) {
	warnings = map[string][]string{}
	objs, err := listSchema(ctx, api, db.UUID)
	if err != nil {
		return nil, nil, err
	}
	create := map[string]string{}
	for _, ob := range objs {
		if ob.Type == "table" {
			create[ob.Name] = ob.SQL
		}
	}
	seen := map[string]bool{}
	for _, it := range items {
		if it.Kind != "table" || seen[it.Table] {
			continue
		}
		seen[it.Table] = true
		ti, err := readTableInfo(ctx, api, db.UUID, it.Table, create[it.Table])
		if err != nil {
			return nil, nil, err
		}
		if len(ti.cols) == 0 {
			continue
		}
		item, warn, err := exactValues(ctx, api, w, db, ti, log)
		if err != nil {
			return nil, nil, err
		}
		if warn != "" {
			warnings[it.Table] = append(warnings[it.Table], warn)
		}
		if item != nil {
			out = append(out, *item)
		}
	}
	// AUTOINCREMENT counters: the export writes sqlite_sequence through a double too.
	if seen["sqlite_sequence"] || hasSequence(objs) {
		_, rows, err := api.Raw(ctx, db.UUID, fmt.Sprintf("SELECT name, CAST(seq AS TEXT) FROM sqlite_sequence WHERE typeof(seq) != 'integer' OR seq > %s OR seq < -%s", twoTo53, twoTo53))
		if err != nil {
			log.Warn("could not check AUTOINCREMENT counters beyond ±2^53; they may come back rounded", "database", db.Name, "err", err)
		} else if len(rows) > 0 {
			var b strings.Builder
			for _, r := range rows {
				if len(r) == 2 {
					fmt.Fprintf(&b, "UPDATE sqlite_sequence SET seq = %s WHERE name = %s;\n", str(r[1]), sqldump.FormatValue(str(r[0])))
				}
			}
			ref, err := w.WriteItem(ItemName(db.UUID, "fixup", "sqlite_sequence"), strings.NewReader(b.String()))
			if err != nil {
				return nil, nil, &storeError{err}
			}
			out = append(out, manifest.Item{Component: Component, Source: db.UUID, Kind: "fixup", Table: "sqlite_sequence", ItemRef: ref})
		}
	}
	return out, warnings, nil
}

// hasSequence reports whether the schema has AUTOINCREMENT counters (listSchema leaves sqlite_*
// out, so the test is whether any table uses AUTOINCREMENT).
func hasSequence(objs []schemaObject) bool {
	for _, ob := range objs {
		if ob.Type == "table" && strings.Contains(strings.ToUpper(ob.SQL), "AUTOINCREMENT") {
			return true
		}
	}
	return false
}

func exactValues(ctx context.Context, api API, w ItemWriter, db cloudflare.Database, ti tableInfo, log *slog.Logger) (*manifest.Item, string, error) {
	var any []string
	for _, c := range ti.cols {
		any = append(any, inexact(c))
	}
	anyInexact := strings.Join(any, " OR ")
	// Which columns a per-row fixup cannot touch: the key that finds the row, and UNIQUE columns.
	var keys []column
	if ti.alias != "" {
		for _, c := range ti.cols {
			if c.name == ti.alias {
				keys = []column{c}
			}
		}
	} else {
		keys = ti.pkCols()
	}
	guarded := map[string]bool{}
	for _, u := range ti.unique {
		guarded[sqldump.FoldName(u)] = true
	}
	for _, k := range keys {
		guarded[sqldump.FoldName(k.name)] = true
	}
	var bad []string
	for _, c := range ti.cols {
		if guarded[sqldump.FoldName(c.name)] {
			bad = append(bad, inexact(c))
		}
	}
	for _, k := range keys {
		if k.name != ti.alias {
			bad = append(bad, sqldump.QuoteIdent(k.name)+" IS NULL")
		}
	}
	badExpr := "0"
	if len(bad) > 0 {
		badExpr = strings.Join(bad, " OR ")
	}
	nrows, anyBad, err := scanInexact(ctx, api, db.UUID, ti, anyInexact, badExpr)
	if err != nil {
		// Never silently: the restore of this table may differ.
		msg := "could not check for values D1's export writes inexactly (integers beyond ±2^53, integral REALs, text that is not UTF-8); they may come back changed: " + err.Error()
		log.Warn(msg, "database", db.Name, "table", ti.name)
		return nil, msg, nil
	}
	if nrows == 0 {
		return nil, "", nil
	}
	// STRICT tables refuse some rounded values outright (9223372036854775807 is written as
	// 9223372036854775808, a REAL an INTEGER column rejects), so no INSERT of theirs is replayed.
	if len(keys) > 0 && !anyBad && !ti.strict {
		ref, err := writeGenerated(w, ItemName(db.UUID, "fixup", ti.name), func(pw io.Writer) error {
			return writeFixups(ctx, api, db.UUID, ti, keys, anyInexact, pw)
		})
		if err != nil {
			return nil, "", fmt.Errorf("exact values of %s: %w", ti.name, err)
		}
		log.Info("table has values D1's export writes inexactly; their exact values are kept as fixups", "database", db.Name, "table", ti.name, "rows", nrows)
		return &manifest.Item{Component: Component, Source: db.UUID, Kind: "fixup", Table: ti.name, ItemRef: ref}, "", nil
	}
	var n int64
	ref, err := writeGenerated(w, ItemName(db.UUID, "rows", ti.name), func(pw io.Writer) error {
		return writeExactRows(ctx, api, db.UUID, ti, pw, &n)
	})
	if err != nil {
		return nil, "", fmt.Errorf("exact rows of %s: %w", ti.name, err)
	}
	log.Info("table has values D1's export writes inexactly and no key a fixup could use; its rows were read again exactly", "database", db.Name, "table", ti.name, "rows", n)
	return &manifest.Item{Component: Component, Source: db.UUID, Kind: "rows", Table: ti.name, Rows: n, ItemRef: ref}, "", nil
}

// scanWindow is how many rows one query of the exactness check reads: D1 ends a query after 30 s,
// so a large table is checked in windows of rowids rather than in one scan.
var scanWindow = 100_000 // a variable so tests can make windows small

// scanInexact counts the rows with an inexact value and reports whether any of them also matches
// bad (an inexact or NULL key, or an inexact value under a UNIQUE index). Rowid tables are read in
// windows of scanWindow rows; WITHOUT ROWID tables in one query.
func scanInexact(ctx context.Context, api API, db string, ti tableInfo, anyInexact, bad string) (n int64, anyBad bool, err error) {
	q := sqldump.QuoteIdent(ti.name)
	add := func(r []any) {
		c, _ := strconv.ParseInt(str(r[0]), 10, 64)
		n += c
		anyBad = anyBad || str(r[1]) != "0"
	}
	if ti.rowid == "" {
		_, rows, err := api.Raw(ctx, db, fmt.Sprintf("SELECT CAST(count(*) AS TEXT), CAST(coalesce(max(%s), 0) AS TEXT) FROM %s WHERE %s", bad, q, anyInexact))
		if err != nil {
			return 0, false, err
		}
		if len(rows) != 1 || len(rows[0]) != 2 {
			return 0, false, fmt.Errorf("exactness check of %s: unexpected answer", ti.name)
		}
		add(rows[0])
		return n, anyBad, nil
	}
	const alias = `"cfbackup rowid"`
	query := fmt.Sprintf(`WITH w AS (SELECT %s AS %s, * FROM %s WHERE (?1 = '' OR %s > CAST(?1 AS INTEGER)) ORDER BY %s LIMIT %d)
SELECT CAST(sum(CASE WHEN %s THEN 1 ELSE 0 END) AS TEXT), CAST(coalesce(max(CASE WHEN %s THEN (%s) END), 0) AS TEXT), CAST(count(*) AS TEXT), CAST(max(%s) AS TEXT) FROM w`,
		ti.rowid, alias, q, ti.rowid, ti.rowid, scanWindow, anyInexact, anyInexact, bad, alias)
	last := "" // first window: no lower bound (a rowid may be -2^63)
	for {
		_, rows, err := api.Raw(ctx, db, query, last)
		if err != nil {
			return 0, false, err
		}
		if len(rows) != 1 || len(rows[0]) != 4 {
			return 0, false, fmt.Errorf("exactness check of %s: unexpected answer", ti.name)
		}
		r := rows[0]
		if r[0] != nil {
			add(r)
		}
		if c, _ := strconv.ParseInt(str(r[2]), 10, 64); c < int64(scanWindow) {
			return n, anyBad, nil
		}
		last = str(r[3])
	}
}

// pageBudget bounds the literal text one page of the exact-value pass brings back, so memory stays
// bounded however large the rows (D1 allows 2 MB values, and text travels hex-encoded).
var pageBudget = 8 << 20

// pageRows calls fn with every row of ti matching where (SQL; "1" for all), each row being the
// paging key (the rowid as text, or NULL for WITHOUT ROWID tables) followed by the sel expressions,
// in rowid order (or order, for tables without a rowid). Each page first asks for the sizes of up to
// exactPage rows, then fetches as many of them as fit in pageBudget (at least one).
func pageRows(ctx context.Context, api API, db string, ti tableInfo, where string, sel, order []string, fn func(r []any) error) error {
	q := sqldump.QuoteIdent(ti.name)
	var sizes []string
	for _, c := range ti.cols {
		sizes = append(sizes, "coalesce(length(CAST("+sqldump.QuoteIdent(c.name)+" AS BLOB)), 0)")
	}
	size := "2 * (" + strings.Join(sizes, " + ") + ")" // hex doubles text and BLOBs
	fit := func(rows [][]any) int {
		total, n := 0, 0
		for _, r := range rows {
			sz, _ := strconv.Atoi(numString(r[1]))
			if n > 0 && total+sz+64*len(sel) > pageBudget {
				break
			}
			total += sz + 64*len(sel)
			n++
		}
		return n
	}
	emit := func(rows [][]any) error {
		for _, r := range rows {
			if len(r) != 1+len(sel) {
				return fmt.Errorf("got %d columns, want %d", len(r), 1+len(sel))
			}
			if err := fn(r); err != nil {
				return err
			}
		}
		return nil
	}
	if ti.rowid == "" {
		for offset := 0; ; {
			_, szs, err := api.Raw(ctx, db, fmt.Sprintf("SELECT NULL, CAST(%s AS TEXT) FROM %s WHERE %s ORDER BY %s LIMIT %d OFFSET %d",
				size, q, where, strings.Join(order, ", "), exactPage, offset))
			if err != nil {
				return err
			}
			if len(szs) == 0 {
				return nil
			}
			n := fit(szs)
			_, rows, err := api.Raw(ctx, db, fmt.Sprintf("SELECT NULL, %s FROM %s WHERE %s ORDER BY %s LIMIT %d OFFSET %d",
				strings.Join(sel, ", "), q, where, strings.Join(order, ", "), n, offset))
			if err != nil {
				return err
			}
			if err := emit(rows); err != nil {
				return err
			}
			offset += n
			if n == len(szs) && len(szs) < exactPage {
				return nil
			}
		}
	}
	from := fmt.Sprintf("%s WHERE (?1 = '' OR %s > CAST(?1 AS INTEGER)) AND (%s)", q, ti.rowid, where)
	last := "" // first page: no lower bound (a rowid may be -2^63)
	for {
		_, szs, err := api.Raw(ctx, db, fmt.Sprintf("SELECT CAST(%s AS TEXT), CAST(%s AS TEXT) FROM %s ORDER BY %s LIMIT %d", ti.rowid, size, from, ti.rowid, exactPage), last)
		if err != nil {
			return err
		}
		if len(szs) == 0 {
			return nil
		}
		n := fit(szs)
		upto := str(szs[n-1][0])
		_, rows, err := api.Raw(ctx, db, fmt.Sprintf("SELECT CAST(%s AS TEXT), %s FROM %s AND %s <= CAST(?2 AS INTEGER) ORDER BY %s",
			ti.rowid, strings.Join(sel, ", "), from, ti.rowid, ti.rowid), last, upto)
		if err != nil {
			return err
		}
		if err := emit(rows); err != nil {
			return err
		}
		last = upto
		if n == len(szs) && len(szs) < exactPage {
			return nil
		}
	}
}

// writeFixups writes one UPDATE per affected row: SET each inexact column to its exact value
// WHERE the key columns equal their (exact) values.
func writeFixups(ctx context.Context, api API, db string, ti tableInfo, keys []column, anyInexact string, w io.Writer) error {
	q := sqldump.QuoteIdent(ti.name)
	var sel, order []string
	for _, k := range keys {
		sel = append(sel, literal(k))
		order = append(order, sqldump.QuoteIdent(k.name))
	}
	for _, c := range ti.cols {
		sel = append(sel, fmt.Sprintf("CASE WHEN %s THEN %s END", inexact(c), literal(c)))
	}
	return pageRows(ctx, api, db, ti, anyInexact, sel, order, func(r []any) error {
		var set, where []string
		for i, k := range keys {
			where = append(where, sqldump.QuoteIdent(k.name)+" = "+str(r[1+i]))
		}
		for i, c := range ti.cols {
			if v := r[1+len(keys)+i]; v != nil {
				set = append(set, sqldump.QuoteIdent(c.name)+" = "+str(v))
			}
		}
		if len(set) == 0 {
			return nil
		}
		_, err := fmt.Fprintf(w, "UPDATE %s SET %s WHERE %s;\n", q, strings.Join(set, ", "), strings.Join(where, " AND "))
		return err
	})
}

// writeExactRows writes every row of the table as an INSERT of exact literals, with its rowid
// for rowid tables, so the replay keeps rowids too.
func writeExactRows(ctx context.Context, api API, db string, ti tableInfo, w io.Writer, n *int64) error {
	q := sqldump.QuoteIdent(ti.name)
	var sel, names []string
	if ti.rowid != "" && ti.alias == "" {
		names = append(names, ti.rowid)
		sel = append(sel, "CAST("+ti.rowid+" AS TEXT)")
	}
	for _, c := range ti.cols {
		names = append(names, sqldump.QuoteIdent(c.name))
		sel = append(sel, literal(c))
	}
	var order []string
	for _, k := range ti.pkCols() {
		order = append(order, sqldump.QuoteIdent(k.name))
	}
	if len(order) == 0 { // columns named rowid, _rowid_ and oid, and no key: every column
		for _, c := range ti.cols {
			order = append(order, sqldump.QuoteIdent(c.name))
		}
	}
	return pageRows(ctx, api, db, ti, "1", sel, order, func(r []any) error {
		vals := make([]string, len(sel))
		for i, v := range r[1:] {
			vals[i] = str(v)
		}
		*n++
		_, err := fmt.Fprintf(w, "INSERT INTO %s (%s) VALUES(%s);\n", q, strings.Join(names, ","), strings.Join(vals, ","))
		return err
	})
}

package cftest

import (
	"bufio"
	"context"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"unicode/utf8"
)

// ErrVirtualTables is D1's refusal to export a database holding virtual tables.
var ErrVirtualTables = errors.New("D1 Export error: cannot export databases with Virtual Tables (fts5)")

// DumpOptions mirrors the export request's dump_options.
type DumpOptions struct {
	NoData   bool     `json:"no_data"`
	NoSchema bool     `json:"no_schema"`
	Tables   []string `json:"tables"`
	// ExactIntegers writes integers beyond ±2^53 exactly. D1 (workerd) coerces
	// every integer to a JavaScript double while dumping, so by default the
	// emulator loses their precision the same way.
	ExactIntegers bool `json:"-"`
}

// dumpSQL writes db's content in D1's export format (miniflare's dumpSql, itself
// a port of sqlite3 shell's .dump): statements joined by "\n", no trailing
// newline. Rows are streamed from SQLite straight into w.
func dumpSQL(ctx context.Context, db *sql.DB, opts DumpOptions, w io.Writer) error {
	bw := bufio.NewWriterSize(w, 256<<10)
	first := true
	emit := func(s string) error {
		if !first {
			if err := bw.WriteByte('\n'); err != nil {
				return err
			}
		}
		first = false
		_, err := bw.WriteString(s)
		return err
	}
	filter := map[string]bool{}
	for _, t := range opts.Tables {
		filter[t] = true
	}
	if err := emit("PRAGMA defer_foreign_keys=TRUE;"); err != nil {
		return err
	}
	type tbl struct{ name, sql string }
	var tables []tbl
	rows, err := db.QueryContext(ctx, `SELECT name, sql FROM sqlite_schema AS o WHERE type=='table' AND sql NOT NULL ORDER BY tbl_name='sqlite_sequence', rowid`)
	if err != nil {
		return fmt.Errorf("list tables: %w", err)
	}
	for rows.Next() {
		var t tbl
		if err := rows.Scan(&t.name, &t.sql); err != nil {
			rows.Close()
			return err
		}
		tables = append(tables, t)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	for _, t := range tables {
		if len(filter) > 0 && !filter[t.name] {
			continue
		}
		switch {
		case t.name == "sqlite_sequence":
			if !opts.NoSchema {
				if err := emit("DELETE FROM sqlite_sequence;"); err != nil {
					return err
				}
			}
		case strings.HasPrefix(t.name, "sqlite_stat"):
			if !opts.NoSchema {
				if err := emit("ANALYZE sqlite_schema;"); err != nil {
					return err
				}
			}
		case strings.HasPrefix(t.sql, "CREATE VIRTUAL TABLE"):
			return ErrVirtualTables
		case strings.HasPrefix(t.name, "_cf_") || strings.HasPrefix(t.name, "sqlite_"):
			continue
		default:
			if !opts.NoSchema {
				s := t.sql + ";"
				if strings.HasPrefix(t.sql, `CREATE TABLE '`) || strings.HasPrefix(t.sql, `CREATE TABLE "`) {
					s = "CREATE TABLE IF NOT EXISTS " + t.sql[13:] + ";"
				}
				if err := emit(s); err != nil {
					return err
				}
			}
		}
		if opts.NoData {
			continue
		}
		if err := dumpRows(ctx, db, t.name, opts.ExactIntegers, emit); err != nil {
			return fmt.Errorf("dump %q: %w", t.name, err)
		}
	}
	if !opts.NoSchema {
		rows, err := db.QueryContext(ctx, `SELECT name, sql FROM sqlite_schema AS o WHERE sql NOT NULL AND type IN ('index','trigger','view') ORDER BY type COLLATE NOCASE`)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var name, s string
			if err := rows.Scan(&name, &s); err != nil {
				return err
			}
			if len(filter) > 0 && !filter[name] {
				continue
			}
			if err := emit(s + ";"); err != nil {
				return err
			}
		}
		if err := rows.Err(); err != nil {
			return err
		}
	}
	return bw.Flush()
}

func dumpRows(ctx context.Context, db *sql.DB, table string, exact bool, emit func(string) error) error {
	crow, err := db.QueryContext(ctx, "SELECT name FROM pragma_table_info(?)", table)
	if err != nil {
		return err
	}
	var cols []string
	for crow.Next() {
		var c string
		if err := crow.Scan(&c); err != nil {
			crow.Close()
			return err
		}
		cols = append(cols, c)
	}
	crow.Close()
	if len(cols) == 0 {
		return crow.Err()
	}
	sel := make([]string, len(cols))
	names := make([]string, len(cols))
	for i, c := range cols {
		// Unary + drops the declared type so the driver hands back raw values
		// (it would parse DATETIME-declared text into time.Time otherwise).
		sel[i] = "+" + escapeID(c)
		names[i] = escapeID(c)
	}
	prefix := "INSERT INTO " + escapeID(table) + " (" + strings.Join(names, ",") + ") VALUES("
	rows, err := db.QueryContext(ctx, "SELECT "+strings.Join(sel, ", ")+" FROM "+escapeID(table))
	if err != nil {
		return err
	}
	defer rows.Close()
	vals := make([]any, len(cols))
	ptrs := make([]any, len(cols))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	var sb strings.Builder
	for rows.Next() {
		if err := rows.Scan(ptrs...); err != nil {
			return err
		}
		sb.Reset()
		sb.WriteString(prefix)
		for i, v := range vals {
			if i > 0 {
				sb.WriteByte(',')
			}
			sb.WriteString(sqlLiteral(v, exact))
		}
		sb.WriteString(");")
		if err := emit(sb.String()); err != nil {
			return err
		}
	}
	return rows.Err()
}

func escapeID(id string) string { return `"` + strings.ReplaceAll(id, `"`, `""`) + `"` }

// sqlLiteral renders one cell as miniflare's dumpSql does.
func sqlLiteral(v any, exact bool) string {
	switch x := v.(type) {
	case nil:
		return "NULL"
	case int64:
		if exact {
			return strconv.FormatInt(x, 10)
		}
		return jsNumber(float64(x))
	case float64:
		return jsNumber(x)
	case string:
		return quoteText(jsString(x))
	case []byte:
		return "X'" + hex.EncodeToString(x) + "'"
	case bool:
		if x {
			return "1"
		}
		return "0"
	default:
		return quoteText(fmt.Sprint(x))
	}
}

// jsString is text as D1's dump sees it: the Workers runtime turns SQLite text into a JavaScript
// string, which replaces bytes that are not UTF-8 with U+FFFD (here: one per invalid byte).
func jsString(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	var b strings.Builder
	for _, r := range s {
		b.WriteRune(r)
	}
	return b.String()
}

// quoteText ports sqlite shell's output_quoted_escaped_string as miniflare does.
func quoteText(v string) string {
	hasNL := strings.Contains(v, "\n")
	hasCR := strings.Contains(v, "\r")
	if !hasNL && !hasCR {
		return "'" + strings.ReplaceAll(v, "'", "''") + "'"
	}
	nl := unusedString(v, `\n`, `\012`)
	cr := unusedString(v, `\r`, `\015`)
	esc := strings.ReplaceAll(v, "'", "''")
	esc = strings.ReplaceAll(esc, "\n", nl)
	esc = strings.ReplaceAll(esc, "\r", cr)
	out := "'" + esc + "'"
	if hasCR {
		out = "replace(" + out + ",'" + cr + "',char(13))"
	}
	if hasNL {
		out = "replace(" + out + ",'" + nl + "',char(10))"
	}
	return out
}

func unusedString(v, primary, secondary string) string {
	if !strings.Contains(v, primary) {
		return primary
	}
	if !strings.Contains(v, secondary) {
		return secondary
	}
	for i := 0; ; i++ {
		c := "(" + primary + strconv.Itoa(i) + ")"
		if !strings.Contains(v, c) {
			return c
		}
	}
}

// jsNumber formats f like JavaScript's Number.prototype.toString, which is what
// the D1 dump writes for every numeric cell.
func jsNumber(f float64) string {
	switch {
	case math.IsNaN(f):
		return "NaN"
	case math.IsInf(f, 1):
		return "Infinity"
	case math.IsInf(f, -1):
		return "-Infinity"
	case f == 0:
		return "0"
	}
	sign := ""
	if f < 0 {
		sign = "-"
		f = -f
	}
	// shortest round-trip digits and decimal exponent
	e := strconv.FormatFloat(f, 'e', -1, 64) // d.ddddde±XX
	mant, expS, _ := strings.Cut(e, "e")
	digits := strings.Replace(mant, ".", "", 1)
	exp, _ := strconv.Atoi(expS)
	k := len(digits)
	n := exp + 1 // position of the decimal point relative to digits
	switch {
	case k <= n && n <= 21:
		return sign + digits + strings.Repeat("0", n-k)
	case 0 < n && n <= 21:
		return sign + digits[:n] + "." + digits[n:]
	case -6 < n && n <= 0:
		return sign + "0." + strings.Repeat("0", -n) + digits
	}
	es := "+"
	if n-1 < 0 {
		es = "-"
	}
	ev := n - 1
	if ev < 0 {
		ev = -ev
	}
	if k == 1 {
		return sign + digits + "e" + es + strconv.Itoa(ev)
	}
	return sign + digits[:1] + "." + digits[1:] + "e" + es + strconv.Itoa(ev)
}

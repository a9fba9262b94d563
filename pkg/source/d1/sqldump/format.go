package sqldump

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// QuoteIdent quotes an identifier the way D1's dump does ("…" with "" doubling), so any name,
// including keywords and names with quotes or spaces, is safe in generated SQL.
func QuoteIdent(name string) string {
	return `"` + strings.ReplaceAll(name, `"`, `""`) + `"`
}

// FormatInsert renders one row as a D1-dump-compatible statement,
// INSERT INTO "t" ("a","b") VALUES(…); — used for rows cfbackup pages out itself (e.g. the content of
// an FTS5 table that D1 refuses to export) so they restore through the same paths as exported rows.
//
// Literal encoding matches dumpSql: nil → NULL; strings '…' with ” doubling (CAST(X'…' AS TEXT)
// when they hold a NUL byte, which would end the statement's text), and a string holding
// \n or \r wrapped in replace(…,'\n',char(10)) exactly as D1/sqlite3 do so each statement stays on
// one line; []byte → X'hex' (also when nil or empty); integers exact; float64 in the shortest form that round-trips, always
// with a '.' or exponent so it stays REAL (±Inf as ±9.0e999, NaN as NULL, as SQLite stores it);
// bool → 1/0; json.Number verbatim when it is a valid number (quoted as text otherwise). Other types
// are written as their fmt.Sprint text.
func FormatInsert(table string, columns []string, values []any) string {
	var b strings.Builder
	b.WriteString("INSERT INTO ")
	b.WriteString(QuoteIdent(table))
	b.WriteString(" (")
	for i, c := range columns {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(QuoteIdent(c))
	}
	b.WriteString(") VALUES(")
	for i, v := range values {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(FormatValue(v))
	}
	b.WriteString(");")
	return b.String()
}

// FormatValue renders one SQL literal with FormatInsert's encoding.
func FormatValue(v any) string {
	switch x := v.(type) {
	case nil:
		return "NULL"
	case string:
		return quoteString(x)
	case []byte: // nil too: database/sql scans NULL into any as nil, and an empty BLOB may come back as []byte(nil)
		return "X'" + hex.EncodeToString(x) + "'"
	case int64:
		return strconv.FormatInt(x, 10)
	case int:
		return strconv.Itoa(x)
	case int32:
		return strconv.FormatInt(int64(x), 10)
	case int16:
		return strconv.FormatInt(int64(x), 10)
	case int8:
		return strconv.FormatInt(int64(x), 10)
	case uint8:
		return strconv.FormatUint(uint64(x), 10)
	case uint16:
		return strconv.FormatUint(uint64(x), 10)
	case uint32:
		return strconv.FormatUint(uint64(x), 10)
	case uint64:
		return strconv.FormatUint(x, 10) // above MaxInt64 SQLite reads it as REAL, as it would store it
	case bool:
		if x {
			return "1"
		}
		return "0"
	case float32:
		return formatFloat(float64(x))
	case float64:
		return formatFloat(x)
	case json.Number:
		if isNumber(string(x)) {
			return string(x)
		}
		return quoteString(string(x))
	default:
		return quoteString(fmt.Sprint(v))
	}
}

func formatFloat(f float64) string {
	switch {
	case math.IsNaN(f):
		return "NULL"
	case math.IsInf(f, 1):
		return "9.0e999"
	case math.IsInf(f, -1):
		return "-9.0e999"
	}
	s := strconv.FormatFloat(f, 'g', -1, 64)
	if !strings.ContainsAny(s, ".eEn") {
		s += ".0"
	}
	return s
}

// isNumber accepts JSON number syntax, a subset of SQLite numeric literals.
func isNumber(s string) bool {
	if s == "" {
		return false
	}
	return json.Valid([]byte(s)) && (s[0] == '-' || s[0] >= '0' && s[0] <= '9')
}

// quoteString ports dumpSql's outputQuotedEscapedString.
func quoteString(v string) string {
	if strings.IndexByte(v, 0) >= 0 {
		// SQLite reads statement text only up to a NUL: write the bytes instead.
		return "CAST(X'" + hex.EncodeToString([]byte(v)) + "' AS TEXT)"
	}
	hasNL := strings.IndexByte(v, '\n') >= 0
	hasCR := strings.IndexByte(v, '\r') >= 0
	esc := strings.ReplaceAll(v, "'", "''")
	if !hasNL && !hasCR {
		return "'" + esc + "'"
	}
	nl := unusedString(v, `\n`, `\012`)
	cr := unusedString(v, `\r`, `\015`)
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

// RewriteNUL returns sql with every '…' string literal that holds a NUL byte replaced by
// CAST(X'…' AS TEXT) of the same bytes. D1's export writes such text raw, but SQLite reads a
// statement's text only up to its first NUL, so the literal would end the statement early; the
// CAST stores exactly the original bytes (with TEXT storage class) and is subject to the same
// column affinity. Statements without a NUL come back unchanged.
func RewriteNUL(sql string) string {
	if strings.IndexByte(sql, 0) < 0 {
		return sql
	}
	toks, _ := tokens(sql)
	var b strings.Builder
	pos := 0
	for _, t := range toks {
		if t.kind != tkString || strings.IndexByte(sql[t.start:t.end], 0) < 0 {
			continue
		}
		v := strings.ReplaceAll(sql[t.start+1:t.end-1], "''", "'")
		b.WriteString(sql[pos:t.start])
		b.WriteString("CAST(X'" + hex.EncodeToString([]byte(v)) + "' AS TEXT)")
		pos = t.end
	}
	b.WriteString(sql[pos:])
	return b.String()
}

// RewriteNonFinite replaces the bare words Infinity and NaN that D1's export writes for infinite
// REAL values (JavaScript's Number.prototype.toString) with 9e999 (SQLite reads it as +Inf) and
// NULL (SQLite stores NaN as NULL); "-Infinity" thus becomes -9e999. Quoted text is left alone.
func RewriteNonFinite(sql string) string {
	if !strings.Contains(sql, "Infinity") && !strings.Contains(sql, "NaN") {
		return sql
	}
	toks, _ := tokens(sql)
	var b strings.Builder
	pos := 0
	for _, t := range toks {
		if t.kind != tkWord {
			continue
		}
		var rep string
		switch sql[t.start:t.end] {
		case "Infinity":
			rep = "9e999"
		case "NaN":
			rep = "NULL"
		default:
			continue
		}
		b.WriteString(sql[pos:t.start])
		b.WriteString(rep)
		pos = t.end
	}
	b.WriteString(sql[pos:])
	return b.String()
}

// FoldName folds an SQL identifier the way SQLite compares names: ASCII letters only ("Orders" and
// "ORDERS" are one table, "Åb" and "åb" are two).
func FoldName(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c >= 'A' && c <= 'Z' {
			b := []byte(s)
			for j := i; j < len(b); j++ {
				if b[j] >= 'A' && b[j] <= 'Z' {
					b[j] += 'a' - 'A'
				}
			}
			return string(b)
		}
	}
	return s
}

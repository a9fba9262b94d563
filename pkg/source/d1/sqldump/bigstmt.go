package sqldump

import (
	"encoding/hex"
	"fmt"
	"io"
	"strconv"
	"strings"
	"unicode/utf8"
)

// StageTable is the scratch table RewriteLarge builds large values in. The name has no leading
// underscore (D1 reserves "_cf_…") and is created with a plain CREATE TABLE, so a user table of the
// same name makes the import fail loudly instead of being dropped.
const StageTable = "cfbackup_stage"

// Why a stage table and not "INSERT a prefix, then UPDATE col = col || part": every UPDATE stores an
// intermediate value into the real column, so column affinity converts a numeric-looking prefix
// ('00123' becomes 123 in an INTEGER column, and the zeros are lost for good), and CHECK (e.g.
// json_valid), UNIQUE, NOT NULL and triggers see half values. Building each large value in an untyped
// column of a scratch table and then running the original INSERT once, with the large literal
// replaced by (SELECT v FROM stage WHERE k=n), gives the target table exactly one INSERT of exactly
// the original value: same affinity, constraints, conflict clause and triggers, and it also works for
// WITHOUT ROWID tables and INSERTs without a column list.

// RewriteLarge returns statements equivalent to st, each at most limit bytes; small statements come
// back unchanged. An INSERT … VALUES whose string/BLOB literals (including D1's
// replace('…','\n',char(10)) newline encoding) make it too large is rewritten into: CREATE TABLE of
// StageTable, the large values built there in chunks, the original INSERT with those literals
// replaced by subqueries, DROP TABLE. Anything else over the limit fails with ErrStatementTooLarge
// naming the table and what the operator can do.
func RewriteLarge(st Statement, limit int) ([]string, error) {
	if len(st.SQL) <= limit {
		return []string{st.SQL}, nil
	}
	tooLarge := func(why string) error {
		return fmt.Errorf("statement %d (table %q, %d bytes, %s…): %w (limit %d): %s; restore this table to a local SQLite file (restore --to-file) or reload its large rows with bound parameters through a Workers binding",
			st.Number, st.Table, len(st.SQL), prefix(st.SQL), ErrStatementTooLarge, limit, why)
	}
	if st.Kind != Insert {
		return nil, tooLarge("only INSERT … VALUES statements can be split")
	}
	vals, ok := parseValues(st.SQL)
	if !ok {
		return nil, tooLarge("not an INSERT … VALUES(…) statement this tool can parse")
	}
	// Replace the largest decodable values until the INSERT fits.
	order := make([]int, 0, len(vals))
	for i := range vals {
		if vals[i].decoded {
			order = append(order, i)
		}
	}
	sortBySizeDesc(order, vals)
	size := len(st.SQL)
	var staged []int // indexes into vals, in statement order after sorting below
	for _, i := range order {
		if size <= limit {
			break
		}
		sub := len(subquery(len(order))) // widest key: a conservative estimate
		if vals[i].end-vals[i].start <= sub {
			break
		}
		size += sub - (vals[i].end - vals[i].start)
		staged = append(staged, i)
	}
	if size > limit {
		return nil, tooLarge(fmt.Sprintf("still %d bytes after moving its string and BLOB values out", size))
	}
	sortByPos(staged, vals)
	out := []string{"CREATE TABLE " + QuoteIdent(StageTable) + " (k INTEGER PRIMARY KEY, v);"}
	var final strings.Builder
	final.Grow(size)
	pos := 0
	for n, i := range staged {
		k := n + 1
		v := vals[i]
		stmts, err := stageValue(k, v, limit)
		if err != nil {
			return nil, tooLarge(err.Error())
		}
		out = append(out, stmts...)
		final.WriteString(st.SQL[pos:v.start])
		final.WriteString(subquery(k))
		pos = v.end
	}
	final.WriteString(st.SQL[pos:])
	if final.Len() > limit {
		return nil, tooLarge(fmt.Sprintf("still %d bytes after moving its string and BLOB values out", final.Len()))
	}
	out = append(out, final.String(), "DROP TABLE "+QuoteIdent(StageTable)+";")
	return out, nil
}

func subquery(k int) string {
	return "(SELECT v FROM " + QuoteIdent(StageTable) + " WHERE k=" + strconv.Itoa(k) + ")"
}

func sortBySizeDesc(idx []int, vals []valueExpr) {
	for a := 1; a < len(idx); a++ { // insertion sort: rows have at most 100 columns in D1
		for b := a; b > 0; b-- {
			x, y := vals[idx[b-1]], vals[idx[b]]
			if x.end-x.start >= y.end-y.start {
				break
			}
			idx[b-1], idx[b] = idx[b], idx[b-1]
		}
	}
}

func sortByPos(idx []int, vals []valueExpr) {
	for a := 1; a < len(idx); a++ {
		for b := a; b > 0 && vals[idx[b-1]].start > vals[idx[b]].start; b-- {
			idx[b-1], idx[b] = idx[b], idx[b-1]
		}
	}
}

// stageValue builds value v under key k in the stage table in statements of at most limit bytes.
// Text is cut only between UTF-8 characters and escaped per chunk (FormatValue), so no ” escape or
// newline marker is ever split; BLOB chunks are concatenated with CAST(… AS BLOB) so the column keeps
// BLOB type and every byte, NULs included.
func stageValue(k int, v valueExpr, limit int) ([]string, error) {
	stage := QuoteIdent(StageTable)
	ks := strconv.Itoa(k)
	first := func(lit string) string { return "INSERT INTO " + stage + " (k,v) VALUES(" + ks + "," + lit + ");" }
	next := func(lit string) string {
		if v.blob {
			return "UPDATE " + stage + " SET v=CAST(v||" + lit + " AS BLOB) WHERE k=" + ks + ";"
		}
		return "UPDATE " + stage + " SET v=v||" + lit + " WHERE k=" + ks + ";"
	}
	overhead := max(len(first("")), len(next("")))
	budget := limit - overhead
	if budget < 64 {
		return nil, fmt.Errorf("limit %d leaves no room for a value chunk", limit)
	}
	var out []string
	data := v.val
	for i := 0; i == 0 || len(data) > 0; i++ {
		var lit string
		var n int
		if v.blob {
			n = min(len(data), (budget-3)/2)
			lit = "X'" + hex.EncodeToString([]byte(data[:n])) + "'"
		} else {
			n = textChunk(data, budget)
			for {
				lit = FormatValue(data[:n])
				if len(lit) <= budget {
					break
				}
				n = runeCut(data, n*3/4)
				if n == 0 {
					return nil, fmt.Errorf("limit %d leaves no room for a text chunk", limit)
				}
			}
		}
		if i == 0 {
			out = append(out, first(lit))
		} else {
			out = append(out, next(lit))
		}
		data = data[n:]
	}
	return out, nil
}

// textChunk estimates how many bytes of s fit in a quoted literal of budget bytes, conservatively
// (quotes double, CR/LF become markers, plus room for the replace(…,char(10)) wrappers).
func textChunk(s string, budget int) int {
	cost := 2 + 2*40
	for i := 0; i < len(s); i++ {
		c := 1
		switch s[i] {
		case '\'':
			c = 2
		case '\n', '\r':
			c = 8
		}
		if cost+c > budget {
			return runeCut(s, i)
		}
		cost += c
	}
	return len(s)
}

// runeCut moves n back to the start of a UTF-8 character (at most 3 bytes; invalid text is cut as is).
func runeCut(s string, n int) int {
	if n >= len(s) {
		return len(s)
	}
	for j := 0; j < utf8.UTFMax-1 && n > 0 && !utf8.RuneStart(s[n]); j++ {
		n--
	}
	if n == 0 && len(s) > 0 {
		_, w := utf8.DecodeRuneInString(s)
		return w // never return an empty chunk while data remains
	}
	return n
}

// ---- parsing the VALUES list ----

type tkind uint8

const (
	tkPunct tkind = iota
	tkWord
	tkString
	tkBlob
	tkIdent // "…", […], `…`
)

type span struct {
	kind       tkind
	start, end int // byte range in the statement
}

// tokens lexes a statement into spans, skipping whitespace and comments. ok is false when a
// quote or comment is not closed.
func tokens(s string) ([]span, bool) {
	var out []span
	i := 0
	for i < len(s) {
		c := s[i]
		switch {
		case c == ' ' || c == '\n' || c == '\t' || c == '\r' || c == '\f' || c == '\v':
			i++
		case c == '-' && strings.HasPrefix(s[i:], "--"):
			j := strings.IndexByte(s[i:], '\n')
			if j < 0 {
				return out, true
			}
			i += j + 1
		case c == '/' && strings.HasPrefix(s[i:], "/*"):
			j := strings.Index(s[i+2:], "*/")
			if j < 0 {
				return out, false
			}
			i += j + 4
		case c == '\'' || c == '"' || c == '`' || c == '[':
			q := c
			if c == '[' {
				q = ']'
			}
			j := i + 1
			for {
				k := strings.IndexByte(s[j:], q)
				if k < 0 {
					return out, false
				}
				j += k + 1
				if q != ']' && j < len(s) && s[j] == q {
					j++
					continue
				}
				break
			}
			kind := tkIdent
			if c == '\'' {
				kind = tkString
				if n := len(out); n > 0 && out[n-1].kind == tkWord && out[n-1].end == i && (s[i-1] == 'x' || s[i-1] == 'X') && out[n-1].end-out[n-1].start == 1 {
					out[n-1] = span{tkBlob, i - 1, j}
					i = j
					continue
				}
			}
			out = append(out, span{kind, i, j})
			i = j
		case identChar[c]:
			j := i + 1
			for j < len(s) && identChar[s[j]] {
				j++
			}
			out = append(out, span{tkWord, i, j})
			i = j
		default:
			out = append(out, span{tkPunct, i, i + 1})
			i++
		}
	}
	return out, true
}

// valueExpr is one top-level expression of a VALUES row; decoded ones carry their value.
type valueExpr struct {
	start, end int
	decoded    bool
	blob       bool
	val        string // text, or BLOB bytes
}

// parseValues finds every expression of the VALUES rows of an INSERT and decodes the string and
// BLOB ones. Numbers, NULL and other expressions are kept verbatim (never reformatted).
func parseValues(sql string) ([]valueExpr, bool) {
	toks, ok := tokens(sql)
	if !ok {
		return nil, false
	}
	i, depth := 0, 0
	for ; i < len(toks); i++ {
		t := toks[i]
		switch {
		case t.kind == tkPunct && sql[t.start] == '(':
			depth++
		case t.kind == tkPunct && sql[t.start] == ')':
			depth--
		case t.kind == tkWord && depth == 0 && strings.EqualFold(sql[t.start:t.end], "VALUES"):
			goto rows
		}
	}
	return nil, false
rows:
	i++
	var out []valueExpr
	for {
		if i >= len(toks) || !isPunct(sql, toks[i], '(') {
			return nil, false
		}
		i++
		for {
			j, depth := i, 0
			for ; j < len(toks); j++ {
				t := toks[j]
				if t.kind != tkPunct {
					continue
				}
				c := sql[t.start]
				if c == '(' {
					depth++
				} else if c == ')' {
					if depth == 0 {
						break
					}
					depth--
				} else if c == ',' && depth == 0 {
					break
				}
			}
			if j >= len(toks) || j == i {
				return nil, false
			}
			e := valueExpr{start: toks[i].start, end: toks[j-1].end}
			if v, blob, n, ok := decodeExpr(sql, toks[i:j]); ok && n == j-i {
				e.decoded, e.blob, e.val = true, blob, v
			}
			out = append(out, e)
			i = j + 1
			if sql[toks[j].start] == ')' {
				break
			}
		}
		if i < len(toks) && isPunct(sql, toks[i], ',') {
			i++
			continue
		}
		return out, true
	}
}

func isPunct(sql string, t span, c byte) bool {
	return t.kind == tkPunct && sql[t.start] == c
}

// decodeExpr evaluates the literal forms dumps use: '…', X'…', replace(e,e,e) and char(n,…).
// It returns the value, whether it is a BLOB, and how many tokens it used.
func decodeExpr(sql string, toks []span) (val string, blob bool, n int, ok bool) {
	if len(toks) == 0 {
		return "", false, 0, false
	}
	t := toks[0]
	switch t.kind {
	case tkString:
		return strings.ReplaceAll(sql[t.start+1:t.end-1], "''", "'"), false, 1, true
	case tkBlob:
		b, err := hex.DecodeString(sql[t.start+2 : t.end-1])
		if err != nil {
			return "", false, 0, false
		}
		return string(b), true, 1, true
	case tkWord:
	default:
		return "", false, 0, false
	}
	fn := strings.ToLower(sql[t.start:t.end])
	// CAST(X'…' AS TEXT): text with NUL bytes or exact bytes, as cfbackup writes it.
	if fn == "cast" && len(toks) >= 6 && isPunct(sql, toks[1], '(') && toks[2].kind == tkBlob &&
		toks[3].kind == tkWord && strings.EqualFold(sql[toks[3].start:toks[3].end], "AS") &&
		toks[4].kind == tkWord && strings.EqualFold(sql[toks[4].start:toks[4].end], "TEXT") && isPunct(sql, toks[5], ')') {
		b, err := hex.DecodeString(sql[toks[2].start+2 : toks[2].end-1])
		if err != nil {
			return "", false, 0, false
		}
		return string(b), false, 6, true
	}
	if fn != "replace" && fn != "char" || len(toks) < 3 || !isPunct(sql, toks[1], '(') {
		return "", false, 0, false
	}
	i := 2
	var args []string
	for {
		if fn == "char" {
			if i >= len(toks) || toks[i].kind != tkWord {
				return "", false, 0, false
			}
			c, err := strconv.Atoi(sql[toks[i].start:toks[i].end])
			if err != nil || c <= 0 || c > utf8.MaxRune || !utf8.ValidRune(rune(c)) {
				return "", false, 0, false
			}
			args = append(args, string(rune(c)))
			i++
		} else {
			v, b, m, ok := decodeExpr(sql, toks[i:])
			if !ok || b {
				return "", false, 0, false
			}
			args = append(args, v)
			i += m
		}
		if i >= len(toks) || toks[i].kind != tkPunct {
			return "", false, 0, false
		}
		switch sql[toks[i].start] {
		case ',':
			i++
			continue
		case ')':
			i++
		default:
			return "", false, 0, false
		}
		break
	}
	if fn == "char" {
		return strings.Join(args, ""), false, i, true
	}
	if len(args) != 3 {
		return "", false, 0, false
	}
	if args[1] == "" {
		return args[0], false, i, true // SQLite: an empty pattern returns the text unchanged
	}
	return strings.ReplaceAll(args[0], args[1], args[2]), false, i, true
}

// ---- streaming ----

type rewriter struct {
	sc    *Scanner
	limit int
	buf   []byte
	err   error
}

// NewRewriter streams r (SQL text) and yields the same statements with large INSERTs rewritten by
// RewriteLarge (each statement on its own line, ending ";\n"), so the import planner never meets a
// statement over limit. A statement that cannot be rewritten makes Read fail with
// ErrStatementTooLarge. Memory holds one statement and its rewrite.
func NewRewriter(r io.Reader, limit int, maxStatement int) io.Reader {
	if limit <= 0 {
		limit = D1StatementLimit
	}
	return &rewriter{sc: NewScanner(r, maxStatement), limit: limit}
}

func (w *rewriter) Read(p []byte) (int, error) {
	for len(w.buf) == 0 {
		if w.err != nil {
			return 0, w.err
		}
		st, err := w.sc.Next()
		if err != nil {
			w.err = err
			continue
		}
		stmts, err := RewriteLarge(st, w.limit)
		if err != nil {
			w.err = err
			continue
		}
		w.buf = w.buf[:0]
		for _, s := range stmts {
			w.buf = append(w.buf, s...)
			w.buf = append(w.buf, '\n')
		}
	}
	n := copy(p, w.buf)
	w.buf = w.buf[n:]
	return n, nil
}

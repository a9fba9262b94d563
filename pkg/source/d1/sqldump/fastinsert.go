package sqldump

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// Restoring a dump is mostly INSERT statements of literal rows, and SQLite spends most of a load
// parsing and compiling each one (BenchmarkLoad: about half the time in sqlite3_prepare). The
// insert cache compiles `INSERT INTO <table> (<columns>) VALUES(?,…)` once per table shape and binds
// each row's literals to it. A bound value goes through the same column affinity as the literal
// would, so the stored value and storage class are the same; only literals whose value Go computes
// exactly as SQLite does are bound (integers that fit 64 bits, REALs of at most 18 significant
// digits in the normal range or overflowing to ±Inf, '…' text, non-empty X'…' blobs, NULL).
// Anything else — an expression, a comment, a huge integer, a long REAL, an empty blob (the driver
// would bind NULL) — falls back to executing the statement's text, as before. The prepared
// statement's text is the statement's own head, so the authorizer sees the same INSERT.

// Consecutive rows of one table shape are bound together, up to batchRows rows (and batchParams
// values) to one multi-row `INSERT … VALUES(?,…),(?,…),…`: per statement, SQLite opens its cursors,
// starts the write and (for an AUTOINCREMENT table) reads and writes sqlite_sequence, and the driver
// takes its locks, so a batch of 32 rows cuts the load's CPU by about a fifth (docs/D1.md, "Restore
// speed"). The rows of a batch are inserted in their order, with the same values and affinities,
// so the result is the same as one statement per row. If a batch fails on a constraint (SQLite
// then undoes that statement only), its rows are run again one by one so the error names the
// failing statement, as without batching.

// insertCacheSize bounds the prepared statements kept (one per table, column list and batch size).
const insertCacheSize = 64

// maxBoundColumns is the most literals a row may have to be bound (SQLite's default column limit).
const maxBoundColumns = 2000

// batchRows is the most rows one bound INSERT carries; batchParams bounds its values (SQLite's
// limit on parameters is 32766; a smaller batch of a wide table gains as much).
const (
	batchRows   = 32
	batchParams = 999
)

// noInsertCache turns the cache off (benchmarks compare both ways); noBatch binds row by row.
var noInsertCache, noBatch = false, false

type stmtKey struct {
	head       string
	cols, rows int
}

type insertCache struct {
	conn  *sql.Conn
	stmts map[stmtKey]driver.Stmt
	named []driver.NamedValue
	bound int64 // rows executed through the cache
	pend  []*scanned
}

// execFunc runs one step of a load for statement st, naming st in its error (Load.exec).
type execFunc func(st *Statement, f func() error) error

// run executes one dump statement: a literal INSERT joins the pending batch (run when full, or when
// a statement of another shape comes); after the pending rows, a fixup UPDATE runs bound to its
// template (fastupdate.go) and anything else as text.
func (c *insertCache) run(ctx context.Context, tx *sql.Tx, it *scanned, exec execFunc) error {
	if it.head != "" && !it.whole {
		if len(c.pend) > 0 && (c.pend[0].head != it.head || len(c.pend[0].args) != len(it.args)) {
			if err := c.flush(exec); err != nil {
				return err
			}
		}
		c.pend = append(c.pend, it)
		if noBatch || len(c.pend) >= batchRows || (len(c.pend)+1)*len(it.args) > batchParams {
			return c.flush(exec)
		}
		return nil
	}
	if err := c.flush(exec); err != nil {
		return err
	}
	if it.head != "" {
		return exec(&it.st, func() error { return c.exec([]*scanned{it}) })
	}
	return exec(&it.st, func() error {
		_, err := tx.ExecContext(ctx, it.st.SQL)
		return err
	})
}

// flush executes the pending rows: one row alone, several as one statement. A constraint error of
// a batch runs its rows again one at a time, so the error names the row's own statement.
func (c *insertCache) flush(exec execFunc) error {
	pend := c.pend
	c.pend = c.pend[:0]
	defer clear(pend) // do not keep rows alive until the next batch
	switch len(pend) {
	case 0:
		return nil
	case 1:
		return exec(&pend[0].st, func() error { return c.exec(pend) })
	}
	var batchErr error
	err := exec(&pend[0].st, func() error {
		batchErr = c.exec(pend)
		return batchErr
	})
	if err == nil || !isConstraint(batchErr) {
		return err
	}
	for i := range pend {
		if rerr := exec(&pend[i].st, func() error { return c.exec(pend[i : i+1]) }); rerr != nil {
			return rerr
		}
	}
	return err
}

// isConstraint reports a SQLite constraint error (UNIQUE, NOT NULL, CHECK, a STRICT type…), after
// which SQLite has undone the failing statement and the transaction goes on.
func isConstraint(err error) bool {
	var se *sqlite.Error
	return errors.As(err, &se) && se.Code()&0xff == sqlite3.SQLITE_CONSTRAINT
}

// exec runs rows (literal INSERTs of one shape, split by splitInsert) through one cached prepared
// statement. The driver is called directly (inside the caller's transaction on the same
// connection): database/sql's argument conversion and the driver's per-call cancellation watcher (a
// goroutine per statement) cost as much as the insert. Load checks ctx between statements.
func (c *insertCache) exec(rows []*scanned) (err error) {
	c.named = c.named[:0]
	for _, r := range rows {
		for _, v := range r.args {
			c.named = append(c.named, driver.NamedValue{Ordinal: len(c.named) + 1, Value: v})
		}
	}
	key := stmtKey{head: rows[0].head, cols: len(rows[0].args), rows: len(rows)}
	if rows[0].whole {
		key.rows = 0 // the head is the whole statement
	}
	ctx := context.Background()
	err = c.conn.Raw(func(dc any) error {
		stmt := c.stmts[key]
		if stmt == nil {
			if c.stmts == nil || len(c.stmts) >= insertCacheSize {
				c.closeStmts()
				c.stmts = map[stmtKey]driver.Stmt{}
			}
			pc, ok := dc.(driver.ConnPrepareContext)
			if !ok {
				return fmt.Errorf("driver connection %T cannot prepare", dc)
			}
			var err error
			if stmt, err = pc.PrepareContext(ctx, placeholders(key)); err != nil {
				return err
			}
			c.stmts[key] = stmt
		}
		se, ok := stmt.(driver.StmtExecContext)
		if !ok {
			return fmt.Errorf("driver statement %T cannot execute", stmt)
		}
		_, err := se.ExecContext(ctx, c.named)
		return err
	})
	clear(c.named) // do not keep row values alive until the next row
	if err == nil {
		c.bound += int64(len(rows))
	}
	return err
}

// placeholders is the head followed by k.rows groups (?,?,…) of k.cols values (the head alone for
// rows 0: an UPDATE's template).
func placeholders(k stmtKey) string {
	if k.rows == 0 {
		return k.head
	}
	q := make([]byte, 0, len(k.head)+k.rows*(2*k.cols+2))
	q = append(q, k.head...)
	for r := range k.rows {
		if r > 0 {
			q = append(q, ',')
		}
		q = append(q, '(')
		for i := range k.cols {
			if i > 0 {
				q = append(q, ',')
			}
			q = append(q, '?')
		}
		q = append(q, ')')
	}
	return string(q)
}

func (c *insertCache) closeStmts() {
	for _, s := range c.stmts {
		s.Close()
	}
	c.stmts = nil
}

// close finalizes the cached statements; it must run before the connection is used otherwise.
func (c *insertCache) close() {
	if len(c.stmts) > 0 {
		c.conn.Raw(func(any) error { c.closeStmts(); return nil }) //nolint:errcheck // Close of a modernc statement does not fail
	}
}

// splitInsert parses `INSERT INTO name [(col, …)] VALUES(literal, …);` strictly and returns the
// statement's head up to and including VALUES (the cache key; the literals become ?) and the
// literals' values appended to args. Names are bare words or "…" identifiers; whitespace only
// between tokens, no comments; the row must end the statement.
func splitInsert(s string, args []any) (head string, out []any, ok bool) {
	p := &litParser{s: s}
	if !p.word("INSERT") || !p.word("INTO") || !p.ident() {
		return "", args, false
	}
	p.space()
	if p.peek() == '(' {
		p.i++
		for {
			if !p.ident() {
				return "", args, false
			}
			p.space()
			c := p.peek()
			p.i++
			if c == ')' {
				break
			}
			if c != ',' {
				return "", args, false
			}
		}
	}
	if !p.word("VALUES") {
		return "", args, false
	}
	head = s[:p.i]
	p.space()
	if p.peek() != '(' {
		return "", args, false
	}
	p.i++
	for {
		v, ok := p.literal()
		if !ok || len(args) == maxBoundColumns {
			return "", args, false
		}
		args = append(args, v)
		p.space()
		c := p.peek()
		p.i++
		if c == ')' {
			break
		}
		if c != ',' {
			return "", args, false
		}
	}
	p.space()
	if p.peek() != ';' {
		return "", args, false
	}
	p.i++
	p.space()
	return head, args, p.i == len(s)
}

type litParser struct {
	s string
	i int
}

func (p *litParser) peek() byte {
	if p.i < len(p.s) {
		return p.s[p.i]
	}
	return 0
}

func (p *litParser) space() {
	for p.i < len(p.s) {
		switch p.s[p.i] {
		case ' ', '\t', '\n', '\r', '\f':
			p.i++
		default:
			return
		}
	}
}

func isWordByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c >= 0x80
}

// word consumes the keyword kw (any case) as a whole word, after optional whitespace.
func (p *litParser) word(kw string) bool {
	p.space()
	end := p.i + len(kw)
	if end > len(p.s) || !strings.EqualFold(p.s[p.i:end], kw) || end < len(p.s) && isWordByte(p.s[end]) {
		return false
	}
	p.i = end
	return true
}

// ident consumes a bare ASCII identifier or a "…" quoted one, after optional whitespace.
func (p *litParser) ident() bool {
	p.space()
	start := p.i
	if p.peek() == '"' {
		for p.i++; p.i < len(p.s); p.i++ {
			if p.s[p.i] == '"' {
				if p.i+1 < len(p.s) && p.s[p.i+1] == '"' {
					p.i++
					continue
				}
				p.i++
				return p.i-start > 2
			}
		}
		return false
	}
	for p.i < len(p.s) && isWordByte(p.s[p.i]) && p.s[p.i] < 0x80 {
		p.i++
	}
	return p.i > start && !(p.s[start] >= '0' && p.s[start] <= '9')
}

// literal parses one literal value, after optional whitespace.
func (p *litParser) literal() (any, bool) {
	p.space()
	switch c := p.peek(); {
	case c == '\'':
		return p.text()
	case c == 'X' || c == 'x':
		return p.blob()
	case c == 'N' || c == 'n':
		if p.word("NULL") {
			return nil, true
		}
		return nil, false
	case c == '-':
		p.i++
		return p.number(true)
	case c >= '0' && c <= '9' || c == '.':
		return p.number(false)
	}
	return nil, false
}

func (p *litParser) text() (any, bool) {
	start := p.i + 1
	escaped := false
	for p.i = start; p.i < len(p.s); p.i++ {
		if p.s[p.i] != '\'' {
			continue
		}
		if p.i+1 < len(p.s) && p.s[p.i+1] == '\'' {
			escaped = true
			p.i++
			continue
		}
		v := p.s[start:p.i]
		p.i++
		if strings.IndexByte(v, 0) >= 0 {
			return nil, false // SQLite would end the statement's text at the NUL
		}
		if escaped {
			v = strings.ReplaceAll(v, "''", "'")
		}
		return v, true
	}
	return nil, false
}

func (p *litParser) blob() (any, bool) {
	if p.i+1 >= len(p.s) || p.s[p.i+1] != '\'' {
		return nil, false
	}
	start := p.i + 2
	end := strings.IndexByte(p.s[start:], '\'')
	if end <= 0 { // unterminated, or X'' (the driver binds an empty blob as NULL)
		return nil, false
	}
	b, err := hex.DecodeString(p.s[start : start+end])
	if err != nil {
		return nil, false
	}
	p.i = start + end + 1
	return b, true
}

// number parses digits[.digits][e[+-]digits] (or .digits…) the way SQLite's tokenizer and
// sqlite3AtoF do, refusing what Go might compute differently: an integer beyond 64 bits (SQLite
// makes it a REAL), more than 18 significant digits (sqlite3AtoF uses only about the first 19), a
// result below the normal range (underflow), hex and digit separators.
func (p *litParser) number(neg bool) (any, bool) {
	start := p.i
	digits, sig, real := 0, 0, false
	leading := true
	for ; p.i < len(p.s); p.i++ {
		c := p.s[p.i]
		switch {
		case c >= '0' && c <= '9':
			digits++
			if c != '0' || !leading {
				leading = false
				sig++
			}
		case c == '.' && !real:
			real = true
		default:
			goto mantissaDone
		}
	}
mantissaDone:
	if digits == 0 {
		return nil, false
	}
	if c := p.peek(); c == 'e' || c == 'E' {
		real = true
		p.i++
		if c := p.peek(); c == '+' || c == '-' {
			p.i++
		}
		exp := p.i
		for p.i < len(p.s) && p.s[p.i] >= '0' && p.s[p.i] <= '9' {
			p.i++
		}
		if p.i == exp {
			return nil, false
		}
	}
	if p.i < len(p.s) && (isWordByte(p.s[p.i]) || p.s[p.i] == '.') {
		return nil, false
	}
	lit := p.s[start:p.i]
	if !real {
		if neg {
			lit = "-" + lit
		}
		n, err := strconv.ParseInt(lit, 10, 64)
		return n, err == nil
	}
	if sig > 18 {
		return nil, false
	}
	f, err := strconv.ParseFloat(lit, 64)
	switch {
	case err != nil && !(errors.Is(err, strconv.ErrRange) && math.IsInf(f, 0)):
		return nil, false
	case f == 0 && sig > 0, f != 0 && math.Abs(f) < 0x1p-1022:
		return nil, false // underflow or subnormal
	}
	if neg {
		f = -f
	}
	return f, true
}

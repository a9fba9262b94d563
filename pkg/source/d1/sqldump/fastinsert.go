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

// insertCacheSize bounds the prepared statements kept (one per table and column list).
const insertCacheSize = 64

// maxBoundColumns is the most literals a row may have to be bound (SQLite's default column limit).
const maxBoundColumns = 2000

// noInsertCache turns the cache off (benchmarks compare both ways).
var noInsertCache = false

type insertCache struct {
	conn  *sql.Conn
	stmts map[string]driver.Stmt
	named []driver.NamedValue
	bound int64 // statements executed through the cache
}

// exec runs one literal INSERT (split by splitInsert into head and args) through a cached
// prepared statement. The driver is called directly (inside the caller's transaction on the same
// connection): database/sql's argument conversion and the driver's per-call cancellation watcher (a
// goroutine per statement) cost as much as the insert. Load checks ctx between statements.
func (c *insertCache) exec(head string, args []any) (err error) {
	c.named = c.named[:0]
	for i, v := range args {
		c.named = append(c.named, driver.NamedValue{Ordinal: i + 1, Value: v})
	}
	ctx := context.Background()
	err = c.conn.Raw(func(dc any) error {
		stmt := c.stmts[head]
		if stmt == nil {
			if c.stmts == nil || len(c.stmts) >= insertCacheSize {
				c.closeStmts()
				c.stmts = map[string]driver.Stmt{}
			}
			pc, ok := dc.(driver.ConnPrepareContext)
			if !ok {
				return fmt.Errorf("driver connection %T cannot prepare", dc)
			}
			var err error
			if stmt, err = pc.PrepareContext(ctx, placeholders(head, len(args))); err != nil {
				return err
			}
			c.stmts[head] = stmt
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
		c.bound++
	}
	return err
}

// placeholders is head followed by (?,?,…) for n values.
func placeholders(head string, n int) string {
	q := make([]byte, 0, len(head)+2*n+1)
	q = append(q, head...)
	q = append(q, '(')
	for i := range n {
		if i > 0 {
			q = append(q, ',')
		}
		q = append(q, '?')
	}
	return string(append(q, ')'))
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

// run executes one dump statement: a literal INSERT through the cache, anything else as text.
func (c *insertCache) run(ctx context.Context, tx *sql.Tx, it *scanned) error {
	if it.head != "" {
		return c.exec(it.head, it.args)
	}
	_, err := tx.ExecContext(ctx, it.st.SQL)
	return err
}

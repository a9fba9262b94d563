// Package sqldump reads and writes the SQL text dumps that D1 exports and imports.
//
// A D1 export is one SQL text file (up to ~10 GB) that cfbackup must split into one archive item per
// table, load into a local SQLite file, or cut into import files under D1's limits, all without ever
// holding more than one statement in memory. The pieces here are the statement Scanner (a lexer that
// knows just enough SQL to find statement boundaries), Split (per-table parts), Load/Check (local
// restore), PlanParts/WritePart (D1 import files), FormatInsert (dump-compatible rows for tables that
// D1 cannot export, such as FTS5 content) and the virtual-table helpers.
//
// The dump format follows miniflare/D1's dumpSql (packages/miniflare/src/workers/d1/dumpSql.ts in
// cloudflare/workers-sdk): "PRAGMA defer_foreign_keys=TRUE;", then per table (schema rowid order,
// sqlite_sequence last) its CREATE TABLE and one INSERT INTO "t" ("c",…) VALUES(…); per row, then
// indexes, triggers and views; statements joined by "\n" and no trailing newline.
package sqldump

import (
	"bytes"
	"fmt"
	"io"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/cfbackup/cfbackup/pkg/errclass"
)

// Sentinel errors of this package; callers branch on them with errors.Is.
var (
	// ErrStatementTooLong: a statement exceeded the scanner's memory limit (a corrupt dump, e.g. an
	// unterminated string, or a row larger than the limit allows).
	ErrStatementTooLong = errclass.New(errclass.Failure, "sql statement exceeds limit")
	// ErrIncomplete: the input ended inside a string, quoted identifier or trigger body.
	ErrIncomplete = errclass.New(errclass.Failure, "sql input ends inside a statement")
)

// DefaultMaxStatement bounds one statement in memory when a caller passes 0. D1 rows are at most
// 2,000,000 bytes, which hex-encoded as a BLOB plus column names stays well below this.
const DefaultMaxStatement = 16 << 20

// Kind classifies a statement so Split and restore can route it without parsing SQL themselves.
type Kind uint8

// Statement kinds.
const (
	Other Kind = iota
	Pragma
	CreateTable
	CreateVirtualTable
	CreateIndex
	CreateView
	CreateTrigger
	Insert
	Delete
	Transaction // BEGIN / COMMIT / END / ROLLBACK / SAVEPOINT / RELEASE (sqlite3 .dump wraps its output in one)
)

var kindNames = [...]string{"other", "pragma", "create-table", "create-virtual-table", "create-index",
	"create-view", "create-trigger", "insert", "delete", "transaction"}

// String names the kind for logs and error messages.
func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return fmt.Sprintf("kind(%d)", k)
}

// Statement is one complete SQL statement of a dump, with the little metadata routing needs.
type Statement struct {
	SQL   string // statement text, leading whitespace trimmed, ending in ';' (added if the input lacked it)
	Kind  Kind
	Table string // unquoted target table of CREATE TABLE / INSERT / DELETE / CREATE INDEX / CREATE TRIGGER
	Name  string // unquoted name of the created object (table, index, view, trigger)
	// Schema is the schema qualifier of that name ("main" in main.t), "" when unqualified; a dump
	// never names another schema, so the loader refuses one.
	Schema string
	// Number is the 1-based position of the statement in the input; error messages use it.
	Number int64
	// Offset and End delimit the input bytes this statement was scanned from: Offset is just after the
	// previous statement's ';' (so it includes leading whitespace), End just after this one's ';'.
	// Cutting the input at End is always safe; PlanParts records it for ranged re-reads.
	Offset, End int64
}

// lexer modes
const (
	modeNormal uint8 = iota
	modeQuote
	modeLineComment
	modeBlockComment
)

// statement states, after sqlite3_complete() in SQLite's complete.c (without EXPLAIN). A trigger
// body ends only at "END ;" where END is the first token after a ';' - which is exactly where a
// body ends, since no statement allowed in a trigger body starts with END; CASE … END never
// directly follows a ';'.
const (
	stStart uint8 = iota
	stNormal
	stCreate
	stTrigger
	stSemi
	stEnd
)

// token classes for the state machine
const (
	tokSemi uint8 = iota
	tokOther
	tokCreate
	tokTemp
	tokTrigger
	tokEnd
)

var special [256]bool
var identChar [256]bool

func init() {
	for _, c := range []byte(";'\"`[-/") {
		special[c] = true
	}
	for c := 0; c < 256; c++ {
		identChar[c] = c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '$' || c >= 0x80
	}
}

const readChunk = 256 << 10

// Scanner splits SQL text into statements, streaming: it holds one statement (plus one read chunk)
// in memory whatever the input size. It understands '…' strings with ” escapes, "…", […] and `…`
// identifiers, -- and /* */ comments, X'…' blobs, and CREATE TRIGGER … BEGIN … END bodies whose
// inner ';' do not end the statement. A final statement without ';' is returned with one added.
type Scanner struct {
	r        io.Reader
	max      int
	buf      []byte
	start, i int   // statement start and scan position in buf
	base     int64 // input offset of buf[0]
	prevEnd  int64
	eof      bool
	rerr     error
	n        int64

	mode  uint8
	quote byte
	state uint8
}

// NewScanner returns a Scanner reading r; a statement longer than maxStatement bytes (0 means
// DefaultMaxStatement) fails with ErrStatementTooLong instead of growing memory.
func NewScanner(r io.Reader, maxStatement int) *Scanner {
	if maxStatement <= 0 {
		maxStatement = DefaultMaxStatement
	}
	return &Scanner{r: r, max: maxStatement, buf: make([]byte, 0, readChunk)}
}

// fill compacts the buffer and reads more input.
func (s *Scanner) fill() {
	if s.start > 0 {
		n := copy(s.buf, s.buf[s.start:])
		s.buf = s.buf[:n]
		s.base += int64(s.start)
		s.i -= s.start
		s.start = 0
	}
	if cap(s.buf)-len(s.buf) < readChunk/2 {
		nb := make([]byte, len(s.buf), 2*cap(s.buf)+readChunk)
		copy(nb, s.buf)
		s.buf = nb
	}
	for tries := 0; tries < 100; tries++ {
		n, err := s.r.Read(s.buf[len(s.buf):cap(s.buf)])
		s.buf = s.buf[:len(s.buf)+n]
		if err != nil {
			s.eof = true
			if err != io.EOF {
				s.rerr = err
			}
			return
		}
		if n > 0 {
			return
		}
	}
	s.eof, s.rerr = true, io.ErrNoProgress
}

func (s *Scanner) token(t uint8) (complete bool) {
	switch s.state {
	case stStart:
		switch t {
		case tokSemi:
		case tokCreate:
			s.state = stCreate
		default:
			s.state = stNormal
		}
	case stNormal:
		return t == tokSemi
	case stCreate:
		switch t {
		case tokSemi:
			return true
		case tokTemp:
		case tokTrigger:
			s.state = stTrigger
		default:
			s.state = stNormal
		}
	case stTrigger:
		if t == tokSemi {
			s.state = stSemi
		}
	case stSemi:
		switch t {
		case tokSemi:
		case tokEnd:
			s.state = stEnd
		default:
			s.state = stTrigger
		}
	case stEnd:
		if t == tokSemi {
			return true
		}
		s.state = stTrigger
	}
	return false
}

func wordToken(w []byte) uint8 {
	switch len(w) {
	case 3:
		if bytes.EqualFold(w, []byte("END")) {
			return tokEnd
		}
	case 4:
		if bytes.EqualFold(w, []byte("TEMP")) {
			return tokTemp
		}
	case 6:
		if bytes.EqualFold(w, []byte("CREATE")) {
			return tokCreate
		}
	case 7:
		if bytes.EqualFold(w, []byte("TRIGGER")) {
			return tokTrigger
		}
	case 9:
		if bytes.EqualFold(w, []byte("TEMPORARY")) {
			return tokTemp
		}
	}
	return tokOther
}

// Next returns the next statement, io.EOF after the last one, ErrStatementTooLong when a statement
// exceeds the limit, ErrIncomplete when the input ends inside a string or trigger, or a read error.
func (s *Scanner) Next() (Statement, error) {
	for {
		buf := s.buf
		i := s.i
	scan:
		for i < len(buf) {
			switch s.mode {
			case modeQuote:
				j := bytes.IndexByte(buf[i:], s.quote)
				if j < 0 {
					i = len(buf)
					break scan
				}
				i += j + 1
				s.mode = modeNormal
			case modeLineComment:
				j := bytes.IndexByte(buf[i:], '\n')
				if j < 0 {
					i = len(buf)
					break scan
				}
				i += j + 1
				s.mode = modeNormal
			case modeBlockComment:
				j := bytes.Index(buf[i:], []byte("*/"))
				if j < 0 {
					if i < len(buf)-1 {
						i = len(buf) - 1 // keep a trailing '*' for the next round
					}
					if s.eof {
						i = len(buf)
					}
					break scan
				}
				i += j + 2
				s.mode = modeNormal
			default:
				if s.state == stNormal {
					for i < len(buf) && !special[buf[i]] {
						i++
					}
					if i == len(buf) {
						break scan
					}
				}
				c := buf[i]
				switch {
				case c == ';':
					if s.token(tokSemi) {
						if i+1-s.start > s.max {
							s.i = i
							return Statement{}, fmt.Errorf("statement %d (%s…): %w (%d bytes)", s.n+1, prefix(string(s.buf[s.start:min(len(s.buf), s.start+60)])), ErrStatementTooLong, s.max)
						}
						st := s.emit(i + 1)
						return st, nil
					}
					i++
					if s.state == stStart {
						s.start = i // empty statement
					}
				case c == '\'' || c == '"' || c == '`' || c == '[':
					s.token(tokOther)
					s.mode, s.quote = modeQuote, c
					if c == '[' {
						s.quote = ']'
					}
					i++
				case c == '-' || c == '/':
					if i+1 >= len(buf) && !s.eof {
						break scan // need the next byte
					}
					if i+1 < len(buf) && c == '-' && buf[i+1] == '-' {
						s.mode = modeLineComment
						i += 2
					} else if i+1 < len(buf) && c == '/' && buf[i+1] == '*' {
						s.mode = modeBlockComment
						i += 2
					} else {
						s.token(tokOther)
						i++
					}
				case c == ' ' || c == '\n' || c == '\t' || c == '\r' || c == '\f' || c == '\v':
					if s.state == stStart && s.start == i {
						s.start = i + 1
					}
					i++
				case identChar[c]:
					j := i + 1
					for j < len(buf) && identChar[buf[j]] {
						j++
					}
					if j == len(buf) && !s.eof {
						break scan // the word may continue in the next chunk
					}
					s.token(wordToken(buf[i:j]))
					i = j
				default:
					s.token(tokOther)
					i++
				}
			}
		}
		s.i = i
		if s.i-s.start > s.max {
			return Statement{}, fmt.Errorf("statement %d (%s…): %w (%d bytes)", s.n+1, prefix(string(s.buf[s.start:min(len(s.buf), s.start+60)])), ErrStatementTooLong, s.max)
		}
		if s.eof {
			return s.finish()
		}
		s.fill()
	}
}

func (s *Scanner) finish() (Statement, error) {
	if s.rerr != nil {
		return Statement{}, fmt.Errorf("read sql: %w", s.rerr)
	}
	if s.state == stStart {
		// only whitespace, ';' and comments left
		s.start = len(s.buf)
		return Statement{}, io.EOF
	}
	if s.mode == modeQuote || s.state == stTrigger || s.state == stSemi {
		return Statement{}, fmt.Errorf("statement %d (%s…): %w", s.n+1, prefix(string(s.buf[s.start:min(len(s.buf), s.start+60)])), ErrIncomplete)
	}
	text := strings.TrimRight(string(s.buf[s.start:]), " \t\r\n\f\v")
	if s.mode == modeLineComment {
		text += "\n"
	}
	st := s.build(text+";", s.base+int64(len(s.buf)))
	s.state, s.mode = stStart, modeNormal
	s.start, s.i = len(s.buf), len(s.buf)
	return st, nil
}

func (s *Scanner) emit(end int) Statement {
	st := s.build(string(s.buf[s.start:end]), s.base+int64(end))
	s.start, s.i = end, end
	s.state, s.mode = stStart, modeNormal
	return st
}

func (s *Scanner) build(text string, end int64) Statement {
	s.n++
	st := Statement{SQL: text, Number: s.n, Offset: s.prevEnd, End: end}
	s.prevEnd = end
	classify(&st)
	return st
}

// prefix shortens SQL for error messages: the first line, at most 60 bytes.
func prefix(sql string) string {
	if i := strings.IndexAny(sql, "\r\n"); i >= 0 {
		sql = sql[:i]
	}
	if len(sql) > 60 {
		sql = sql[:60]
	}
	return strings.Map(func(r rune) rune { // the text is untrusted: no terminal escapes in messages
		if r == utf8.RuneError || !unicode.IsPrint(r) {
			return '?'
		}
		return r
	}, sql)
}

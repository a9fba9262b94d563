package sqldump

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
)

var (
	// ErrPartNotConsumed: an emit callback returned without reading its part to EOF; the splitter
	// streams, so unread statements would silently vanish from the backup.
	ErrPartNotConsumed = errors.New("sqldump: emit returned before reading its part to EOF")
	// ErrSchemaTooLarge: the non-table statements exceed SplitOptions.MaxSchemaBytes.
	ErrSchemaTooLarge = errors.New("sqldump: schema part exceeds limit")
)

// Part kinds.
const (
	PartTable  = "table"
	PartSchema = "schema"
)

// Part describes one piece of a split dump. Its counters grow while the part streams and are final
// once emit returns.
type Part struct {
	Kind  string // PartTable or PartSchema
	Table string // unquoted table name (PartTable only)
	// Continued is true when this table already had an earlier part: its rows were not contiguous
	// in the dump. Restore must load every part of a table, in order.
	Continued  bool
	Index      int   // 0-based position among the emitted parts
	Rows       int64 // INSERT statements
	Statements int64
	Bytes      int64 // bytes of text yielded (each statement plus "\n")
}

// SplitOptions tunes Split.
type SplitOptions struct {
	MaxStatement int // per-statement memory bound; 0 = DefaultMaxStatement
	// MaxSchemaBytes bounds the schema part, which is held in memory until the end because its
	// statements come from both ends of the dump; 0 = 64 MiB.
	MaxSchemaBytes int
}

// Split reads a D1 dump and calls emit once per part, streaming: each table part (its CREATE TABLE
// and all its INSERTs) is emitted as the dump reaches it, then one final PartSchema part with
// everything that is not table data, in dump order: the leading PRAGMAs, indexes, triggers, views,
// CREATE VIRTUAL TABLE, sqlite_sequence/sqlite_stat statements and any other statement. Loading the
// parts in emission order rebuilds the database: tables and rows first, then indexes and triggers
// (so triggers do not fire on restored rows), as D1 itself orders its dump.
//
// Each part's reader yields its statements as text, each ending ";\n". emit must read r to EOF
// before returning (ErrPartNotConsumed otherwise). Routing rules: CREATE TABLE always starts a new
// part; an INSERT continues the current part when it targets the current table and otherwise starts
// a new part for its table (Continued set if that table was seen before), so interleaved or
// data-only dumps still split without loss. Transaction statements (BEGIN/COMMIT of sqlite3 .dump)
// are dropped: every consumer applies a part in its own transaction.
func Split(r io.Reader, opts SplitOptions, emit func(p *Part, r io.Reader) error) error {
	if opts.MaxSchemaBytes <= 0 {
		opts.MaxSchemaBytes = 64 << 20
	}
	sp := &splitter{sc: NewScanner(r, opts.MaxStatement), maxSchema: opts.MaxSchemaBytes, seen: map[string]bool{}}
	index := 0
	for {
		st, err := sp.nextData()
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		key := strings.ToLower(st.Table)
		p := &Part{Kind: PartTable, Table: st.Table, Continued: sp.seen[key], Index: index}
		sp.seen[key] = true
		index++
		pr := &partReader{sp: sp, part: p}
		pr.take(st)
		if err := emit(p, pr); err != nil {
			return fmt.Errorf("emit table %q: %w", p.Table, err)
		}
		if sp.err != nil {
			return sp.err
		}
		if !pr.done || len(pr.cur) > 0 || pr.nl {
			return fmt.Errorf("table %q: %w", p.Table, ErrPartNotConsumed)
		}
	}
	sp.schemaPart.Kind, sp.schemaPart.Index = PartSchema, index
	sr := &countingReader{r: bytes.NewReader(sp.schema.Bytes())}
	if err := emit(&sp.schemaPart, sr); err != nil {
		return fmt.Errorf("emit schema: %w", err)
	}
	if sr.n != int64(sp.schema.Len()) {
		return fmt.Errorf("schema: %w", ErrPartNotConsumed)
	}
	return nil
}

type splitter struct {
	sc         *Scanner
	pending    *Statement
	schema     bytes.Buffer
	schemaPart Part
	maxSchema  int
	seen       map[string]bool
	err        error
}

// isData reports whether st belongs to a table part.
func isData(st *Statement) bool {
	switch st.Kind {
	case CreateTable, Insert:
		return st.Table != "" && !strings.HasPrefix(strings.ToLower(st.Table), "sqlite_")
	}
	return false
}

// nextData returns the next table-data statement, diverting everything else into the schema part.
func (sp *splitter) nextData() (Statement, error) {
	if sp.pending != nil {
		st := *sp.pending
		sp.pending = nil
		return st, nil
	}
	for {
		st, err := sp.sc.Next()
		if err != nil {
			return st, err
		}
		if isData(&st) {
			return st, nil
		}
		if st.Kind == Transaction {
			continue
		}
		if sp.schema.Len()+len(st.SQL)+1 > sp.maxSchema {
			return st, fmt.Errorf("statement %d: %w (%d bytes)", st.Number, ErrSchemaTooLarge, sp.maxSchema)
		}
		sp.schema.WriteString(st.SQL)
		sp.schema.WriteByte('\n')
		sp.schemaPart.Statements++
		sp.schemaPart.Bytes += int64(len(st.SQL) + 1)
		if st.Kind == Insert {
			sp.schemaPart.Rows++
		}
	}
}

// partReader streams one table part, pulling statements from the scanner on demand.
type partReader struct {
	sp   *splitter
	part *Part
	cur  string // rest of the current statement
	nl   bool   // its "\n" is still to come
	done bool
}

func (pr *partReader) take(st Statement) {
	pr.cur, pr.nl = st.SQL, true
	pr.part.Statements++
	pr.part.Bytes += int64(len(st.SQL) + 1)
	if st.Kind == Insert {
		pr.part.Rows++
	}
}

func (pr *partReader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	for len(pr.cur) == 0 && !pr.nl {
		if pr.done {
			return 0, io.EOF
		}
		if pr.sp.err != nil {
			return 0, pr.sp.err
		}
		st, err := pr.sp.nextData()
		if err == io.EOF {
			pr.done = true
			return 0, io.EOF
		}
		if err != nil {
			pr.sp.err = err
			return 0, err
		}
		if st.Kind != Insert || !strings.EqualFold(st.Table, pr.part.Table) {
			pr.sp.pending = &st
			pr.done = true
			return 0, io.EOF
		}
		pr.take(st)
	}
	n := copy(p, pr.cur)
	pr.cur = pr.cur[n:]
	if len(pr.cur) == 0 && pr.nl && n < len(p) {
		p[n] = '\n'
		n++
		pr.nl = false
	}
	return n, nil
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

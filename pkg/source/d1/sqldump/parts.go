package sqldump

import (
	"crypto/md5" //nolint:gosec // D1's import API identifies files by MD5; not a security use
	"encoding/hex"
	"fmt"
	"io"

	"github.com/cfbackup/cfbackup/pkg/errclass"
)

// D1StatementLimit is D1's maximum statement size in bytes (docs: d1/platform/limits).
const D1StatementLimit = 100_000

var (
	// ErrStatementTooLarge: a statement exceeds D1's 100,000-byte limit and cannot be imported. It
	// comes from a row with large values (D1 allows 2 MB strings/BLOBs, and a BLOB doubles in hex).
	// The operator can restore that table to a local SQLite file instead (restore --to-file), or
	// exclude the table from the D1 import and reload the large rows with bound parameters through
	// the Workers binding; D1's own import would fail on the same statement.
	ErrStatementTooLarge = errclass.New(errclass.Failure, "statement exceeds D1's 100,000-byte limit")
	// ErrPlanMismatch: WritePart read input that does not match its plan (the input changed between
	// the planning pass and the writing pass).
	ErrPlanMismatch = errclass.New(errclass.Failure, "sql input does not match the import plan")
)

// PlanOptions tunes PlanParts.
type PlanOptions struct {
	Limit int64 // maximum bytes of one import file (D1: at most 5 GB)
	// Prologue is written at the start of every file (e.g. "PRAGMA defer_foreign_keys=TRUE;\n") and
	// counts toward Limit and the MD5.
	Prologue     string
	MaxStatement int // per-statement memory bound; 0 = DefaultMaxStatement
	// StatementLimit rejects larger statements with ErrStatementTooLarge; 0 = D1StatementLimit.
	StatementLimit int
}

// PartPlan is one import file: deterministic, so a second pass over the same input reproduces the
// exact bytes whose MD5 the D1 import API was promised.
type PartPlan struct {
	Index          int
	FirstStatement int64 // 1-based number of its first statement in the input
	Statements     int64
	Bytes          int64  // size of the file, prologue included
	MD5            string // hex MD5 of the file, the etag D1's import init wants
	// InputOffset and InputEnd delimit the input bytes holding this file's statements; WritePart
	// wants r positioned at InputOffset (e.g. an io.SectionReader or a ranged read).
	InputOffset, InputEnd int64
	Prologue              string
}

// PlanParts reads a statement stream once and decides where to cut it into import files of at most
// opts.Limit bytes, never inside a statement. Each statement is written as its text plus "\n";
// transaction-control statements are dropped (D1 import rejects BEGIN/COMMIT). A statement over
// D1's limit fails with ErrStatementTooLarge naming its table and number.
func PlanParts(r io.Reader, opts PlanOptions) ([]PartPlan, error) {
	if opts.StatementLimit <= 0 {
		opts.StatementLimit = D1StatementLimit
	}
	sc := NewScanner(r, opts.MaxStatement)
	var plans []PartPlan
	var cur *PartPlan
	h := md5.New() //nolint:gosec
	finish := func() {
		if cur != nil {
			cur.MD5 = hex.EncodeToString(h.Sum(nil))
			plans = append(plans, *cur)
			cur = nil
		}
	}
	var prevEnd int64
	for {
		st, err := sc.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
		if st.Kind == Transaction {
			prevEnd = st.End
			continue
		}
		if len(st.SQL) > opts.StatementLimit {
			return nil, fmt.Errorf("statement %d (table %q, %d bytes, %s…): %w", st.Number, st.Table, len(st.SQL), prefix(st.SQL), ErrStatementTooLarge)
		}
		size := int64(len(st.SQL) + 1)
		if cur != nil && cur.Bytes+size > opts.Limit {
			finish()
		}
		if cur == nil {
			if int64(len(opts.Prologue))+size > opts.Limit {
				return nil, fmt.Errorf("statement %d (%d bytes) does not fit the import limit %d", st.Number, size, opts.Limit)
			}
			cur = &PartPlan{Index: len(plans), FirstStatement: st.Number, InputOffset: prevEnd, Prologue: opts.Prologue, Bytes: int64(len(opts.Prologue))}
			h.Reset()
			io.WriteString(h, opts.Prologue)
		}
		io.WriteString(h, st.SQL)
		h.Write([]byte{'\n'})
		cur.Statements++
		cur.Bytes += size
		cur.InputEnd = st.End
		prevEnd = st.End
	}
	finish()
	return plans, nil
}

// WritePart writes the import file described by plan to w, reading its statements from r, which
// must be positioned at plan.InputOffset. It re-checks size and MD5 and fails with ErrPlanMismatch
// when the input changed since PlanParts (w then holds a bad file the caller must discard; D1
// would reject it too, since the MD5 is its etag).
func WritePart(w io.Writer, r io.Reader, plan PartPlan) error {
	h := md5.New() //nolint:gosec
	mw := io.MultiWriter(w, h)
	var n int64
	if _, err := io.WriteString(mw, plan.Prologue); err != nil {
		return err
	}
	n += int64(len(plan.Prologue))
	sc := NewScanner(io.LimitReader(r, plan.InputEnd-plan.InputOffset), 0)
	var count int64
	for count < plan.Statements {
		st, err := sc.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		if st.Kind == Transaction {
			continue
		}
		if _, err := io.WriteString(mw, st.SQL+"\n"); err != nil {
			return err
		}
		n += int64(len(st.SQL) + 1)
		count++
	}
	if count != plan.Statements || n != plan.Bytes || hex.EncodeToString(h.Sum(nil)) != plan.MD5 {
		return fmt.Errorf("part %d: %w (statements %d/%d, bytes %d/%d)", plan.Index, ErrPlanMismatch, count, plan.Statements, n, plan.Bytes)
	}
	return nil
}

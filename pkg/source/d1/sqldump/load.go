package sqldump

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/cfbackup/cfbackup/pkg/errclass"
)

// ErrCheckFailed: a restored database failed PRAGMA integrity_check or foreign_key_check.
var ErrCheckFailed = errclass.New(errclass.Integrity, "sqlite check failed")

// LoadOptions tunes Load.
type LoadOptions struct {
	MaxStatement int // per-statement memory bound; 0 = DefaultMaxStatement
	// SkipForeignKeyCheck leaves out the foreign_key_check before commit. Set it when the parts of
	// one dump are loaded by separate Load calls (a child table's part may come before its parent's)
	// and run Check once after the last part.
	SkipForeignKeyCheck bool
}

// LoadStats counts what Load executed.
type LoadStats struct {
	Statements int64 // executed statements
	Rows       int64 // INSERT statements
	Tables     int64 // CREATE TABLE statements
	Skipped    int64 // transaction-control statements skipped (Load runs its own transaction)
	Bytes      int64 // SQL bytes executed
	// Bound counts the INSERTs (and fixup UPDATEs, fastupdate.go) whose literals were bound to a
	// cached prepared statement instead of being compiled as text (fastinsert.go).
	Bound int64
}

// Load executes a stream of statements (a dump, or parts of one) into conn, a modernc.org/sqlite
// connection on a local file, in one transaction, so a failure leaves the database unchanged.
// BEGIN/COMMIT statements in the input are skipped. A failing statement is named by its number and
// a short, sanitized excerpt of its text.
//
// The SQL is untrusted (it comes from a repository): only what a D1 dump can contain is executed
// (checkAllowed), and SQLite itself enforces the same allow-list through an authorizer, no attached
// databases and defensive mode (conn must come from OpenFile), for the dump's statements and for
// every trigger or view body they run; a refusal is ErrNotAllowed. The guards stay on conn.
//
// Foreign keys: D1 dumps tables in creation (rowid) order, so a child table can come before its
// parent, and with enforcement on SQLite rejects an INSERT whose parent table does not exist yet
// ("no such table"), even with defer_foreign_keys. Load therefore switches enforcement off for its
// transaction (restoring the connection's setting afterwards) and instead runs PRAGMA
// foreign_key_check before committing, failing with ErrCheckFailed on any violation, unless
// opts.SkipForeignKeyCheck.
func Load(ctx context.Context, conn *sql.Conn, r io.Reader, opts LoadOptions) (stats LoadStats, err error) {
	g := &guard{}
	if err := g.install(ctx, conn); err != nil {
		return stats, err
	}
	var fk int
	if err := conn.QueryRowContext(ctx, "PRAGMA foreign_keys").Scan(&fk); err != nil {
		return stats, fmt.Errorf("read foreign_keys: %w", err)
	}
	if fk == 1 {
		if _, err := conn.ExecContext(ctx, "PRAGMA foreign_keys=OFF"); err != nil {
			return stats, fmt.Errorf("foreign keys off: %w", err)
		}
		defer func() {
			if _, rerr := conn.ExecContext(context.WithoutCancel(ctx), "PRAGMA foreign_keys=ON"); rerr != nil && err == nil {
				err = fmt.Errorf("restore foreign_keys: %w", rerr)
			}
		}()
	}
	// The transaction does not watch ctx: database/sql would roll it back from another goroutine when
	// ctx is cancelled, and Load could return (and the caller look at the database) before that
	// rollback ran. Statements still take ctx; the deferred Rollback is synchronous.
	tx, err := conn.BeginTx(context.WithoutCancel(ctx), nil)
	if err != nil {
		return stats, fmt.Errorf("begin: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // no-op after Commit
	ins := &insertCache{conn: conn}
	defer ins.close()
	// exec runs one step for statement st, naming it in the error; a refusal by the guards is
	// ErrNotAllowed.
	exec := func(st *Statement, f func() error) error {
		g.begin()
		err := f()
		if denied := g.end(); denied != "" {
			return fmt.Errorf("%w: statement %d (%s): SQLite refused %s", ErrNotAllowed, st.Number, excerpt(st.SQL), denied)
		}
		if err != nil {
			return fmt.Errorf("statement %d (%s): %w", st.Number, excerpt(st.SQL), err)
		}
		return nil
	}
	ra := startReadAhead(r, opts.MaxStatement)
	defer ra.stop()
	for {
		if err := ctx.Err(); err != nil {
			return stats, err
		}
		it, err := ra.next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return stats, err
		}
		st := &it.st
		if st.Kind == Transaction {
			stats.Skipped++
			continue
		}
		if err := ins.run(ctx, tx, it, exec); err != nil {
			return stats, err
		}
		stats.Statements++
		stats.Bytes += int64(len(st.SQL))
		switch st.Kind {
		case Insert:
			stats.Rows++
		case CreateTable:
			stats.Tables++
		}
	}
	if err := ins.flush(exec); err != nil {
		return stats, err
	}
	stats.Bound = ins.bound
	if !opts.SkipForeignKeyCheck {
		problems, err := foreignKeyProblems(ctx, tx)
		if err != nil {
			return stats, err
		}
		if len(problems) > 0 {
			return stats, fmt.Errorf("%w: %s", ErrCheckFailed, strings.Join(problems, "; "))
		}
	}
	if err := tx.Commit(); err != nil {
		return stats, fmt.Errorf("commit: %w", err)
	}
	return stats, nil
}

type querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

// foreignKeyProblems describes up to 10 foreign key violations (and how many there are in all).
func foreignKeyProblems(ctx context.Context, q querier) ([]string, error) {
	rows, err := q.QueryContext(ctx, "PRAGMA foreign_key_check")
	if err != nil {
		return nil, fmt.Errorf("foreign_key_check: %w", err)
	}
	var problems []string
	nfk := 0
	for rows.Next() {
		var table, parent string
		var rowid sql.NullInt64
		var fkid int64
		if err := rows.Scan(&table, &rowid, &parent, &fkid); err != nil {
			rows.Close()
			return nil, fmt.Errorf("foreign_key_check: %w", err)
		}
		nfk++
		if nfk <= 10 {
			problems = append(problems, fmt.Sprintf("foreign key: %s rowid %v has no parent in %s (fk %d)", table, rowid.Int64, parent, fkid))
		}
	}
	if err := errors.Join(rows.Err(), rows.Close()); err != nil {
		return nil, fmt.Errorf("foreign_key_check: %w", err)
	}
	if nfk > 10 {
		problems = append(problems, fmt.Sprintf("… %d foreign key violations in total", nfk))
	}
	return problems, nil
}

// Check runs PRAGMA integrity_check and PRAGMA foreign_key_check; a restore is only trusted when
// both are clean. The error (wrapping ErrCheckFailed) lists up to 10 findings.
func Check(ctx context.Context, conn *sql.Conn) error { return check(ctx, conn, "integrity_check") }

// QuickCheck is Check with PRAGMA quick_check in place of integrity_check: every page, b-tree,
// record, NOT NULL and CHECK constraint is still checked, but not that each index holds exactly
// its table's rows or that UNIQUE indexes hold no duplicates. On a file SQLite has just written
// from scratch (its own index maintenance, UNIQUE enforced on every insert and CREATE INDEX) those
// would only fail through a bug in SQLite itself, and they are three quarters of the check's cost
// (docs/D1.md, "Checks after a restore to a file").
func QuickCheck(ctx context.Context, conn *sql.Conn) error { return check(ctx, conn, "quick_check") }

func check(ctx context.Context, conn *sql.Conn, pragma string) error {
	var problems []string
	rows, err := conn.QueryContext(ctx, "PRAGMA "+pragma)
	if err != nil {
		return fmt.Errorf("%s: %w", pragma, err)
	}
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			rows.Close()
			return fmt.Errorf("%s: %w", pragma, err)
		}
		if s != "ok" {
			problems = append(problems, "integrity: "+s)
		}
	}
	if err := errors.Join(rows.Err(), rows.Close()); err != nil {
		return fmt.Errorf("%s: %w", pragma, err)
	}
	fkp, err := foreignKeyProblems(ctx, conn)
	if err != nil {
		return err
	}
	problems = append(problems, fkp...)
	if len(problems) > 0 {
		if len(problems) > 11 {
			problems = append(problems[:10], "…")
		}
		return fmt.Errorf("%w: %s", ErrCheckFailed, strings.Join(problems, "; "))
	}
	return nil
}

// CountRows returns the number of rows in table, for comparing a restore with the catalogue.
func CountRows(ctx context.Context, conn *sql.Conn, table string) (int64, error) {
	var n int64
	if err := conn.QueryRowContext(ctx, "SELECT count(*) FROM "+QuoteIdent(table)).Scan(&n); err != nil {
		return 0, fmt.Errorf("count rows of %s: %w", QuoteIdent(table), err)
	}
	return n, nil
}

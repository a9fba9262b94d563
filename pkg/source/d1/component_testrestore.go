package d1

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/cfbackup/cfbackup/pkg/archive"
	"github.com/cfbackup/cfbackup/pkg/errclass"
	"github.com/cfbackup/cfbackup/pkg/source"
	"github.com/cfbackup/cfbackup/pkg/source/d1/sqldump"
	"github.com/cfbackup/cfbackup/pkg/store"
)

// TestRestore restores every D1 database of the snapshot into a local SQLite file (every item's
// SHA-256 while reading, integrity_check, foreign_key_check, row counts against the catalogue), then
// runs the user's assertions on it.
func (c *component) TestRestore(ctx context.Context, env source.Env, req source.TestRestoreRequest) ([]source.TestRestoreCheck, error) {
	if err := os.MkdirAll(req.Scratch, 0o700); err != nil {
		return nil, err
	}
	m := req.Snapshot
	for _, a := range req.Assertions {
		if a.Database != "" {
			if _, ok := m.SourceByName(Component, a.Database); !ok {
				return nil, fmt.Errorf("%w: assertion on D1 database %q, which snapshot %s does not have", errclass.Usage, a.Database, m.ID)
			}
		}
		if _, _, err := parseExpect(a.Expect); err != nil {
			return nil, err
		}
	}
	var out []source.TestRestoreCheck
	for _, src := range source.SourcesOf(m, Component) {
		chk := source.TestRestoreCheck{Component: Component, Source: src.Name, Checks: []string{}, Problems: []string{}}
		sel, err := Select(req.Catalogue, src.ID, nil)
		if err != nil {
			chk.Fail(failureKind(err, source.FailureUnsupported), err.Error()) // an item kind this build does not know
			out = append(out, chk)
			continue
		}
		for _, it := range sel.Items {
			chk.Items++
			chk.Bytes += it.Size
		}
		path := filepath.Join(req.Scratch, src.ID+".sqlite")
		_ = os.Remove(path)
		fres, err := RestoreToFileWith(ctx, req.Open, sel, path, FileOptions{FullCheck: true}) // the drill checks everything
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			chk.Fail(failureKind(err, source.FailureRestore), err.Error())
			out = append(out, chk)
			continue
		}
		chk.Checks = append(chk.Checks, "items' SHA-256", "integrity_check", "foreign_key_check", fmt.Sprintf("row counts of %d table(s)", len(fres.Tables)))
		for _, a := range req.Assertions {
			if a.Database != "" && a.Database != src.Name && a.Database != src.ID {
				continue
			}
			got, err := runAssertion(ctx, path, a)
			if err != nil {
				chk.Fail(source.FailureAssertion, err.Error())
			} else {
				chk.Checks = append(chk.Checks, fmt.Sprintf("assert %s %s (got %s)", a.SQL, a.Expect, got))
			}
		}
		out = append(out, chk)
	}
	return out, nil
}

// failureKind classifies a test-restore failure: stored data missing or not matching its hashes is
// integrity; a restored SQLite database failing its checks (integrity_check, foreign_key_check, row
// counts) is restore, although those errors carry the Integrity exit class; other integrity errors
// (a statement the allow-list refuses: a forged item) are integrity; else dflt.
func failureKind(err error, dflt string) string {
	switch {
	case errors.Is(err, archive.ErrIntegrity), errors.Is(err, store.ErrNotFound):
		return source.FailureIntegrity
	case errors.Is(err, sqldump.ErrCheckFailed), errors.Is(err, ErrMismatch):
		return source.FailureRestore
	case errors.Is(err, errclass.Integrity):
		return source.FailureIntegrity
	}
	return dflt
}

// parseExpect splits "OP VALUE".
func parseExpect(s string) (op, val string, err error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return "", "", nil
	}
	for _, o := range []string{">=", "<=", "==", "!=", "=", ">", "<"} {
		if v, ok := strings.CutPrefix(s, o); ok {
			v = strings.TrimSpace(v)
			if v == "" {
				break
			}
			if o == "==" {
				o = "="
			}
			return o, v, nil
		}
	}
	return "", "", fmt.Errorf("%w: assertion expectation %q: use OP VALUE with OP one of >= <= = != > < (e.g. '>= 1000')", errclass.Usage, s)
}

// runAssertion runs a read-only query on the restored file and compares its first value.
func runAssertion(ctx context.Context, path string, a source.Assertion) (string, error) {
	db, err := sql.Open("sqlite", "file:"+path+"?mode=ro")
	if err != nil {
		return "", err
	}
	defer db.Close()
	var v sql.NullString
	if err := db.QueryRowContext(ctx, a.SQL).Scan(&v); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return "", fmt.Errorf("assertion %q returned no row", a.SQL)
		}
		return "", fmt.Errorf("assertion %q: %v", a.SQL, err)
	}
	got := v.String
	if !v.Valid {
		got = "NULL"
	}
	op, want, _ := parseExpect(a.Expect)
	if op == "" {
		if !v.Valid || got == "" || got == "0" {
			return got, fmt.Errorf("assertion %q: got %s, want a true value", a.SQL, got)
		}
		return got, nil
	}
	if !compare(got, op, want) {
		return got, fmt.Errorf("assertion %q: got %s, want %s %s", a.SQL, got, op, want)
	}
	return got, nil
}

// compare applies op to got and want, as numbers when both are numbers, else as text.
func compare(got, op, want string) bool {
	var cmp int
	gf, gerr := strconv.ParseFloat(got, 64)
	wf, werr := strconv.ParseFloat(want, 64)
	if gerr == nil && werr == nil {
		switch {
		case gf < wf:
			cmp = -1
		case gf > wf:
			cmp = 1
		}
	} else {
		cmp = strings.Compare(got, want)
	}
	return map[string]bool{">=": cmp >= 0, "<=": cmp <= 0, "=": cmp == 0, "!=": cmp != 0, ">": cmp > 0, "<": cmp < 0}[op]
}

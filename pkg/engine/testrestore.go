package engine

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"filippo.io/age"

	"github.com/cfbackup/cfbackup/pkg/manifest"
	"github.com/cfbackup/cfbackup/pkg/source"
	"github.com/cfbackup/cfbackup/pkg/source/d1"
)

// Assertion is a user check run against a D1 database restored by test-restore (pkg/source).
type Assertion = source.Assertion

// TestRestoreOptions choose what test-restore restores into scratch targets.
type TestRestoreOptions struct {
	Identities []age.Identity
	// Components limits the run (default: every component of the snapshot this build can test).
	Components []string
	// Sample limits per-object components (R2 objects, Durable Objects) to N items or x percent.
	Sample     string
	Assertions []Assertion
	// ScratchDir receives the restored files (default: a temporary directory, removed afterwards).
	ScratchDir string
	// Record stores the result under verify/ (mode "test-restore") for reports.
	Record bool
	// ScratchWorkerURL is a local Workers runtime of the application (wrangler dev, miniflare) that
	// test-restore may import sampled Durable Objects into; never the production Worker. Empty: the
	// objects are decoded and checked only. ScratchWorkerSecret signs those requests.
	ScratchWorkerURL    string
	ScratchWorkerSecret string
	// Diff asks registered components for their comparison with the live account (config --diff).
	Diff bool
	// Env is what registered components may ask of the host (the Cloudflare client, settings).
	Env source.Env
	// Bound holds component values whose test-restore flags the CLI bound (by name); others are made
	// fresh.
	Bound map[string]source.Component
}

// TestRestoreCheck is one source's outcome (pkg/source).
type TestRestoreCheck = source.TestRestoreCheck

// TestRestoreResult is a test-restore's outcome.
type TestRestoreResult struct {
	Snapshot       string             `json:"snapshot"`
	Time           time.Time          `json:"time"`
	OK             bool               `json:"ok"`
	Sources        []TestRestoreCheck `json:"sources"`
	DurationMillis int64              `json:"duration_ms"`
}

// TestRestorer restores one component's sources of a snapshot into scratch targets and checks them.
// Components register theirs in TestRestorers; D1's is built in.
type TestRestorer func(ctx context.Context, e *Engine, m *manifest.Manifest, cat *manifest.Catalogue, o TestRestoreOptions, scratch string) ([]TestRestoreCheck, error)

// TestRestorers maps a component to its scratch restore.
var TestRestorers = map[string]TestRestorer{d1.Component: testRestoreD1}

// TestRestore restores a snapshot into scratch targets only — never into the account — and checks
// what came back. Problems are collected per source; the error wraps ErrIntegrity when there is any.
func (e *Engine) TestRestore(ctx context.Context, m *manifest.Manifest, o TestRestoreOptions) (*TestRestoreResult, error) {
	start := e.now()
	m, err := e.loadChecked(ctx, m)
	if err != nil {
		return nil, err
	}
	cat, err := OpenCatalogue(m, o.Identities)
	if err != nil {
		return nil, err
	}
	comps := o.Components
	if len(comps) == 0 {
		comps = m.Components
	}
	scratch := o.ScratchDir
	if scratch == "" {
		if scratch, err = os.MkdirTemp("", "cfbackup-test-restore-"); err != nil {
			return nil, err
		}
		defer os.RemoveAll(scratch)
	} else if err := os.MkdirAll(scratch, 0o700); err != nil {
		return nil, err
	}
	res := &TestRestoreResult{Snapshot: m.ID, Time: start.UTC()}
	for _, c := range comps {
		if !hasString(m.Components, c) {
			return nil, fmt.Errorf("%w: snapshot %s has no %s component (it has: %s)", ErrNotFound, m.ID, c, strings.Join(m.Components, ", "))
		}
		if source.Registered(c) {
			comp, ok := o.Bound[c]
			if !ok {
				if comp, err = source.New(c); err != nil {
					return nil, err
				}
			}
			checks, err := comp.TestRestore(ctx, o.Env, source.TestRestoreRequest{
				Snapshot: m, Catalogue: cat, Open: source.Opener(e.Opener(m, o.Identities)), Identities: o.Identities,
				Scratch: filepath.Join(scratch, c), Sample: o.Sample, Assertions: o.Assertions,
				ScratchWorkerURL: o.ScratchWorkerURL, ScratchWorkerSecret: o.ScratchWorkerSecret, Diff: o.Diff, Log: e.log(),
			})
			if err != nil {
				return nil, err
			}
			res.Sources = append(res.Sources, checks...)
			continue
		}
		tr, ok := TestRestorers[c]
		if !ok {
			chk := TestRestoreCheck{Component: c, Checks: []string{}}
			chk.Fail(FailureUnsupported, "this version cannot test-restore "+c+": nothing was checked")
			res.Sources = append(res.Sources, chk)
			continue
		}
		checks, err := tr(ctx, e, m, cat, o, filepath.Join(scratch, c))
		if err != nil {
			return nil, err
		}
		res.Sources = append(res.Sources, checks...)
	}
	res.OK = true
	var problems []string
	failures := map[string]int{}
	for i := range res.Sources {
		s := &res.Sources[i]
		for j, p := range s.Problems {
			res.OK = false
			k := s.Kind(j)
			failures[k]++
			problems = append(problems, strings.TrimSpace(s.Component+" "+s.Source)+": "+p+" ["+k+"]")
		}
		kinds := make([]string, len(s.Problems))
		for j := range s.Problems {
			kinds[j] = s.Kind(j)
		}
		s.ProblemKinds = kinds
		if s.Problems == nil {
			s.Problems = []string{}
		}
	}
	res.DurationMillis = e.now().Sub(start).Milliseconds()
	if o.Record {
		vr := &VerifyResult{Time: res.Time, OK: res.OK, Snapshot: m.ID, Mode: "test-restore", SegmentsTotal: len(m.Segments), Problems: []string{}, DurationMillis: res.DurationMillis}
		for _, s := range res.Sources {
			vr.Items += s.Items
			vr.BytesRead += s.Bytes
		}
		if !res.OK {
			// Plaintext record: counts by component and kind only, never table, database, script or
			// object names (invariant 3).
			for _, c := range comps {
				byKind := map[string]int{}
				for _, s := range res.Sources {
					if s.Component != c {
						continue
					}
					for j := range s.Problems {
						byKind[s.Kind(j)]++
					}
				}
				if len(byKind) > 0 {
					vr.Problems = append(vr.Problems, c+": "+failureSummary(byKind))
				}
			}
			vr.Failures = failures
			vr.FailureKind = primaryFailure(failures)
		}
		if err := e.recordVerify(ctx, vr); err != nil {
			e.log().Warn("could not record the test-restore result", "err", err)
		}
	}
	if !res.OK {
		return res, fmt.Errorf("%w: test-restore of snapshot %s: %s", ErrIntegrity, m.ID, strings.Join(problems, "; "))
	}
	return res, nil
}

// testRestoreD1 restores every D1 database of the snapshot into a local SQLite file (integrity_check,
// foreign_key_check, row counts against the catalogue, every item's SHA-256 while reading), then runs
// the user's assertions on it.
func testRestoreD1(ctx context.Context, e *Engine, m *manifest.Manifest, cat *manifest.Catalogue, o TestRestoreOptions, scratch string) ([]TestRestoreCheck, error) {
	if err := os.MkdirAll(scratch, 0o700); err != nil {
		return nil, err
	}
	for _, a := range o.Assertions {
		if a.Database != "" {
			if _, ok := m.SourceByName(d1.Component, a.Database); !ok {
				return nil, fmt.Errorf("%w: assertion on D1 database %q, which snapshot %s does not have", ErrUsage, a.Database, m.ID)
			}
		}
		if _, _, err := parseExpect(a.Expect); err != nil {
			return nil, err
		}
	}
	var out []TestRestoreCheck
	open := e.Opener(m, o.Identities)
	for _, src := range SourcesOf(m, d1.Component) {
		chk := TestRestoreCheck{Component: d1.Component, Source: src.Name, Checks: []string{}, Problems: []string{}}
		sel, err := d1.Select(cat, src.ID, nil)
		if err != nil {
			chk.Fail(FailureKindOf(err, FailureUnsupported), err.Error()) // an item kind this build does not know
			out = append(out, chk)
			continue
		}
		for _, it := range sel.Items {
			chk.Items++
			chk.Bytes += it.Size
		}
		path := filepath.Join(scratch, src.ID+".sqlite")
		_ = os.Remove(path)
		fres, err := d1.RestoreToFile(ctx, open, sel, path)
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			chk.Fail(FailureKindOf(err, FailureRestore), err.Error())
			out = append(out, chk)
			continue
		}
		chk.Checks = append(chk.Checks, "items' SHA-256", "integrity_check", "foreign_key_check", fmt.Sprintf("row counts of %d table(s)", len(fres.Tables)))
		for _, a := range o.Assertions {
			if a.Database != "" && a.Database != src.Name && a.Database != src.ID {
				continue
			}
			got, err := runAssertion(ctx, path, a)
			if err != nil {
				chk.Fail(FailureAssertion, err.Error())
			} else {
				chk.Checks = append(chk.Checks, fmt.Sprintf("assert %s %s (got %s)", a.SQL, a.Expect, got))
			}
		}
		out = append(out, chk)
	}
	return out, nil
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
	return "", "", fmt.Errorf("%w: assertion expectation %q: use OP VALUE with OP one of >= <= = != > < (e.g. '>= 1000')", ErrUsage, s)
}

// runAssertion runs a read-only query on the restored file and compares its first value.
func runAssertion(ctx context.Context, path string, a Assertion) (string, error) {
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
	ok := map[string]bool{">=": cmp >= 0, "<=": cmp <= 0, "=": cmp == 0, "!=": cmp != 0, ">": cmp > 0, "<": cmp < 0}[op]
	if !ok {
		return got, fmt.Errorf("assertion %q: got %s, want %s %s", a.SQL, got, op, want)
	}
	return got, nil
}

func hasString(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

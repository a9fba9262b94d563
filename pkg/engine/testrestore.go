package engine

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"time"

	"filippo.io/age"

	"github.com/cfbackup/cfbackup/pkg/manifest"
	"github.com/cfbackup/cfbackup/pkg/source"
	"github.com/cfbackup/cfbackup/pkg/store"
)

// Assertion is a user check run against a D1 database restored by test-restore (pkg/source).
type Assertion = source.Assertion

// TestRestoreOptions choose what test-restore restores into scratch targets.
type TestRestoreOptions struct {
	Identities []age.Identity
	// Components limits the run (default: every component of the snapshot this build can test).
	Components []string
	// Sample limits per-object components (R2 objects, Durable Objects) to N items or x percent,
	// picked at random from Seed (nil: a seed drawn now, reported in the result).
	Sample     string
	Seed       *uint64
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
	// Seed drew the --sample (test-restore --seed takes it again to pick the same items); omitted
	// without --sample.
	Seed *uint64 `json:"seed,omitempty"`
}

// TestRestore restores a snapshot into scratch targets only — never into the account — and checks
// what came back. Problems are collected per source; the error wraps ErrIntegrity when there is any.
func (e *Engine) TestRestore(ctx context.Context, m *manifest.Manifest, o TestRestoreOptions) (*TestRestoreResult, error) {
	start := e.now()
	m, err := e.loadChecked(ctx, m)
	if err != nil {
		return nil, err
	}
	cat, err := e.streamCatalogue(ctx, m, o.Identities)
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
	if o.Seed == nil {
		seed := rand.Uint64()
		o.Seed = &seed
	}
	if o.Sample != "" {
		res.Seed = o.Seed
	}
	for _, c := range comps {
		checks, err := e.testRestoreComponent(ctx, m, cat, c, scratch, o)
		if err != nil {
			return nil, err
		}
		res.Sources = append(res.Sources, checks...)
	}
	problems, failures := tallyProblems(res)
	res.DurationMillis = e.now().Sub(start).Milliseconds()
	if o.Record {
		e.recordTestRestore(ctx, m, res, comps, failures)
	}
	if !res.OK {
		var class error = ErrIntegrity
		if archived(problems) {
			// A segment in an archive storage class is not damage: the fix is a restore request (exit 8).
			class = store.ErrArchived
		}
		return res, fmt.Errorf("%w: test-restore of snapshot %s: %s", class, m.ID, strings.Join(problems, "; "))
	}
	return res, nil
}

// archived reports whether every problem is a segment that must be restored from an archive storage
// class first. Components report problems as text, and store.ErrArchived's text is fixed.
func archived(problems []string) bool {
	for _, p := range problems {
		if !strings.Contains(p, store.ErrArchived.Error()) {
			return false
		}
	}
	return len(problems) > 0
}

// testRestoreComponent asks one component to restore its sources into scratch and check them; a
// component this build does not know is reported as unsupported, not as passed.
func (e *Engine) testRestoreComponent(ctx context.Context, m *manifest.Manifest, cat *manifest.Catalogue, c, scratch string, o TestRestoreOptions) ([]TestRestoreCheck, error) {
	if !hasString(m.Components, c) {
		return nil, fmt.Errorf("%w: snapshot %s has no %s component (it has: %s)", ErrNotFound, m.ID, c, strings.Join(m.Components, ", "))
	}
	if !source.Registered(c) {
		chk := TestRestoreCheck{Component: c, Checks: []string{}}
		chk.Fail(FailureUnsupported, "this version cannot test-restore "+c+": nothing was checked")
		return []TestRestoreCheck{chk}, nil
	}
	comp, ok := o.Bound[c]
	if !ok {
		var err error
		if comp, err = source.New(c); err != nil {
			return nil, err
		}
	}
	return comp.TestRestore(ctx, o.Env, source.TestRestoreRequest{
		Snapshot: m, Catalogue: cat, Open: e.Opener(m, o.Identities), Identities: o.Identities,
		Scratch: filepath.Join(scratch, c), Sample: o.Sample, Seed: *o.Seed, Assertions: o.Assertions,
		ScratchWorkerURL: o.ScratchWorkerURL, ScratchWorkerSecret: o.ScratchWorkerSecret, Diff: o.Diff, Log: e.log(),
	})
}

// tallyProblems sets res.OK and each source's problem kinds, and returns the problems as one line
// each and their counts by kind.
func tallyProblems(res *TestRestoreResult) ([]string, map[string]int) {
	res.OK = true
	var problems []string
	failures := map[string]int{}
	for i := range res.Sources {
		s := &res.Sources[i]
		kinds := make([]string, len(s.Problems))
		for j, p := range s.Problems {
			res.OK = false
			kinds[j] = s.Kind(j)
			failures[kinds[j]]++
			problems = append(problems, strings.TrimSpace(s.Component+" "+s.Source)+": "+p+" ["+kinds[j]+"]")
		}
		s.ProblemKinds = kinds
		if s.Problems == nil {
			s.Problems = []string{}
		}
	}
	return problems, failures
}

// recordTestRestore stores the outcome under verify/ (mode test-restore) for reports: counts by
// component and kind only, never table, database, script or object names (invariant 3).
func (e *Engine) recordTestRestore(ctx context.Context, m *manifest.Manifest, res *TestRestoreResult, comps []string, failures map[string]int) {
	vr := &VerifyResult{Time: res.Time, OK: res.OK, Snapshot: m.ID, Mode: "test-restore", SegmentsTotal: len(m.Segments), Problems: []string{}, DurationMillis: res.DurationMillis}
	for _, s := range res.Sources {
		vr.Items += s.Items
		vr.BytesRead += s.Bytes
	}
	if !res.OK {
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

func hasString(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

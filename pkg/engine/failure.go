package engine

import (
	"errors"
	"strconv"
	"strings"

	"github.com/cfbackup/cfbackup/pkg/archive"
	"github.com/cfbackup/cfbackup/pkg/source/d1"
	"github.com/cfbackup/cfbackup/pkg/source/d1/sqldump"
	"github.com/cfbackup/cfbackup/pkg/store"
)

// Failure kinds say what a failed check of verify or test-restore means; verify/ records carry them
// (failure_kind, failures) so an auditor can tell damage from an unmet assertion or an unsupported
// component. docs/FORMAT.md ("verify/ records") lists them.
const (
	// FailureIntegrity: stored data is missing or differs from what the snapshot recorded (a hash, a
	// size, a count, a document that does not parse or does not match its catalogue entry).
	FailureIntegrity = "integrity"
	// FailureRestore: the data was intact but did not restore into the scratch target, or the
	// restored copy failed its checks there (SQLite integrity_check, foreign_key_check, row counts).
	FailureRestore = "restore"
	// FailureAssertion: the data restored, and a user assertion about it did not hold.
	FailureAssertion = "assertion"
	// FailureError: the check itself could not run (storage or network error, scratch target
	// unusable, local runtime refused): no evidence either way.
	FailureError = "error"
	// FailureUnsupported: this build cannot check the component: nothing was proven, nothing found.
	FailureUnsupported = "unsupported"
)

// FailureKinds lists the kinds, most serious first: a record's failure_kind is the first one of its
// failures.
var FailureKinds = []string{FailureIntegrity, FailureRestore, FailureAssertion, FailureError, FailureUnsupported}

// FailureKindOf classifies err: FailureIntegrity when it wraps an integrity sentinel (or a stored
// object that is gone), FailureRestore when a restored SQLite database failed its checks, else dflt.
func FailureKindOf(err error, dflt string) string {
	switch {
	case errors.Is(err, ErrIntegrity), errors.Is(err, archive.ErrIntegrity), errors.Is(err, store.ErrNotFound):
		return FailureIntegrity
	case errors.Is(err, sqldump.ErrCheckFailed), errors.Is(err, d1.ErrMismatch):
		return FailureRestore
	}
	return dflt
}

// primaryFailure is the most serious kind counted in failures ("" when there is none).
func primaryFailure(failures map[string]int) string {
	for _, k := range FailureKinds {
		if failures[k] > 0 {
			return k
		}
	}
	for k, n := range failures {
		if n > 0 {
			return k
		}
	}
	return ""
}

// Fail records one problem of a test-restore source and what kind of failure it is.
func (c *TestRestoreCheck) Fail(kind, problem string) {
	c.Problems = append(c.Problems, problem)
	c.ProblemKinds = append(c.ProblemKinds, kind)
}

// kind is the failure kind of problem i (FailureError for a problem appended without one).
func (c *TestRestoreCheck) kind(i int) string {
	if i < len(c.ProblemKinds) && c.ProblemKinds[i] != "" {
		return c.ProblemKinds[i]
	}
	return FailureError
}

// fail records one verification problem and its kind.
func (r *VerifyResult) fail(kind, problem string) {
	r.Problems = append(r.Problems, problem)
	r.kinds = append(r.kinds, kind)
	if r.Failures == nil {
		r.Failures = map[string]int{}
	}
	r.Failures[kind]++
	r.FailureKind = primaryFailure(r.Failures)
}

// failureSummary is "2 integrity, 1 error": the counts by kind, most serious first.
func failureSummary(failures map[string]int) string {
	var parts []string
	for _, k := range FailureKinds {
		if n := failures[k]; n > 0 {
			parts = append(parts, strconv.Itoa(n)+" "+k)
		}
	}
	return strings.Join(parts, ", ")
}

// kind is the failure kind of problem i (FailureError for a problem appended without one).
func (r *VerifyResult) kind(i int) string {
	if i < len(r.kinds) && r.kinds[i] != "" {
		return r.kinds[i]
	}
	return FailureError
}

package engine

import (
	"errors"
	"strconv"
	"strings"

	"github.com/cfbackup/cfbackup/pkg/archive"
	"github.com/cfbackup/cfbackup/pkg/source"
	"github.com/cfbackup/cfbackup/pkg/store"
)

// Failure kinds (pkg/source): what a failed check of verify or test-restore means.
const (
	FailureIntegrity   = source.FailureIntegrity
	FailureRestore     = source.FailureRestore
	FailureAssertion   = source.FailureAssertion
	FailureError       = source.FailureError
	FailureUnsupported = source.FailureUnsupported
)

// FailureKinds lists the kinds, most serious first.
var FailureKinds = source.FailureKinds

// FailureKindOf classifies err: FailureIntegrity when it wraps an integrity sentinel (or a stored
// object that is gone), else dflt. Components tell their own restore failures apart (D1: a restored
// SQLite database that fails its checks is FailureRestore).
func FailureKindOf(err error, dflt string) string {
	if errors.Is(err, ErrIntegrity) || errors.Is(err, archive.ErrIntegrity) || errors.Is(err, store.ErrNotFound) {
		return FailureIntegrity
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

// fail records one verification problem and its kind.
func fail(r *VerifyResult, kind, problem string) {
	r.AddProblem(kind, problem)
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

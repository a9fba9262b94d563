package cli

import (
	"context"
	"errors"

	"github.com/cfbackup/cfbackup/pkg/errclass"
)

// Exit codes: the one place they are defined. docs/EXIT_CODES.md documents them; keep both in step.
const (
	ExitOK          = 0   // success
	ExitFailure     = 1   // any failure not covered below (storage errors, bugs)
	ExitUsage       = 2   // bad flags, arguments or configuration
	ExitRepository  = 3   // repository missing, already there, or of an unsupported format
	ExitKey         = 4   // identity or recipient missing, unreadable or not matching
	ExitCloudflare  = 5   // Cloudflare API: token rejected, unreachable, task failed
	ExitIntegrity   = 6   // data does not match its recorded hashes, or a restored database fails its checks
	ExitNotFound    = 7   // snapshot, database or table does not exist
	ExitRefused     = 8   // the target exists or holds data; nothing was changed (use --yes / another target)
	ExitDiffers     = 9   // restore --component config --diff: the live configuration differs from the snapshot
	ExitLocked      = 10  // another process holds a conflicting repository lock; nothing was changed
	ExitPolicy      = 11  // prune --enforce: a snapshot outlives its retention policy or a required one is missing
	ExitProtected   = 12  // restore into a protected target: approval needed (plan written), invalid, or test-restore gate
	ExitIncomplete  = 13  // shard merge: not every shard of the run has committed yet; nothing was merged
	ExitInterrupted = 130 // interrupted (Ctrl-C, SIGTERM); no snapshot was written
)

// usageError marks errors in how the command was called (class Usage).
type usageError struct{ error }

func (e usageError) Unwrap() error        { return e.error }
func (e usageError) Is(target error) bool { return target == errclass.Usage }

// classExit maps each error class (pkg/errclass) to its exit status. Packages declare their sentinels
// with a class, so this table never needs to know which component raised an error.
var classExit = map[*errclass.Class]int{
	errclass.Interrupted: ExitInterrupted,
	errclass.Differs:     ExitDiffers,
	errclass.Locked:      ExitLocked,
	errclass.Policy:      ExitPolicy,
	errclass.Protected:   ExitProtected,
	errclass.Incomplete:  ExitIncomplete,
	errclass.Usage:       ExitUsage,
	errclass.Integrity:   ExitIntegrity,
	errclass.Repository:  ExitRepository,
	errclass.Key:         ExitKey,
	errclass.NotFound:    ExitNotFound,
	errclass.Refused:     ExitRefused,
	errclass.Remote:      ExitCloudflare,
	errclass.Failure:     ExitFailure,
}

// exitCode maps an error to its exit status: an interruption, else the most specific class it wraps.
func exitCode(err error) int {
	switch {
	case err == nil:
		return ExitOK
	case errors.Is(err, context.Canceled):
		return ExitInterrupted
	}
	if c := errclass.Of(err); c != nil {
		return classExit[c]
	}
	return ExitFailure
}

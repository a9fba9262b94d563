package cli

import (
	"context"
	"errors"

	"github.com/cfbackup/cfbackup/internal/config"
	"github.com/cfbackup/cfbackup/pkg/archive"
	"github.com/cfbackup/cfbackup/pkg/cloudflare"
	"github.com/cfbackup/cfbackup/pkg/engine"
	"github.com/cfbackup/cfbackup/pkg/keys"
	"github.com/cfbackup/cfbackup/pkg/manifest"
	"github.com/cfbackup/cfbackup/pkg/repo"
	"github.com/cfbackup/cfbackup/pkg/retention"
	configsrc "github.com/cfbackup/cfbackup/pkg/source/config"
	"github.com/cfbackup/cfbackup/pkg/source/d1/sqldump"
	"github.com/cfbackup/cfbackup/pkg/source/r2"
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
	ExitInterrupted = 130 // interrupted (Ctrl-C, SIGTERM); no snapshot was written
)

// usageError marks errors in how the command was called.
type usageError struct{ error }

func (e usageError) Unwrap() error { return e.error }

// exitCode maps an error to its exit status, most specific first.
func exitCode(err error) int {
	switch {
	case err == nil:
		return ExitOK
	case errors.Is(err, context.Canceled):
		return ExitInterrupted
	case errors.Is(err, configsrc.ErrDiffers):
		return ExitDiffers
	case errors.Is(err, engine.ErrLocked):
		return ExitLocked
	case errors.Is(err, engine.ErrPolicyViolation):
		return ExitPolicy
	case errors.Is(err, retention.ErrPolicy):
		return ExitUsage
	case errors.As(err, new(usageError)), errors.Is(err, config.ErrInvalid), errors.Is(err, engine.ErrUsage), errors.Is(err, r2.ErrConfig):
		return ExitUsage
	case errors.Is(err, archive.ErrIntegrity), errors.Is(err, sqldump.ErrCheckFailed), errors.Is(err, sqldump.ErrNotAllowed), errors.Is(err, engine.ErrIntegrity),
		errors.Is(err, repo.ErrUnauthenticated), errors.Is(err, repo.ErrNewerUnreadable):
		return ExitIntegrity
	case errors.Is(err, repo.ErrNotRepo), errors.Is(err, repo.ErrExists), errors.Is(err, repo.ErrObjectLock), errors.Is(err, repo.ErrVersion), errors.Is(err, repo.ErrLegacy), errors.Is(err, manifest.ErrVersion), errors.Is(err, manifest.ErrFormat):
		return ExitRepository
	case errors.Is(err, repo.ErrNoRecipients), errors.Is(err, repo.ErrBadRecipient), errors.Is(err, engine.ErrKey), errors.Is(err, repo.ErrNoKey):
		return ExitKey
	case errors.Is(err, repo.ErrSnapshotNotFound), errors.Is(err, cloudflare.ErrNotFound), errors.Is(err, cloudflare.ErrOutsideWindow), errors.Is(err, engine.ErrNotFound),
		errors.Is(err, r2.ErrNoSuchBucket), errors.Is(err, r2.ErrNotInSnapshot), errors.Is(err, r2.ErrVanished):
		return ExitNotFound
	case errors.Is(err, engine.ErrRefused), errors.Is(err, keys.ErrExists), errors.Is(err, cloudflare.ErrExists), errors.Is(err, r2.ErrConflict), errors.Is(err, r2.ErrBadKey):
		return ExitRefused
	case errors.Is(err, r2.ErrAccessDenied), errors.Is(err, cloudflare.ErrAuth), errors.Is(err, cloudflare.ErrUnreachable), errors.Is(err, cloudflare.ErrTaskFailed), errors.Is(err, cloudflare.ErrConfig), errors.Is(err, cloudflare.ErrSignedURLExpired):
		return ExitCloudflare
	default:
		return ExitFailure
	}
}

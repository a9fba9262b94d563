package cli

import (
	"context"
	"errors"
	"strings"

	"github.com/cfbackup/cfbackup/internal/config"
	"github.com/cfbackup/cfbackup/pkg/archive"
	"github.com/cfbackup/cfbackup/pkg/cloudflare"
	"github.com/cfbackup/cfbackup/pkg/engine"
	"github.com/cfbackup/cfbackup/pkg/keys"
	"github.com/cfbackup/cfbackup/pkg/manifest"
	"github.com/cfbackup/cfbackup/pkg/notify"
	"github.com/cfbackup/cfbackup/pkg/repo"
	"github.com/cfbackup/cfbackup/pkg/retention"
	configsrc "github.com/cfbackup/cfbackup/pkg/source/config"
	"github.com/cfbackup/cfbackup/pkg/source/d1"
	"github.com/cfbackup/cfbackup/pkg/source/d1/sqldump"
	"github.com/cfbackup/cfbackup/pkg/source/durableobject"
	"github.com/cfbackup/cfbackup/pkg/source/r2"
	"github.com/cfbackup/cfbackup/pkg/timespec"
)

// exitClasses names each exit status (docs/EXIT_CODES.md).
var exitClasses = map[int]string{
	ExitFailure: "failure", ExitUsage: "usage", ExitRepository: "repository", ExitKey: "key", ExitCloudflare: "cloudflare",
	ExitIntegrity: "integrity", ExitNotFound: "not found", ExitRefused: "refused", ExitDiffers: "differs", ExitLocked: "locked",
	ExitPolicy: "policy", ExitInterrupted: "interrupted",
}

// errorSentinels are the sentinel errors whose fixed text names a class of failure and nothing else:
// no table, database, object, script or file name, no URL. The audit trail (plaintext) records an
// error as its exit class and these texts, never the error's own message (docs/AUDIT.md).
var errorSentinels = []error{
	context.Canceled, context.DeadlineExceeded,
	configsrc.ErrDiffers, configsrc.ErrNoScript, configsrc.ErrExists,
	engine.ErrLocked, engine.ErrPolicyViolation, engine.ErrIntegrity, engine.ErrKey, engine.ErrNotFound, engine.ErrUsage, engine.ErrRefused,
	retention.ErrPolicy, config.ErrInvalid, timespec.ErrSyntax, notify.ErrBadSetting,
	archive.ErrIntegrity, archive.ErrNoIdentity, archive.ErrBadName,
	sqldump.ErrCheckFailed, sqldump.ErrStatementTooLarge, sqldump.ErrStatementTooLong, sqldump.ErrIncomplete, sqldump.ErrPlanMismatch,
	sqldump.ErrNotAllowed, sqldump.ErrUnguarded,
	d1.ErrNotInSnapshot, d1.ErrTargetNotEmpty, d1.ErrMismatch,
	repo.ErrNotRepo, repo.ErrExists, repo.ErrVersion, repo.ErrSnapshotNotFound, repo.ErrBadRecipient, repo.ErrNoRecipients, repo.ErrObjectLock,
	repo.ErrUnauthenticated, repo.ErrNewerUnreadable, repo.ErrLegacy, repo.ErrNoKey, repo.ErrWriterKey,
	manifest.ErrFormat, manifest.ErrVersion,
	keys.ErrExists, keys.ErrBadRecipient, keys.ErrBadIdentity, keys.ErrMixedRecipients, keys.ErrNoKeys, keys.ErrInsecurePermissions,
	cloudflare.ErrAuth, cloudflare.ErrNotFound, cloudflare.ErrUnreachable, cloudflare.ErrSignedURLExpired, cloudflare.ErrTaskFailed,
	cloudflare.ErrExists, cloudflare.ErrOutsideWindow, cloudflare.ErrConfig,
	r2.ErrNoSuchBucket, r2.ErrAccessDenied, r2.ErrConfig, r2.ErrVanished, r2.ErrConflict, r2.ErrBadKey, r2.ErrChanged, r2.ErrIndex,
	r2.ErrJournal, r2.ErrNotInSnapshot,
	durableobject.ErrAuth, durableobject.ErrNotConfigured, durableobject.ErrNotFound, durableobject.ErrRefused, durableobject.ErrMismatch,
	durableobject.ErrFormat,
}

// errorClass is what the audit trail says about a failed run: the exit status's class, then the
// texts of the known sentinels the error wraps ("not found: snapshot not found"). An error that wraps
// none is only its class (and a usage error "usage"): its message may quote names or URLs.
func errorClass(err error, code int) string {
	if err == nil {
		return ""
	}
	class := exitClasses[code]
	if class == "" {
		class = exitClasses[ExitFailure]
	}
	var texts []string
	for _, s := range errorSentinels {
		if errors.Is(err, s) {
			texts = append(texts, s.Error())
		}
	}
	if len(texts) == 0 {
		return class
	}
	return class + ": " + strings.Join(texts, "; ")
}

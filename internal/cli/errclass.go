package cli

import (
	"context"
	"errors"
	"strings"

	"github.com/cfbackup/cfbackup/pkg/errclass"
)

// exitClasses names each exit status (docs/EXIT_CODES.md).
var exitClasses = map[int]string{
	ExitFailure: "failure", ExitUsage: "usage", ExitRepository: "repository", ExitKey: "key", ExitCloudflare: "cloudflare",
	ExitIntegrity: "integrity", ExitNotFound: "not found", ExitRefused: "refused", ExitDiffers: "differs", ExitLocked: "locked",
	ExitPolicy: "policy", ExitProtected: "protected", ExitIncomplete: "incomplete", ExitInterrupted: "interrupted",
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
	if errors.Is(err, context.Canceled) {
		texts = append(texts, context.Canceled.Error())
	}
	if errors.Is(err, context.DeadlineExceeded) {
		texts = append(texts, context.DeadlineExceeded.Error())
	}
	texts = append(texts, errclass.Texts(err)...)
	if len(texts) == 0 {
		return class
	}
	return class + ": " + strings.Join(texts, "; ")
}

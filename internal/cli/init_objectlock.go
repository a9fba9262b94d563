package cli

import (
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/cfbackup/cfbackup/pkg/repo"
	"github.com/cfbackup/cfbackup/pkg/retention"
)

// objectLockFlags are init's --object-lock-retention and --object-lock-mode.
type objectLockFlags struct {
	retention string
	mode      string
}

func (l *objectLockFlags) addFlags(cmd *cobra.Command) {
	cmd.Flags().StringVar(&l.retention, "object-lock-retention", "", "S3 Object Lock: put this retention (whole days, e.g. 30d) on everything written; the bucket must have Object Lock")
	cmd.Flags().StringVar(&l.mode, "object-lock-mode", "governance", "with --object-lock-retention: governance (privileged users may override) or compliance (nobody may, not even the root account)")
}

// parse returns nil when no retention is asked for.
func (l *objectLockFlags) parse() (*repo.ObjectLock, error) {
	if l.retention == "" {
		return nil, nil
	}
	d, err := retention.ParseDuration(l.retention)
	if err != nil || d < 24*time.Hour || d%(24*time.Hour) != 0 {
		return nil, usageError{fmt.Errorf("--object-lock-retention %q: give whole days, at least 1d (e.g. 30d)", l.retention)}
	}
	mode := strings.ToLower(l.mode)
	if mode != "governance" && mode != "compliance" {
		return nil, usageError{fmt.Errorf("--object-lock-mode %q: use governance or compliance", l.mode)}
	}
	return &repo.ObjectLock{Mode: strings.ToUpper(mode), Days: int(d / (24 * time.Hour))}, nil
}

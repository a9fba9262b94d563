package cli

import (
	"context"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/cfbackup/cfbackup/pkg/engine"
)

// doBackupFlags are backup's flags for the do component.
type doBackupFlags struct{}

func (b *doBackupFlags) addFlags(cmd *cobra.Command) {}

// plan adds the do sources to the backup plan.
func (b *doBackupFlags) plan(ctx context.Context, o *BackupOptions, eng *engine.Engine, plan *engine.BackupPlan) error {
	return usageError{fmt.Errorf("--component do is not supported by this version yet")}
}

func (b *doBackupFlags) printPlan(w io.Writer, plan *engine.BackupPlan) {}

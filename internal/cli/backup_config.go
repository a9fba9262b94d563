package cli

import (
	"context"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/cfbackup/cfbackup/pkg/engine"
)

// configBackupFlags are backup's flags for the config component.
type configBackupFlags struct{}

func (b *configBackupFlags) addFlags(cmd *cobra.Command) {}

// plan adds the config sources to the backup plan.
func (b *configBackupFlags) plan(ctx context.Context, o *BackupOptions, eng *engine.Engine, plan *engine.BackupPlan) error {
	return usageError{fmt.Errorf("--component config is not supported by this version yet")}
}

func (b *configBackupFlags) printPlan(w io.Writer, plan *engine.BackupPlan) {}

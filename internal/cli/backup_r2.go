package cli

import (
	"context"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/cfbackup/cfbackup/pkg/engine"
)

// r2BackupFlags are backup's flags for the r2 component.
type r2BackupFlags struct{}

func (b *r2BackupFlags) addFlags(cmd *cobra.Command) {}

// plan adds the r2 sources to the backup plan.
func (b *r2BackupFlags) plan(ctx context.Context, o *BackupOptions, eng *engine.Engine, plan *engine.BackupPlan) error {
	return usageError{fmt.Errorf("--component r2 is not supported by this version yet")}
}

func (b *r2BackupFlags) printPlan(w io.Writer, plan *engine.BackupPlan) {}

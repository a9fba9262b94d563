package cli

import (
	"fmt"

	"github.com/spf13/cobra"
)

// doRestoreFlags are restore's flags for the do component.
type doRestoreFlags struct{}

func (b *doRestoreFlags) addFlags(cmd *cobra.Command) {}

// run restores do sources from a snapshot.
func (b *doRestoreFlags) run(cmd *cobra.Command, o *RestoreOptions) error {
	return usageError{fmt.Errorf("--component do cannot be restored by this version yet")}
}

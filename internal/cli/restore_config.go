package cli

import (
	"fmt"

	"github.com/spf13/cobra"
)

// configRestoreFlags are restore's flags for the config component.
type configRestoreFlags struct{}

func (b *configRestoreFlags) addFlags(cmd *cobra.Command) {}

// run restores config sources from a snapshot.
func (b *configRestoreFlags) run(cmd *cobra.Command, o *RestoreOptions) error {
	return usageError{fmt.Errorf("--component config cannot be restored by this version yet")}
}

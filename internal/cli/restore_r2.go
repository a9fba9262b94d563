package cli

import (
	"fmt"

	"github.com/spf13/cobra"
)

// r2RestoreFlags are restore's flags for the r2 component.
type r2RestoreFlags struct{}

func (b *r2RestoreFlags) addFlags(cmd *cobra.Command) {}

// run restores r2 sources from a snapshot.
func (b *r2RestoreFlags) run(cmd *cobra.Command, o *RestoreOptions) error {
	return usageError{fmt.Errorf("--component r2 cannot be restored by this version yet")}
}

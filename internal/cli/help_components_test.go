package cli

import (
	"strings"
	"testing"

	"github.com/cfbackup/cfbackup/pkg/source"
)

// TestBackupRestoreHelpCoversComponents: backup's and restore's help describe and give an example for
// every registered component, so a new component cannot be left out of them.
func TestBackupRestoreHelpCoversComponents(t *testing.T) {
	root := NewRootCmd(&Factory{})
	for _, verb := range []string{"backup", "restore"} {
		cmd, _, err := root.Find([]string{verb})
		if err != nil {
			t.Fatal(err)
		}
		for _, name := range source.Names() {
			want := "--component " + name
			if !strings.Contains(cmd.Long, want) {
				t.Errorf("%s --help does not describe %q", verb, want)
			}
			if !strings.Contains(cmd.Example, want) && !strings.Contains(cmd.Example, ","+name) {
				t.Errorf("%s --help has no example with component %s", verb, name)
			}
			if !strings.Contains(cmd.Flags().Lookup("component").Usage, name) {
				t.Errorf("%s --component's help does not list %s", verb, name)
			}
		}
		if strings.Contains(cmd.Short, "D1 databases into") || !strings.Contains(cmd.Short, "R2") {
			t.Errorf("%s short help: %q", verb, cmd.Short)
		}
	}
}

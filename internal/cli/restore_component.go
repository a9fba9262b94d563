package cli

import (
	"fmt"
	"slices"
	"strings"

	"github.com/cfbackup/cfbackup/pkg/engine"
	"github.com/cfbackup/cfbackup/pkg/manifest"
)

// snapshotHas fails with exit 7 when a snapshot named for a restore lacks the component, naming the
// components it does hold and how to find one that has it.
func snapshotHas(m *manifest.Manifest, component string) error {
	if slices.Contains(m.Components, component) {
		return nil
	}
	return fmt.Errorf("%w: snapshot %s has no %s component (it has: %s); see the ones that do: cfbackup list --component %s",
		engine.ErrNotFound, m.ID, component, strings.Join(m.Components, ", "), component)
}

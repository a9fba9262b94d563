package cli

import (
	"fmt"
	"testing"

	"github.com/cfbackup/cfbackup/pkg/archive"
	"github.com/cfbackup/cfbackup/pkg/source/d1/sqldump"
)

// TestExitCodeUntrustedInputIsIntegrity: SQL a D1 dump cannot contain and tar names a segment never
// holds are damaged (or forged) repository data: exit 6, like a hash mismatch.
func TestExitCodeUntrustedInputIsIntegrity(t *testing.T) {
	for _, err := range []error{
		fmt.Errorf("load into x.db: %w", sqldump.ErrNotAllowed),
		fmt.Errorf("segment s: %w", archive.ErrIntegrity),
	} {
		if got := exitCode(err); got != ExitIntegrity {
			t.Errorf("exitCode(%v) = %d, want %d", err, got, ExitIntegrity)
		}
	}
	// The audit trail records the class and the sentinel's fixed text, never the SQL excerpt.
	err := fmt.Errorf("load into /srv/secret-name.db: %w: statement 4 (ATTACH '/home/x' AS v;): ATTACH", sqldump.ErrNotAllowed)
	if got, want := errorClass(err, exitCode(err)), "integrity: "+sqldump.ErrNotAllowed.Error(); got != want {
		t.Errorf("errorClass = %q, want %q", got, want)
	}
}

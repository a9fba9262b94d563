package engine

import (
	"context"
	"fmt"
	"path/filepath"

	"github.com/cfbackup/cfbackup/pkg/manifest"
	configsrc "github.com/cfbackup/cfbackup/pkg/source/config"
)

// testRestoreConfig decrypts and parses every configuration document of the snapshot, compares each
// with the catalogue, writes them into scratch as 'restore --to-dir' does and reads them back; with
// o.ConfigDiff it also compares the result with the live account (differences are reported, not
// failures: the account may have changed since the snapshot).
func testRestoreConfig(ctx context.Context, e *Engine, m *manifest.Manifest, cat *manifest.Catalogue, o TestRestoreOptions, scratch string) ([]TestRestoreCheck, error) {
	open := configsrc.Opener(e.Opener(m, o.Identities))
	var out []TestRestoreCheck
	for _, src := range SourcesOf(m, configsrc.Component) {
		chk := TestRestoreCheck{Component: configsrc.Component, Source: src.Name, Checks: []string{}, Problems: []string{}}
		res, err := configsrc.TestRestore(ctx, open, cat, src, filepath.Join(scratch, src.ID))
		if err != nil {
			return nil, err
		}
		chk.Items, chk.Bytes = res.Items, res.Bytes
		chk.Checks = append(chk.Checks, res.Checks...)
		for _, p := range res.Problems {
			chk.Fail(p.Kind, p.Text)
		}
		if o.ConfigDiff != nil && res.State.Inventory != nil {
			changes, err := o.ConfigDiff(ctx, res.State)
			switch {
			case err != nil:
				if ctx.Err() != nil {
					return nil, ctx.Err()
				}
				chk.Fail(FailureError, fmt.Sprintf("compare with the live account: %v", err))
			case len(changes) == 0:
				chk.Checks = append(chk.Checks, "same as the live account")
			default:
				chk.LiveChanges = changes
				chk.Checks = append(chk.Checks, fmt.Sprintf("%d difference(s) from the live account (listed; not a failure)", len(changes)))
			}
		}
		out = append(out, chk)
	}
	return out, nil
}

package d1

import (
	"context"

	"github.com/cfbackup/cfbackup/pkg/source"
)

// UsesCloudflareAPI: D1 is reached only through the REST API.
func (*component) UsesCloudflareAPI() bool { return true }

// Diagnose proves D1 Read by listing one database. D1 Edit (export for a backup, import and Time
// Travel for a restore) cannot be proven without starting one, so it is reported as unproven.
func (*component) Diagnose(ctx context.Context, req source.DiagnoseRequest) []source.Finding {
	return source.ProbeAll(ctx, req, Component,
		[]source.ProbeRequest{{Path: "d1/database", Permission: "D1 Read", Needed: []source.Verb{source.VerbBackup, source.VerbRestore}}},
		source.Unprovable(Component, "D1 Edit", []source.Verb{source.VerbBackup, source.VerbRestore}, "its calls are the export a backup starts and the import a restore runs"))
}

package config

import (
	"context"

	"github.com/cfbackup/cfbackup/pkg/source"
)

// UsesCloudflareAPI: the configuration is read only through the REST API.
func (*component) UsesCloudflareAPI() bool { return true }

// Diagnose proves Workers Scripts Read (scripts, settings, schedules, routes) by listing the
// scripts; the inventory's reads (D1, R2, Durable Objects) are checked too, as warnings, since the
// inventory is a side record of the backup (docs/CONFIG_COMPONENT.md).
func (*component) Diagnose(ctx context.Context, req source.DiagnoseRequest) []source.Finding {
	backup := []source.Verb{source.VerbBackup}
	return source.ProbeAll(ctx, req, Component, []source.ProbeRequest{
		{Path: "workers/scripts", Permission: "Workers Scripts Read", Needed: backup},
		{Path: "r2/buckets", Permission: "Workers R2 Storage Read", Needed: backup, Severity: source.StatusWarn},
	})
}

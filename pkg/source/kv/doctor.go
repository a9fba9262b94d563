package kv

import (
	"context"

	"github.com/cfbackup/cfbackup/pkg/source"
)

// UsesCloudflareAPI: KV is reached only through the REST API.
func (*kvComponent) UsesCloudflareAPI() bool { return true }

// Diagnose proves Workers KV Storage Read by listing one namespace; Write (restores) would need a
// write to prove.
func (*kvComponent) Diagnose(ctx context.Context, req source.DiagnoseRequest) []source.Finding {
	return source.ProbeAll(ctx, req, Component,
		[]source.ProbeRequest{{Path: "storage/kv/namespaces", Permission: "Workers KV Storage Read", Needed: []source.Verb{source.VerbBackup, source.VerbRestore}}},
		source.Unprovable(Component, "Workers KV Storage Write", []source.Verb{source.VerbRestore}, "only a bulk write or delete uses it"))
}

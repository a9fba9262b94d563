package cli

import (
	"time"

	"github.com/cfbackup/cfbackup/pkg/manifest"
)

// RunResult is what a command publishes about its run (f.SetResult) for the hooks that run after it:
// the audit record, notifications and metrics (hooks.go). Commands fill what they know; the hooks add
// Command, Duration, Err and ExitCode.
type RunResult struct {
	// Command is the command path without "cfbackup" ("backup", "hold add").
	Command string
	// Components the run concerned (d1, do, r2, config).
	Components []string
	// Snapshots the run created, read, held or removed.
	Snapshots []string
	// Bytes and Items handled in total; PerComponent splits them by component when known.
	Bytes        int64
	Items        int64
	PerComponent map[string]ComponentResult
	// Wrote says the run wrote the snapshot it names (backup, a shard, shard merge): its audit record
	// carries Items, StoredBytes and PerComponent.
	Wrote       bool
	StoredBytes int64
	Duration    time.Duration
	Err         error
	ExitCode    int
}

// ComponentResult is one component's share of a run.
type ComponentResult struct {
	Bytes int64
	Items int64
}

// SetResult publishes the command's outcome for the audit, notification and metrics hooks. A later
// call replaces an earlier one.
func (f *Factory) SetResult(r RunResult) {
	cp := r
	f.result = &cp
}

// backupResult describes a snapshot the run wrote: resultFromManifest, and the bytes it stored.
func backupResult(m *manifest.Manifest) RunResult {
	r := resultFromManifest(m)
	r.Wrote, r.StoredBytes = true, m.StoredSize
	return r
}

// resultFromManifest describes a snapshot a run wrote or read.
func resultFromManifest(m *manifest.Manifest) RunResult {
	r := RunResult{Components: m.Components, Snapshots: []string{m.ID}, Bytes: m.Size, Items: m.Items, PerComponent: map[string]ComponentResult{}}
	for _, s := range m.Sources {
		c := r.PerComponent[s.Component]
		c.Bytes += s.Size
		c.Items += s.Items
		r.PerComponent[s.Component] = c
	}
	return r
}

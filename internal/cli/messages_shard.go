package cli

import (
	"time"

	"github.com/cfbackup/cfbackup/pkg/manifest"
)

// msgShard and msgShardMerge are the message_types of a sharded backup and of a merge.
const (
	msgShard      = "shard"
	msgShardMerge = "shard_merge"
)

// ShardBackupMessage is what `backup --shard I/N --json` prints: this shard's part of the run, and
// the merge when this shard found the run complete (docs/SHARDING.md).
type ShardBackupMessage struct {
	// MessageType is "shard".
	MessageType string `json:"message_type"`
	// Run is the run id every shard of the run shares; Shard is "I/N".
	Run   string `json:"run"`
	Shard string `json:"shard"`
	// State is "committed" (this process wrote the shard's partial), "already_committed" (another
	// process had; nothing was written) or "already_merged" (the run's snapshot exists; nothing to do).
	State string `json:"state"`
	// PartialKey is the shard's partial manifest (shards/<run>/<I>-of-<N>.json).
	PartialKey string `json:"partial_key"`
	// Sources summarise what this shard backed up (committed only): objects, bytes, reused, parent.
	Sources []manifest.Source `json:"sources,omitempty"`
	// Full is true when a bucket had no parent for this shard: every object of the shard was fetched.
	Full bool `json:"full,omitempty"`
	// Present is how many of the N shards have committed.
	Present int `json:"present"`
	// Merge is the merge this process ran (or found) once all N were present; absent otherwise.
	Merge *ShardMergeMessage `json:"merge,omitempty"`
	// MergePending says why the run is not merged yet and what to run.
	MergePending string `json:"merge_pending,omitempty"`
}

// ShardMergeMessage is what `shard merge --json` prints: the run's one snapshot.
type ShardMergeMessage struct {
	// MessageType is "shard_merge".
	MessageType string `json:"message_type"`
	Run         string `json:"run"`
	Shards      int    `json:"shards"`
	// Snapshot is the run's snapshot id (derived from the run id).
	Snapshot string    `json:"snapshot"`
	Time     time.Time `json:"time"`
	// AlreadyMerged is true when the snapshot existed (another merger won, or an earlier merge).
	AlreadyMerged bool  `json:"already_merged"`
	Items         int64 `json:"items"`
	Size          int64 `json:"size"`
	Segments      int   `json:"segments"`
	// PartialsRemoved counts the partial manifests this merge deleted.
	PartialsRemoved int `json:"partials_removed"`
	// ShardRuns say what each shard did (the merged manifest's "shards"): partial id, host, start,
	// duration, objects, bytes, stored bytes, objects reused.
	ShardRuns []manifest.ShardRun `json:"shard_runs,omitempty"`
}

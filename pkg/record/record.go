// Package record declares the plaintext records cfbackup leaves in a repository as evidence — legal
// holds (holds/), prune runs (prune/) and verifications (verify/) — in one place. The engine writes
// them and pkg/report reads them back; with one declaration the two can no longer drift apart (they
// did: the report once read counts as int64 that the engine wrote as int, and missed fields). The
// JSON encoding is the on-disk format (docs/FORMAT.md): fields may be added, never renamed, so records
// written by older versions still read.
package record

import (
	"time"

	"github.com/cfbackup/cfbackup/pkg/layout"
)

// Where the records live in a repository (docs/FORMAT.md).
const (
	// HoldPrefix holds legal holds: holds/<snapshot-id>/<hold-id>.json, and a release as
	// holds/<snapshot-id>/<hold-id>-release.json. Records are never rewritten.
	HoldPrefix = layout.Holds
	// PrunePrefix holds one record per prune run: prune/<20060102T150405Z>-<run-id>.json.
	PrunePrefix = layout.PruneRecords
	// VerifyPrefix holds one record per verify or test-restore run: verify/<UTC time>-<snapshot id>.json.
	VerifyPrefix = layout.VerifyRecords
)

// Hold actions: a hold record either places a hold or releases one placed earlier.
const (
	HoldAdd     = "add"
	HoldRelease = "release"
)

// Hold is one holds/ record: a hold placed on a snapshot (Action "add") or the release of one
// (Action "release", same ID). Both are kept forever, so who held what, when and why stays provable.
type Hold struct {
	// ID names the hold; a release carries the ID of the hold it ends.
	ID string `json:"id"`
	// Snapshot is the held snapshot's id.
	Snapshot string `json:"snapshot"`
	// Reason is why the hold was placed (or released): required, the record is evidence.
	Reason string `json:"reason"`
	// Case is an optional case or ticket id.
	Case string `json:"case,omitempty"`
	// Until ends the hold by itself; absent: until released.
	Until *time.Time `json:"until,omitempty"`
	// Actor is who placed or released the hold (CFBACKUP_ACTOR, else user@host).
	Actor string `json:"actor"`
	// Time is when the record was written (UTC).
	Time time.Time `json:"time"`
	// Action is HoldAdd or HoldRelease.
	Action string `json:"action"`
}

// PruneKept is a snapshot a prune run kept, with every rule that kept it ("last", "daily", …,
// "hold", "object-lock"): an auditor sees why a snapshot outlived the policy.
type PruneKept struct {
	Snapshot string `json:"snapshot"`
	// Time is the snapshot's time, RFC 3339 UTC to the second.
	Time    string   `json:"time"`
	Reasons []string `json:"reasons"`
}

// PruneRemoved is a snapshot a prune run removed (or, in a dry run, would remove).
type PruneRemoved struct {
	Snapshot string `json:"snapshot"`
	// Time is the snapshot's time, RFC 3339 UTC to the second.
	Time       string   `json:"time"`
	Components []string `json:"components"`
	// StoredSize is the snapshot's stored size in bytes (data it shared with kept snapshots stays).
	StoredSize int64 `json:"stored_size"`
	// Size, Items, DurationSeconds and ComponentSizes are the snapshot's figures from its manifest,
	// kept so that the report's size and duration history still holds the points retention removed
	// (docs/REPORT.md). Plaintext-safe: counts and component names only, never item names. Absent in
	// records written before they existed.
	Size            int64            `json:"size,omitempty"`
	Items           int64            `json:"items,omitempty"`
	DurationSeconds float64          `json:"duration_seconds,omitempty"`
	ComponentSizes  map[string]int64 `json:"component_sizes,omitempty"`
}

// Prune is one prune run: its plan and outcome. Without DryRun it is also stored as the prune/
// record, and `prune --json` prints it as its result.
type Prune struct {
	// Time is when the run started (UTC); RunID names it (and its marks/).
	Time  time.Time `json:"time"`
	RunID string    `json:"run_id"`
	Actor string    `json:"actor"`
	// Policy is the retention policy as the user gave it (flags or the config file's retention:
	// block), recorded verbatim: an object, or null when none was given.
	Policy any  `json:"policy"`
	DryRun bool `json:"dry_run"`
	// Grace is how long unreferenced data waited before it could be deleted (e.g. "24h").
	Grace   string         `json:"grace"`
	Kept    []PruneKept    `json:"kept"`
	Removed []PruneRemoved `json:"removed"`
	// SegmentsDeleted, ObjectsDeleted and BytesFreed count what this run deleted (would delete, in a
	// dry run): segments, other objects (indexes, journals, marks), and their bytes.
	SegmentsDeleted int   `json:"segments_deleted"`
	ObjectsDeleted  int   `json:"objects_deleted"`
	BytesFreed      int64 `json:"bytes_freed"`
	// Marked are unreferenced objects marked in this run; PendingBytes the bytes waiting for their
	// grace period (deleted by a later prune).
	Marked       int   `json:"marked"`
	PendingBytes int64 `json:"pending_bytes"`
	// Violations are what the policy found wrong: snapshots outliving it, required snapshots missing.
	Violations []string `json:"violations,omitempty"`
	// Errors are the deletes or reads that failed; the run's exit status is 1 when there is any.
	Errors []string `json:"errors"`
	// TempFilesDeleted counts the temporary files of killed writes (local store, ".tmp-*") older than
	// the grace period that the sweep removed (or, in a dry run, would remove); their bytes are in BytesFreed.
	TempFilesDeleted int `json:"temp_files_deleted,omitempty"`
	// RetentionExtended counts objects of kept snapshots whose Object Lock retention prune extended.
	RetentionExtended int `json:"retention_extended,omitempty"`
	// StaleShards are partial manifests of sharded runs never merged and older than a week, which
	// this run removed (would remove, in a dry run); docs/SHARDING.md.
	StaleShards []string `json:"stale_shards,omitempty"`
	// RecordKey is where the record was written ("" in a dry run).
	RecordKey string `json:"record_key,omitempty"`
}

// Verify is one snapshot's verification outcome: printed by `verify --json` and, reduced so that no
// item or table name is stored in plaintext (invariant 3), recorded under verify/. A test-restore
// records its outcome the same way, with a Mode starting with "test-restore".
type Verify struct {
	Time time.Time `json:"time"`
	OK   bool      `json:"ok"`
	// Snapshot is the verified snapshot's id.
	Snapshot string `json:"snapshot"`
	// Mode is "quick", "read-data", "read-data-subset n/t" or "test-restore…".
	Mode          string `json:"mode"`
	Segments      int    `json:"segments_checked"`
	SegmentsTotal int    `json:"segments_total"`
	Items         int    `json:"items_checked"`
	BytesRead     int64  `json:"bytes_read"`
	// Problems says what failed, one line each; always an array ([] when everything passed).
	Problems []string `json:"problems"`
	// FailureKind is the most serious kind of the failures (integrity first; "" when OK), and
	// Failures counts the problems by kind: what failed, not just that something did.
	FailureKind    string         `json:"failure_kind,omitempty"`
	Failures       map[string]int `json:"failures,omitempty"`
	DurationMillis int64          `json:"duration_ms"`
	// Authenticity is how the manifest was authenticated: "authenticated", or "legacy" (format 1).
	Authenticity string `json:"authenticity,omitempty"`
	// All marks a record of a whole-repository run (verify --all): each segment is checked once, by
	// the oldest snapshot that references it, so SegmentsChecked counts only those. Slice is the part
	// of the repository's segments it read ("3/7"; "" = every segment): the next --read-data-subset
	// next/7 run reads slice 4/7 (docs/STATS.md, "verify --all").
	All   bool   `json:"all,omitempty"`
	Slice string `json:"slice,omitempty"`

	kinds []string // the kind of each problem, index by index (never stored)
}

// AddProblem records one problem and its failure kind, and counts it in Failures. The caller sets
// FailureKind, which depends on how serious each kind is (pkg/engine).
func (v *Verify) AddProblem(kind, problem string) {
	v.Problems = append(v.Problems, problem)
	v.kinds = append(v.kinds, kind)
	if v.Failures == nil {
		v.Failures = map[string]int{}
	}
	v.Failures[kind]++
}

// ProblemKind is the failure kind of problem i, or dflt for a problem recorded without one (appended
// to Problems directly, or read back from a stored record).
func (v *Verify) ProblemKind(i int, dflt string) string {
	if i < len(v.kinds) && v.kinds[i] != "" {
		return v.kinds[i]
	}
	return dflt
}

package cli

import (
	"time"

	"github.com/cfbackup/cfbackup/pkg/audit"
	"github.com/cfbackup/cfbackup/pkg/engine"
	"github.com/cfbackup/cfbackup/pkg/repo"
)

// The documents commands print with --json, one named type each (docs/JSON.md lists them with a JSON
// Schema generated from these declarations by TestJSONSchemas; docs/CLI_JSON_OUTPUT.md says what the
// fields mean). They are a contract with scripts: fields are only ever added, never renamed or
// removed. Commands hand them to writeJSON; Run prints the one document a run produces (root.go).

// Message types: the "message_type" values that say which kind of document a script is reading.
const (
	msgError       = "error"
	msgVerify      = "verify"
	msgPrune       = "prune"
	msgHold        = "hold"
	msgPlan        = "plan"
	msgSummary     = "summary"
	msgAuditVerify = "audit_verify"
)

// RunError is how a document says its run failed: a command that printed its result and then failed
// (verify finding damage, prune --enforce finding violations) prints no second document, so the one it
// printed carries the error. The fields are absent when the run succeeded. They are the fields of the
// error document (ErrorMessage), so `.exit_code` reads the same in every failing document.
type RunError struct {
	// Error is the error message (as on stderr, without the "cfbackup: " prefix).
	Error string `json:"error,omitempty"`
	// ExitCode is the exit status (docs/EXIT_CODES.md).
	ExitCode int `json:"exit_code,omitempty"`
	// Class names the exit status ("integrity", "policy", "locked", …; docs/EXIT_CODES.md).
	Class string `json:"class,omitempty"`
}

func (e *RunError) setRunError(v RunError) { *e = v }

// failable is a document that can carry its run's error (every message that embeds RunError).
type failable interface{ setRunError(RunError) }

// ErrorMessage is the document a failing run prints when it printed nothing else: a usage error, a
// missing repository or snapshot, a lock conflict.
type ErrorMessage struct {
	// MessageType is "error".
	MessageType string `json:"message_type"`
	// Error is the error message (as on stderr).
	Error string `json:"error"`
	// ExitCode is the exit status (docs/EXIT_CODES.md).
	ExitCode int `json:"exit_code"`
	// Class names the exit status ("not found", "usage", "locked", …).
	Class string `json:"class"`
}

// KeyGenerateMessage is what `key generate --json` prints: where the identity went and its public
// half. The identity itself is never printed.
type KeyGenerateMessage struct {
	// IdentityFile is where the identity (the private key, mode 0600) was written: -o as given.
	IdentityFile string `json:"identity_file"`
	// Recipient is the age recipient (public key) to pass to `init --recipient`.
	Recipient string `json:"recipient"`
	// Fingerprint identifies the recipient in config.json and reports ("sha256:…").
	Fingerprint string `json:"fingerprint"`
	// PostQuantum: a hybrid ML-KEM-768 + X25519 identity (--pq).
	PostQuantum bool `json:"post_quantum"`
}

// InitMessage is what `init --json` prints: the new repository and where its writer secret was copied.
type InitMessage struct {
	// Repository is the repository's location (a path or s3://bucket/prefix).
	Repository string `json:"repository"`
	// ID is the new repository's id.
	ID string `json:"id"`
	// Format is the repository format version written (2).
	Format int `json:"format"`
	// Recipients are the age recipients everything is encrypted to, with their fingerprints.
	Recipients []repo.Recipient `json:"recipients"`
	// WriterKeyFile is the local copy of the writer secret backup hosts need.
	WriterKeyFile string `json:"writer_key_file"`
	// ObjectLock is the repository-wide retention (--object-lock-retention), or null.
	ObjectLock *repo.ObjectLock `json:"object_lock"`
}

// VerifyMessage is what `verify --json` prints; Result is also what verify/ records (reduced).
type VerifyMessage struct {
	// MessageType is "verify".
	MessageType string `json:"message_type"`
	// OK is false when any check failed (exit status 6).
	OK bool `json:"ok"`
	// Result is what was checked and what failed (pkg/record.Verify).
	Result *engine.VerifyResult `json:"result"`
	RunError
}

// PruneMessage is what `prune --json` prints; Result is the prune record (docs/FORMAT.md).
type PruneMessage struct {
	// MessageType is "prune".
	MessageType string `json:"message_type"`
	// OK is false when the run failed: deletes failed (exit 1), or --enforce found violations (exit 11).
	OK bool `json:"ok"`
	// Result is the plan and outcome (pkg/record.Prune); record_key says where it was stored.
	Result *engine.PruneResult `json:"result"`
	RunError
}

// HoldMessage is what `hold add --json` and `hold release --json` print.
type HoldMessage struct {
	// MessageType is "hold".
	MessageType string `json:"message_type"`
	// Action is "add" or "release".
	Action string `json:"action"`
	// Snapshot is the full id of the snapshot held or released.
	Snapshot string `json:"snapshot"`
	// Result lists the hold records written and the Object Lock legal holds changed.
	Result *engine.HoldResult `json:"result"`
	// R2BucketLockRule explains, on R2 (no Object Lock), the bucket lock rule that would make the
	// store itself refuse deletes (hold add only).
	R2BucketLockRule string `json:"r2_bucket_lock_rule,omitempty"`
	RunError
}

// CopyPlanEntry is one snapshot `copy --dry-run` would copy.
type CopyPlanEntry struct {
	// Snapshot, Time and Components identify the snapshot; StoredSize is its stored bytes.
	Snapshot   string    `json:"snapshot"`
	Time       time.Time `json:"time"`
	Components []string  `json:"components"`
	StoredSize int64     `json:"stored_size"`
	// AlreadyCopied: the destination has it; copying it again changes nothing.
	AlreadyCopied bool `json:"already_copied"`
}

// CopyPlanMessage is what `copy --dry-run --json` prints.
type CopyPlanMessage struct {
	// MessageType is "plan".
	MessageType string `json:"message_type"`
	// DryRun is always true.
	DryRun bool `json:"dry_run"`
	// To is the destination's location.
	To string `json:"to"`
	// Snapshots are the snapshots named, oldest first ([] when none).
	Snapshots []CopyPlanEntry `json:"snapshots"`
	RunError
}

// CopySummaryMessage is what `copy --json` prints once every snapshot is copied.
type CopySummaryMessage struct {
	// MessageType is "summary".
	MessageType string `json:"message_type"`
	// To is the destination's location.
	To string `json:"to"`
	// Created: the destination held no repository and was made a replica of this one.
	Created bool `json:"created"`
	// Snapshots says, per snapshot, what was copied and whether it was read back ([] when none).
	Snapshots []*engine.CopyResult `json:"snapshots"`
	RunError
}

// AuditVerifyMessage is what `audit verify --json` prints (exit status 6 when Status.OK is false).
type AuditVerifyMessage struct {
	// MessageType is "audit_verify".
	MessageType string `json:"message_type"`
	// Status is the chain's verdict: records read, head, problems, gaps, unfinished runs.
	Status audit.Status `json:"status"`
	RunError
}

// UnlockMessage is what `unlock --json` prints: every lock seen and what became of it.
type UnlockMessage struct {
	// MessageType is "summary".
	MessageType string `json:"message_type"`
	// DryRun and StaleOnly are the flags the run had.
	DryRun    bool `json:"dry_run"`
	StaleOnly bool `json:"stale_only"`
	// Locks are the lock objects seen ([] when none), each with whether it was stale and removed.
	Locks []engine.UnlockResult `json:"locks"`
	RunError
}

// MigrateMessage is what `migrate --json` prints.
type MigrateMessage struct {
	// MessageType is "summary".
	MessageType string `json:"message_type"`
	// DryRun: nothing was changed.
	DryRun bool `json:"dry_run"`
	// Repository is the repository's location.
	Repository string `json:"repository"`
	// KeyID is the repository key id to pin on restore hosts (CFBACKUP_REPOSITORY_KEY_ID).
	KeyID string `json:"key_id"`
	// Result is the upgrade: formats, the manifests vouched for, the unreadable ones, the backup copy.
	Result *repo.MigrateResult `json:"result"`
	RunError
}

// BackupPlanMessage is backup --dry-run: what each component would capture.
type BackupPlanMessage struct {
	MessageType string   `json:"message_type"` // "plan"
	DryRun      bool     `json:"dry_run"`
	Components  []string `json:"components"`
	// Databases is D1's plan (also in details.d1), kept at the top level for scripts written before
	// the registry.
	Databases any `json:"databases"`
	// Details is each component's plan, keyed by component (docs/CLI_JSON_OUTPUT.md).
	Details map[string]any `json:"details"`
}

// BackupSummaryMessage is backup: the snapshot saved, and its copies (--copy-to).
type BackupSummaryMessage struct {
	MessageType string            `json:"message_type"` // "summary"
	Snapshot    string            `json:"snapshot"`
	Time        time.Time         `json:"time"`
	Duration    string            `json:"duration"`
	Components  []string          `json:"components"`
	Sources     any               `json:"sources"`
	Items       int64             `json:"items"`
	Size        int64             `json:"size"`
	StoredSize  int64             `json:"stored_size"`
	Segments    int               `json:"segments"`
	Labels      map[string]string `json:"labels"`
	Copies      []BackupCopy      `json:"copies"`
	RunError
}

// BackupCopy is one --copy-to replica the new snapshot was copied to.
type BackupCopy struct {
	To             string `json:"to"`
	SegmentsCopied int    `json:"segments_copied"`
	BytesCopied    int64  `json:"bytes_copied"`
	Verified       bool   `json:"verified"`
}

// TestRestoreMessage is test-restore: every source's checks and problems (with failure kinds).
type TestRestoreMessage struct {
	MessageType string                    `json:"message_type"` // "test_restore"
	OK          bool                      `json:"ok"`
	Result      *engine.TestRestoreResult `json:"result"`
	RunError
}

// PointInTimePlanMessage is restore --at T --dry-run without --component: the snapshot each
// component would be restored from, and how far apart they are.
type PointInTimePlanMessage struct {
	MessageType string            `json:"message_type"` // "plan"
	DryRun      bool              `json:"dry_run"`
	At          time.Time         `json:"at"`
	Components  []PointInTimePick `json:"components"`
	Skew        string            `json:"skew"`
}

// PointInTimePick is one component's snapshot at a point in time (or why there is none).
type PointInTimePick struct {
	Component string    `json:"component"`
	Snapshot  string    `json:"snapshot,omitempty"`
	Time      time.Time `json:"time,omitempty"`
	Behind    string    `json:"behind,omitempty"`
	Problem   string    `json:"problem,omitempty"`
}

// Package layout names every object of a repository: the fixed objects, the prefixes every kind of
// object lives under and the functions that build their keys. It is the one place these names are
// written (a test in this package fails when a prefix appears as a string literal anywhere else),
// because several packages must agree on them without importing each other: prune deletes what no
// manifest references under the prefixes it sweeps, retention exempts bookkeeping prefixes, report
// reads the records other commands leave, and an independent reader finds everything by these names
// (docs/FORMAT.md "Repository layout" documents them; changing one is a format change).
//
// The package has no dependencies beyond the standard library so that every layer, down to the
// store's conformance suite, can use it.
package layout

import (
	"fmt"
	"strings"
	"time"
)

// The fixed objects of a repository.
const (
	// Config is what the repository is (format, recipients, chunk sizes, retention); its presence is
	// what makes a location a repository, so init creates it last and copy writes it last.
	Config = "config.json"
	// ConfigV1Backup keeps the format 1 Config a migration replaced, so an older cfbackup can still
	// be pointed at a copy of it for a rollback.
	ConfigV1Backup = "config.v1.json"
	// WriterKey is the writer secret encrypted to the recipients: how a restore host, which holds an
	// identity but not the secret, gets the key that authenticates config.json and manifests.
	WriterKey = "keys/writer.age"
)

// The prefixes objects live under. Each ends in "/" so that a List of one never matches another
// prefix that merely starts with the same letters.
const (
	// Segments holds the encrypted data: Segments + <32 hex> + SegmentSuffix.
	Segments = "segments/"
	// Snapshots holds one manifest per snapshot (format 2, and format 1 ones a migration vouched
	// for): a snapshot exists exactly when its manifest is here (invariant 1).
	Snapshots = "snapshots/"
	// Indexes holds the R2 incremental indexes a manifest names as side objects (R2IndexKey).
	Indexes = "index/"
	// Catalogues holds the streamed catalogues a manifest names in catalogue_objects (CatalogueKey):
	// the encrypted list of a snapshot's items, written before the manifest.
	Catalogues = "catalogue/"
	// Journals holds the R2 resume journals of backups not (yet) committed (JournalKey). No
	// manifest names them, so prune sweeps them like orphan segments.
	Journals = "journal/"
	// Locks holds one object per lock holder (LockKey); refreshed by replacement, never retained.
	Locks = "locks/"
	// Holds holds legal holds and their releases per snapshot (HoldKey, HoldReleaseKey).
	Holds = "holds/"
	// Marks holds prune's first phase: when each unreferenced object was first seen (MarkKey),
	// since object times alone cannot say it (a resuming backup may reference an old segment again).
	Marks = "marks/"
	// Audit holds the hash-chained audit records and their sequence claims (AuditRecordKey,
	// AuditClaimKey).
	Audit = "audit/"
	// PruneRecords holds one plaintext record per prune run (PruneRecordKey), for reports.
	PruneRecords = "prune/"
	// VerifyRecords holds one plaintext record per verify or test-restore run (VerifyRecordKey), so
	// reports can show verification coverage over time.
	VerifyRecords = "verify/"
	// Rotations holds the journal of a key rotation in progress (RotationJournalKey): what a rerun
	// resumes from. Sealed with the writer secret; deleted when the rotation completes.
	Rotations = "rotation/"
	// Doctor holds the scratch objects 'cfbackup doctor' writes to prove the store's credentials can
	// put, get, list, delete and create conditionally (DoctorKey). Each is deleted by the run that wrote
	// it; one left by a killed run is harmless and 'doctor' removes those older than an hour.
	Doctor = "doctor/"
	// Plans holds restore plans for protected targets (PlanKey), each named by the hash of its
	// canonical JSON, and the marks of plans already carried out (PlanUsedKey). docs/APPROVAL.md.
	Plans = "plans/"
	// Approvals holds the signed approvals of each plan (ApprovalKey), grouped by plan id.
	Approvals = "approvals/"
	// Approvers holds the approvers an admin registered, each signed by the admin key (ApproverKey).
	Approvers = "approvers/"
)

// Name parts shared by several keys.
const (
	// SegmentSuffix ends every segment key: segments are age files.
	SegmentSuffix = ".age"
	// JSONSuffix ends manifests and every plaintext record; listings skip keys without it, so
	// a stray object under a record prefix is never parsed as a record.
	JSONSuffix = ".json"
	// IndexSuffix ends R2 indexes and journals (the same binary container).
	IndexSuffix = ".idx"
	// CatalogueSuffix ends streamed catalogue objects (age files of records, docs/FORMAT.md).
	CatalogueSuffix = ".cat"
	// TimeFormat is the UTC time in manifest, prune and mark keys: fixed width and most significant
	// first, so a plain listing sorts them by time.
	TimeFormat = "20060102T150405Z"
	// VerifyTimeFormat is TimeFormat with nanoseconds: several verify runs of one snapshot may
	// finish within a second and each record is a conditional create.
	VerifyTimeFormat = "20060102T150405.000000000Z"
)

// Swept lists the prefixes prune lists for objects no kept manifest references: data, the side
// objects manifests name, and journals that no manifest ever names. Everything else is either named
// by the layout (config, keys, manifests) or a record that is kept.
func Swept() []string { return []string{Segments, Indexes, Catalogues, Journals} }

// Bookkeeping lists the prefixes of short-lived objects their holder must be able to delete when it
// is done (locks, prune marks, resume journals, rotation journals, doctor's scratch objects, partial
// manifests of sharded runs); Object Lock retention never applies to them.
func Bookkeeping() []string { return []string{Locks, Marks, Journals, Rotations, Doctor, Shards} }

// RotationJournalKey is the key of the journal of a rotation of kind ("rewrap", "writer"): one per
// kind, so a rerun finds it without listing.
func RotationJournalKey(kind string) string { return Rotations + kind + IndexSuffix }

// DoctorKey is the key of one doctor run's scratch object (run is random, so concurrent runs on
// several hosts never meet).
func DoctorKey(run string) string { return Doctor + run + ".tmp" }

// DeleteProbeKey is a key under prefix that no object has: 'doctor --role' deletes it to learn whether
// the credentials may delete under prefix without deleting anything (run is random). It does not end
// in JSONSuffix or SegmentSuffix, so no reader takes it for a manifest or a segment.
func DeleteProbeKey(prefix, run string) string { return prefix + "doctor-" + run + ".probe" }

// SegmentKey is the key of segment id.
func SegmentKey(id string) string { return Segments + id + SegmentSuffix }

// IsSegmentKey reports whether key is under Segments: prune counts segments apart from other objects.
func IsSegmentKey(key string) bool { return strings.HasPrefix(key, Segments) }

// ManifestKey is the key of the manifest of snapshot id taken at t: Snapshots + <UTC time>-<id>.json,
// so a plain listing sorts by time and the time is known without reading the manifest.
func ManifestKey(t time.Time, id string) string {
	return Snapshots + t.UTC().Format(TimeFormat) + "-" + id + JSONSuffix
}

// IsManifestKey reports whether a key listed under Snapshots is a manifest: keys there that do not
// end in .json are not (docs/FORMAT.md), so a reader skips them rather than failing on them.
func IsManifestKey(key string) bool {
	return strings.HasPrefix(key, Snapshots) && strings.HasSuffix(key, JSONSuffix)
}

// ManifestName is the part of a manifest key between Snapshots and JSONSuffix (<time>-<id>); ok is
// false for other keys.
func ManifestName(key string) (name string, ok bool) {
	name, ok = strings.CutPrefix(key, Snapshots)
	if !ok {
		return "", false
	}
	return strings.CutSuffix(name, JSONSuffix)
}

// CatalogueKey is the key of the n-th object (from 0) of a snapshot's streamed catalogue.
func CatalogueKey(snapshotID string, n int) string {
	return fmt.Sprintf("%s%s-%d%s", Catalogues, snapshotID, n, CatalogueSuffix)
}

// R2IndexKey is the key of a snapshot's incremental index of one bucket; the next backup of the
// bucket finds its parent's index by it.
func R2IndexKey(snapshotID, bucket string) string {
	return Indexes + snapshotID + ".r2." + bucket + IndexSuffix
}

// JournalPrefix is the prefix of every journal object of one run's bucket: the run deletes them all
// once its manifest is saved.
func JournalPrefix(snapshotID, bucket string) string {
	return Journals + snapshotID + "/" + bucket + "/"
}

// JournalKey is the key of the seq-th journal object of a run's bucket (6 digits, so they list in
// the order they were written).
func JournalKey(snapshotID, bucket string, seq int) string {
	return fmt.Sprintf("%s%06d%s", JournalPrefix(snapshotID, bucket), seq, IndexSuffix)
}

// ParseJournalKey splits a key listed under Journals into its run (snapshot id) and bucket; ok is
// false for any other key, which a reader ignores.
func ParseJournalKey(key string) (run, bucket string, ok bool) {
	rest, ok := strings.CutPrefix(key, Journals)
	if !ok || !strings.HasSuffix(rest, IndexSuffix) {
		return "", "", false
	}
	parts := strings.Split(rest, "/")
	if len(parts) != 3 {
		return "", "", false
	}
	return parts[0], parts[1], true
}

// LockKey is the key of lock id.
func LockKey(id string) string { return Locks + id + JSONSuffix }

// HoldKey is the key of hold holdID on a snapshot; grouping by snapshot lets prune and report find a
// snapshot's holds together.
func HoldKey(snapshotID, holdID string) string {
	return Holds + snapshotID + "/" + holdID + JSONSuffix
}

// HoldReleaseKey is the key of the release of a hold: a separate object, since records are never
// rewritten.
func HoldReleaseKey(snapshotID, holdID string) string {
	return Holds + snapshotID + "/" + holdID + "-release" + JSONSuffix
}

// MarkKey is the key of the marks a prune run made at t.
func MarkKey(t time.Time, runID string) string {
	return Marks + t.UTC().Format(TimeFormat) + "-" + runID + JSONSuffix
}

// PruneRecordKey is the key of the record of a prune run made at t.
func PruneRecordKey(t time.Time, runID string) string {
	return PruneRecords + t.UTC().Format(TimeFormat) + "-" + runID + JSONSuffix
}

// VerifyRecordKey is the key of the record of a verify or test-restore run of a snapshot at t.
func VerifyRecordKey(t time.Time, snapshotID string) string {
	return VerifyRecords + t.UTC().Format(VerifyTimeFormat) + "-" + snapshotID + JSONSuffix
}

// AuditRecordKey is the key of audit record seq whose canonical form hashes to hash (hex): the hash in
// the name lets a verifier see an edited record without trusting its content.
func AuditRecordKey(seq int64, hash string) string {
	return fmt.Sprintf("%s%012d-%s%s", Audit, seq, hash, JSONSuffix)
}

// AuditClaimKey is the key of the claim of sequence number seq, created first with a conditional
// create so that two concurrent writers serialise instead of forking the chain.
func AuditClaimKey(seq int64) string { return fmt.Sprintf("%s%012d.seq", Audit, seq) }

// PlanKey is the key of restore plan id (a prefix of the SHA-256 of its canonical JSON).
func PlanKey(id string) string { return Plans + id + JSONSuffix }

// PlanUsedKey marks plan id as carried out: created once, conditionally, so an approved plan runs once.
func PlanUsedKey(id string) string { return Plans + id + "-used" + JSONSuffix }

// ApprovalPrefix is the prefix of every approval of plan id.
func ApprovalPrefix(planID string) string { return Approvals + planID + "/" }

// ApprovalKey is the key of approver's approval of plan id made at t.
func ApprovalKey(planID, approver string, t time.Time) string {
	return ApprovalPrefix(planID) + approver + "-" + t.UTC().Format(VerifyTimeFormat) + JSONSuffix
}

// ApproverKey is the key of the registration of approver name.
func ApproverKey(name string) string { return Approvers + name + JSONSuffix }

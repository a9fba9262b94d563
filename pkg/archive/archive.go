// Package archive writes and reads segments, the encrypted data objects of a repository.
//
// A segment is one age file, segments/<id>.age, whose plaintext is a concatenation of LZ4 frames;
// each frame holds exactly one tar entry (header, data, padding) and the last frame holds the tar
// end-of-archive blocks. That layout serves two readers at once: cfbackup restores a single item by
// decrypting only the byte range of its frame (age.DecryptReaderAt over ranged store reads), and an
// operator without cfbackup recovers everything with `age -d -i key seg.age | lz4 -dc | tar x`.
//
// Items (a table dump, an object) have unknown size when they start but a tar header needs the size
// first, so items are cut into chunks of at most ChunkSize bytes, each buffered in memory and stored as
// its own tar entry: "<name>" for a one-chunk item, "<name>.part000001", "<name>.part000002", … otherwise.
// docs/FORMAT.md specifies the format.
package archive

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"path"
	"strings"

	"github.com/cfbackup/cfbackup/pkg/errclass"
	"github.com/cfbackup/cfbackup/pkg/layout"
)

// Sentinel errors callers branch on with errors.Is.
var (
	// ErrIntegrity: stored data does not match what the catalogue recorded (size, SHA-256, authentication).
	ErrIntegrity = errclass.New(errclass.Integrity, "integrity check failed")
	// ErrNoIdentity: none of the given identities can decrypt a segment (wrong key, or a damaged header).
	ErrNoIdentity = errclass.New(errclass.Key, "no identity matches the segment")
	// ErrBadName: an item name is not a clean relative slash path (it would be unsafe for `tar x`).
	ErrBadName = errclass.New(errclass.Integrity, "invalid item name")
	// ErrClosed: the Writer was closed or aborted.
	ErrClosed = errors.New("archive writer closed")
)

const (
	// DefaultChunkSize bounds the memory one chunk buffer takes; the writer holds about
	// ChunkSize × (2×Concurrency+6) bytes at most (60 MiB with 4 MiB chunks on 2 cores).
	DefaultChunkSize = 4 << 20
	// DefaultSegmentSize keeps segments large enough for cheap listing and small enough to upload in parallel.
	DefaultSegmentSize = 512 << 20
	// SegmentPrefix is where segments live in a repository.
	SegmentPrefix = layout.Segments
	// SegmentSuffix is the extension of segment objects.
	SegmentSuffix = layout.SegmentSuffix
)

// Chunk locates one tar entry (one LZ4 frame) inside a segment's age plaintext.
type Chunk struct {
	Segment string `json:"segment"`
	// Offset and Length are the LZ4 frame's byte range in the decrypted segment.
	Offset int64 `json:"offset"`
	Length int64 `json:"length"`
	// Size is the number of item bytes in the chunk (uncompressed, without tar framing).
	Size int64 `json:"size"`
	// ID names a content-addressed chunk (WriteChunked): the keyed hash of its bytes (ChunkID), its
	// tar entry is "chunks/<ID>" and any item of any later snapshot may reference it. Empty for
	// chunks named after their item.
	ID string `json:"id,omitempty"`
	// SHA256 is set only on the list chunks of ItemRef.Lists: the hex SHA-256 of the list chunk's
	// bytes, checked before the list is used (readers without the writer secret cannot check ID).
	SHA256 string `json:"sha256,omitempty"`
}

// ItemRef is what the catalogue records for one item, enough to read it back alone and check it.
type ItemRef struct {
	Name   string  `json:"name"`
	Size   int64   `json:"size"`
	SHA256 string  `json:"sha256"` // hex of the uncompressed item
	Chunks []Chunk `json:"chunks,omitempty"`
	// Lists, instead of Chunks, holds the list chunks (docs/FORMAT.md "Chunk lists") whose entries,
	// in order, are the item's chunks. An item has one or the other, never both.
	Lists []Chunk `json:"lists,omitempty"`
}

// SegmentInfo is what the manifest records for one segment, enough to verify it without a key.
type SegmentInfo struct {
	ID        string `json:"id"`
	Key       string `json:"key"`
	Size      int64  `json:"size"`       // ciphertext bytes
	SHA256    string `json:"sha256"`     // hex of the ciphertext
	PlainSize int64  `json:"plain_size"` // age plaintext bytes (the LZ4 frames)
	// StorageClass is the S3 storage class the segment was written with ("" the bucket's default).
	// It is what the backup asked for, not where the segment is now: prune --tier and bucket
	// lifecycle rules move segments later without rewriting manifests (docs/STORAGE_CLASSES.md).
	StorageClass string `json:"storage_class,omitempty"`
}

// SegmentKey is the store key of segment id.
func SegmentKey(id string) string { return layout.SegmentKey(id) }

// EntryName is the tar entry name of chunk i (0-based) of an item split into n chunks.
func EntryName(name string, i, n int) string {
	if n == 1 {
		return name
	}
	return fmt.Sprintf("%s.part%06d", name, i+1)
}

// ChunkPrefix is the directory of content-addressed chunks' tar entries ("chunks/<id>").
const ChunkPrefix = "chunks/"

// ChunkIDLen is the length of a chunk id in hex digits: 128 bits of HMAC-SHA-256, enough that two
// different chunks of a repository never share an id (2^-64 at 2^32 chunks), half the catalogue
// bytes of a full hash.
const ChunkIDLen = 32

// ChunkIDKey derives the key of chunk ids from the writer secret (purpose "cfbackup cdc chunk id v1"):
// backups name chunks with it, verify --read-data (which unwraps the secret with the identity)
// confirms each chunk's bytes by it.
func ChunkIDKey(secret []byte) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte("cfbackup cdc chunk id v1"))
	return m.Sum(nil)
}

// ChunkID is the id of a content-addressed chunk: HMAC-SHA-256 keyed with a key derived from the
// writer secret (so equal chunks are found without the store learning contents), truncated to 128
// bits, hex.
func ChunkID(key, data []byte) string {
	m := hmac.New(sha256.New, key)
	m.Write(data)
	return hex.EncodeToString(m.Sum(nil)[:ChunkIDLen/2])
}

// ChunkEntry is the tar entry name of chunk i (0-based) of an item of n chunks: "chunks/<id>" for
// a content-addressed chunk, EntryName otherwise.
func ChunkEntry(name string, c Chunk, i, n int) string {
	if c.ID != "" {
		return ChunkPrefix + c.ID
	}
	return EntryName(name, i, n)
}

// validChunkID reports whether id is ChunkIDLen lowercase hex digits (a catalogue is untrusted).
func validChunkID(id string) bool {
	if len(id) != ChunkIDLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		if c := id[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// ValidName reports whether name may be used for an item: a clean, relative slash path without ".."
// or NUL, so extracting a segment with tar never writes outside the target directory.
func ValidName(name string) error {
	if name == "" || name == "." || strings.HasPrefix(name, "/") || path.Clean(name) != name ||
		strings.ContainsRune(name, 0) || strings.Contains(name, "\\") {
		return fmt.Errorf("%w: %q", ErrBadName, name)
	}
	for _, el := range strings.Split(name, "/") {
		if el == ".." {
			return fmt.Errorf("%w: %q", ErrBadName, name)
		}
	}
	return nil
}

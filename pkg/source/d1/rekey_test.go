package d1

import (
	"errors"
	"testing"

	"github.com/cfbackup/cfbackup/pkg/seal"
)

// A chunk index re-sealed under a new writer secret opens with it, keeps its database and drops its
// entries (their ids were keyed with the old secret); the old secret no longer opens it.
func TestRekeyChunkIndex(t *testing.T) {
	oldS, newS := []byte("old secret, 32 bytes long......."), []byte("new secret, 32 bytes long.......")
	raw, err := seal.SealJSON(deriveChunkKeys(oldS).enc, chunkIndexMagic, chunkIndexDoc{Version: chunkIndexVersion, Database: "db-1",
		Segments: []string{"s"}, Entries: make([]byte, 20), Count: 1})
	if err != nil {
		t.Fatal(err)
	}
	out, err := RekeyChunkIndex(oldS, newS, raw)
	if err != nil {
		t.Fatal(err)
	}
	var doc chunkIndexDoc
	if err := seal.OpenEnvelope(deriveChunkKeys(newS).enc, out, chunkIndexMagic, "a D1 chunk index", ErrChunkIndex, &doc); err != nil {
		t.Fatal(err)
	}
	if doc.Database != "db-1" || doc.Count != 0 || len(doc.Entries) != 0 {
		t.Fatalf("re-sealed index: %+v", doc)
	}
	if err := seal.OpenEnvelope(deriveChunkKeys(oldS).enc, out, chunkIndexMagic, "a D1 chunk index", ErrChunkIndex, &doc); !errors.Is(err, ErrChunkIndex) {
		t.Fatalf("old secret opened the re-sealed index: %v", err)
	}
	if _, err := RekeyChunkIndex(newS, oldS, raw); !errors.Is(err, ErrChunkIndex) {
		t.Fatalf("re-seal with the wrong old secret: %v", err)
	}
}

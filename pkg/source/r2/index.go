package r2

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"

	"github.com/cfbackup/cfbackup/pkg/errclass"
	"github.com/cfbackup/cfbackup/pkg/manifest"
	"github.com/cfbackup/cfbackup/pkg/seal"
)

// The incremental index lets a backup host that holds only the recipients and the writer secret (no
// identity, invariant 2 in docs/ARCHITECTURE.md) decide which objects are unchanged since the parent snapshot. It is
// stored as index/<snapshot-id>.r2-<n>.idx (docs/FORMAT.md):
//
//	"CFBR2IX1" || nonce (12 bytes) || AES-256-GCM( gzip( JSON Index ) )
//
// keyed with HMAC-SHA256(writer secret, "cfbackup r2 index encryption v1"), with the 8-byte magic as
// additional data. Entries are found by HMAC-SHA256(HMAC-SHA256(writer secret, "cfbackup r2 index
// names v1"), bucket || 0x00 || key), hex; each holds the object's catalogue item (size, ETag,
// metadata, item reference), so a reused object needs no request at all; the segments the reference
// points into are found in the parent manifest's plaintext segment list. The store sees only
// ciphertext; a writer-secret holder can read keys and metadata (which its R2 keys can list anyway)
// but never object contents, which stay age-encrypted in segments.
const indexMagic = "CFBR2IX1"

// IndexVersion is the JSON index's version field.
const IndexVersion = 1

// Index is the decrypted incremental index of one bucket in one snapshot.
type Index struct {
	Version int    `json:"version"`
	Bucket  string `json:"bucket"`
	// Entries are keyed by the hex keyed hash of (bucket, key).
	Entries map[string]manifest.Item `json:"entries"`
}

// ErrIndex: the index cannot be read with this writer secret (another secret, or damage).
var ErrIndex = errclass.New(errclass.Failure, "incremental index unreadable")

type indexKeys struct{ enc, names []byte }

func deriveKeys(secret []byte) indexKeys {
	return indexKeys{enc: seal.DeriveKey(secret, "cfbackup r2 index encryption v1"), names: seal.DeriveKey(secret, "cfbackup r2 index names v1")}
}

// entryID is the keyed hash that names an object in the index.
func (k indexKeys) entryID(bucket, key string) string {
	h := hmac.New(sha256.New, k.names)
	h.Write([]byte(bucket))
	h.Write([]byte{0})
	h.Write([]byte(key))
	return hex.EncodeToString(h.Sum(nil))
}

func (k indexKeys) seal(ix *Index) ([]byte, error) { return k.sealJSON(indexMagic, ix) }

func (k indexKeys) open(b []byte) (*Index, error) {
	var ix Index
	if err := k.openJSON(b, indexMagic, "an r2 index", ErrIndex, &ix); err != nil {
		return nil, err
	}
	if ix.Version != IndexVersion {
		return nil, fmt.Errorf("%w: version %d, this cfbackup reads %d", ErrIndex, ix.Version, IndexVersion)
	}
	return &ix, nil
}

// sealJSON seals v in the writer-secret envelope of indexes and journals (pkg/seal): the magic
// keeps one kind from passing for the other.
func (k indexKeys) sealJSON(magic string, v any) ([]byte, error) {
	return seal.SealJSON(k.enc, magic, v)
}

// openJSON opens what sealJSON made into v; failures wrap errKind and name what (for messages).
func (k indexKeys) openJSON(b []byte, magic, what string, errKind error, v any) error {
	return seal.OpenEnvelope(k.enc, b, magic, what, errKind, v)
}

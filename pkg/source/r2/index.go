package r2

import (
	"bytes"
	"compress/gzip"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/cfbackup/cfbackup/pkg/manifest"
)

// The incremental index lets a backup host that holds only the recipients and the writer secret (no
// identity, DESIGN.md invariant 2) decide which objects are unchanged since the parent snapshot. It is
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
var ErrIndex = errors.New("incremental index unreadable")

type indexKeys struct{ enc, names []byte }

func deriveKeys(secret []byte) indexKeys {
	mac := func(label string) []byte {
		h := hmac.New(sha256.New, secret)
		h.Write([]byte(label))
		return h.Sum(nil)
	}
	return indexKeys{enc: mac("cfbackup r2 index encryption v1"), names: mac("cfbackup r2 index names v1")}
}

// entryID is the keyed hash that names an object in the index.
func (k indexKeys) entryID(bucket, key string) string {
	h := hmac.New(sha256.New, k.names)
	h.Write([]byte(bucket))
	h.Write([]byte{0})
	h.Write([]byte(key))
	return hex.EncodeToString(h.Sum(nil))
}

func (k indexKeys) seal(ix *Index) ([]byte, error) {
	var plain bytes.Buffer
	zw := gzip.NewWriter(&plain)
	if err := json.NewEncoder(zw).Encode(ix); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	aead, err := k.aead()
	if err != nil {
		return nil, err
	}
	out := make([]byte, len(indexMagic)+aead.NonceSize(), len(indexMagic)+aead.NonceSize()+plain.Len()+aead.Overhead())
	copy(out, indexMagic)
	if _, err := rand.Read(out[len(indexMagic):]); err != nil {
		return nil, err
	}
	return aead.Seal(out, out[len(indexMagic):], plain.Bytes(), []byte(indexMagic)), nil
}

func (k indexKeys) open(b []byte) (*Index, error) {
	aead, err := k.aead()
	if err != nil {
		return nil, err
	}
	hdr := len(indexMagic) + aead.NonceSize()
	if len(b) < hdr+aead.Overhead() || string(b[:len(indexMagic)]) != indexMagic {
		return nil, fmt.Errorf("%w: not an r2 index", ErrIndex)
	}
	plain, err := aead.Open(nil, b[len(indexMagic):hdr], b[hdr:], []byte(indexMagic))
	if err != nil {
		return nil, fmt.Errorf("%w: written with another writer secret, or damaged", ErrIndex)
	}
	zr, err := gzip.NewReader(bytes.NewReader(plain))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrIndex, err)
	}
	var ix Index
	if err := json.NewDecoder(io.LimitReader(zr, 1<<30)).Decode(&ix); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrIndex, err)
	}
	if ix.Version != IndexVersion {
		return nil, fmt.Errorf("%w: version %d, this cfbackup reads %d", ErrIndex, ix.Version, IndexVersion)
	}
	return &ix, nil
}

func (k indexKeys) aead() (cipher.AEAD, error) {
	blk, err := aes.NewCipher(k.enc)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(blk)
}

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
	"fmt"
	"io"

	"github.com/cfbackup/cfbackup/pkg/errclass"
	"github.com/cfbackup/cfbackup/pkg/manifest"
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

// sealJSON is the shared envelope of indexes and journals: magic || nonce || AES-GCM(gzip(JSON v)),
// the magic as additional data so one kind can never pass for the other.
func (k indexKeys) sealJSON(magic string, v any) ([]byte, error) {
	var plain bytes.Buffer
	zw := gzip.NewWriter(&plain)
	if err := json.NewEncoder(zw).Encode(v); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	aead, err := k.aead()
	if err != nil {
		return nil, err
	}
	out := make([]byte, len(magic)+aead.NonceSize(), len(magic)+aead.NonceSize()+plain.Len()+aead.Overhead())
	copy(out, magic)
	if _, err := rand.Read(out[len(magic):]); err != nil {
		return nil, err
	}
	return aead.Seal(out, out[len(magic):], plain.Bytes(), []byte(magic)), nil
}

// openJSON opens what sealJSON made into v; failures wrap errKind and name what (for messages).
func (k indexKeys) openJSON(b []byte, magic, what string, errKind error, v any) error {
	aead, err := k.aead()
	if err != nil {
		return err
	}
	hdr := len(magic) + aead.NonceSize()
	if len(b) < hdr+aead.Overhead() || string(b[:len(magic)]) != magic {
		return fmt.Errorf("%w: not %s", errKind, what)
	}
	plain, err := aead.Open(nil, b[len(magic):hdr], b[hdr:], []byte(magic))
	if err != nil {
		return fmt.Errorf("%w: written with another writer secret, or damaged", errKind)
	}
	zr, err := gzip.NewReader(bytes.NewReader(plain))
	if err != nil {
		return fmt.Errorf("%w: %v", errKind, err)
	}
	if err := json.NewDecoder(io.LimitReader(zr, 1<<30)).Decode(v); err != nil {
		return fmt.Errorf("%w: %v", errKind, err)
	}
	return nil
}

func (k indexKeys) aead() (cipher.AEAD, error) {
	blk, err := aes.NewCipher(k.enc)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(blk)
}

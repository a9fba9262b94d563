package kv

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"strconv"

	"github.com/cfbackup/cfbackup/pkg/archive"
	"github.com/cfbackup/cfbackup/pkg/cloudflare"
	"github.com/cfbackup/cfbackup/pkg/errclass"
	"github.com/cfbackup/cfbackup/pkg/layout"
	"github.com/cfbackup/cfbackup/pkg/manifest"
	"github.com/cfbackup/cfbackup/pkg/repo"
	"github.com/cfbackup/cfbackup/pkg/seal"
	"github.com/cfbackup/cfbackup/pkg/source"
)

// The incremental index of one namespace in one snapshot, IndexKey (index/<snapshot>.kv.<namespace id>.idx):
//
//	"CFBKVIX1" || nonce (12 bytes) || AES-256-GCM( gzip( JSON Index ) )
//
// keyed with HMAC-SHA256(writer secret, "cfbackup kv index encryption v1"), the magic as additional
// data. It maps the keyed hash of each batch's listing (names, expirations, metadata) to the batch's
// catalogue item, so a backup host holding only the writer secret (invariant 2) can reuse a batch
// whose listing is unchanged without reading its values again. The plaintext manifest names only
// the index object; key names stay inside the index's ciphertext and the age-encrypted segments.
const indexMagic = "CFBKVIX1"

// IndexVersion is the index's version field.
const IndexVersion = 1

// Index is one namespace's decrypted incremental index.
type Index struct {
	Version   int    `json:"version"`
	Namespace string `json:"namespace"`
	// Listing is the keyed hash of the whole namespace listing; Keys the number of keys.
	Listing string `json:"listing"`
	Keys    int64  `json:"keys"`
	// Batches maps a batch's listing hash to its item.
	Batches map[string]manifest.Item `json:"batches"`
}

// ErrIndex: the index cannot be read with this writer secret (another secret, or damage).
var ErrIndex = errclass.New(errclass.Failure, "KV incremental index unreadable")

// IndexKey is where a snapshot's index of one namespace is stored.
func IndexKey(snapshotID, namespaceID string) string {
	return layout.Indexes + snapshotID + ".kv." + namespaceID + layout.IndexSuffix
}

type indexKeys struct{ enc, names []byte }

func deriveKeys(secret []byte) indexKeys {
	return indexKeys{enc: seal.DeriveKey(secret, "cfbackup kv index encryption v1"), names: seal.DeriveKey(secret, "cfbackup kv index listing v1")}
}

// newListingHash starts the keyed hash of a listing (a batch or a whole namespace).
func (k indexKeys) newListingHash(namespace string) *listingHashState {
	h := hmac.New(sha256.New, k.names)
	h.Write([]byte(namespace))
	h.Write([]byte{0})
	return &listingHashState{mac: h}
}

type listingHashState struct {
	mac interface {
		Write([]byte) (int, error)
		Sum([]byte) []byte
	}
}

// add hashes one key: its length-prefixed name, expiration and length-prefixed metadata.
func (s *listingHashState) add(k cloudflare.KVKey) {
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], uint64(len(k.Name)))
	s.mac.Write(n[:])
	s.mac.Write([]byte(k.Name))
	binary.BigEndian.PutUint64(n[:], uint64(k.Expiration))
	s.mac.Write(n[:])
	binary.BigEndian.PutUint64(n[:], uint64(len(k.Metadata)))
	s.mac.Write(n[:])
	s.mac.Write(k.Metadata)
}

func (s *listingHashState) sum() string { return hex.EncodeToString(s.mac.Sum(nil)) }

func (k indexKeys) seal(ix *Index) ([]byte, error) { return seal.SealJSON(k.enc, indexMagic, ix) }

func (k indexKeys) open(b []byte) (*Index, error) {
	var ix Index
	if err := seal.OpenEnvelope(k.enc, b, indexMagic, "a KV index", ErrIndex, &ix); err != nil {
		return nil, err
	}
	if ix.Version != IndexVersion {
		return nil, fmt.Errorf("%w: version %s, this cfbackup reads %d", ErrIndex, strconv.Itoa(ix.Version), IndexVersion)
	}
	return &ix, nil
}

// parent is the newest earlier full snapshot of a namespace and its decrypted index.
type parent struct {
	snapshot string
	ix       *Index
	segs     map[string]archive.SegmentInfo
}

// reuse returns the parent's item for a batch listing hash when every segment it points into is
// listed by the parent manifest.
func (p *parent) reuse(hash string) (manifest.Item, []archive.SegmentInfo, bool) {
	it, ok := p.ix.Batches[hash]
	if !ok || len(it.Chunks) == 0 {
		return manifest.Item{}, nil, false
	}
	var segs []archive.SegmentInfo
	for _, c := range it.Chunks {
		g, ok := p.segs[c.Segment]
		if !ok {
			return manifest.Item{}, nil, false
		}
		segs = append(segs, g)
	}
	return it, segs, true
}

// loadParent finds the newest snapshot holding the namespace (not a safety snapshot, which holds
// only some keys) and reads its index; nil when there is none.
func loadParent(ctx context.Context, s *source.Session, namespaceID string, ik indexKeys) (*parent, error) {
	snaps, err := s.Snapshots(ctx)
	if err != nil {
		return nil, err
	}
	for _, m := range snaps {
		if repo.IsSafetySnapshot(m) {
			continue
		}
		var src *manifest.Source
		for i := range m.Sources {
			if m.Sources[i].Component == Component && m.Sources[i].ID == namespaceID {
				src = &m.Sources[i]
			}
		}
		if src == nil {
			continue
		}
		if src.Index == "" {
			return nil, fmt.Errorf("snapshot %s has no index of KV namespace %s (it was written without the writer secret)", m.ID, namespaceID)
		}
		b, err := source.ReadSnapshotObject(ctx, s.Repo.Store, m, src.Index)
		if err != nil {
			return nil, err
		}
		ix, err := ik.open(b)
		if err != nil {
			return nil, err
		}
		if ix.Namespace != namespaceID {
			return nil, fmt.Errorf("%w: index %s is of another namespace", ErrIndex, src.Index)
		}
		return &parent{snapshot: m.ID, ix: ix, segs: m.SegmentMap()}, nil
	}
	return nil, nil
}

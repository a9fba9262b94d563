package r2

import (
	"fmt"

	"github.com/cfbackup/cfbackup/pkg/manifest"
)

// RekeyIndex re-seals an R2 incremental index (as stored) under a new writer secret: opened with the
// old secret's keys, every entry renamed to the keyed hash of (bucket, object key) under the new
// secret, sealed with the new one. 'cfbackup key rotate-writer' uses it so the next backup still
// finds its parent's index (invariant 2: backup hosts read it with the writer secret alone).
func RekeyIndex(oldSecret, newSecret, b []byte) ([]byte, error) {
	ok, nk := deriveKeys(oldSecret), deriveKeys(newSecret)
	ix, err := ok.open(b)
	if err != nil {
		return nil, err
	}
	out := &Index{Version: ix.Version, Bucket: ix.Bucket, Entries: make(map[string]manifest.Item, len(ix.Entries))}
	for id, it := range ix.Entries {
		if it.Object == nil {
			return nil, fmt.Errorf("%w: entry %s has no object key", ErrIndex, id)
		}
		out.Entries[nk.entryID(ix.Bucket, it.Object.Key)] = it
	}
	return nk.seal(out)
}

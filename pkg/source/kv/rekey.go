package kv

import "github.com/cfbackup/cfbackup/pkg/manifest"

// RekeyIndex re-seals a KV incremental index (as stored) under a new writer secret. Its batch and
// listing hashes are keyed hashes of key names the index does not hold (only the segments do), so
// they cannot be recomputed: the re-sealed index keeps the namespace and key count but no batches,
// and the next backup of the namespace reads every value once (a full backup) and indexes it anew.
func RekeyIndex(oldSecret, newSecret, b []byte) ([]byte, error) {
	ix, err := deriveKeys(oldSecret).open(b)
	if err != nil {
		return nil, err
	}
	out := &Index{Version: ix.Version, Namespace: ix.Namespace, Keys: ix.Keys, Batches: map[string]manifest.Item{}}
	return deriveKeys(newSecret).seal(out)
}

package d1

import (
	"fmt"

	"github.com/cfbackup/cfbackup/pkg/seal"
)

// RekeyChunkIndex re-seals a D1 chunk index object (as stored) under a new writer secret. Its chunk
// ids are keyed hashes of chunk bytes the index does not hold (only the segments do), and backups
// under the new secret name chunks with the new key anyway, so the re-sealed index keeps the
// database but no entries: the next backup of the database stores every chunk once (a full
// backup) and indexes it anew (docs/D1.md "Incremental backups").
func RekeyChunkIndex(oldSecret, newSecret, b []byte) ([]byte, error) {
	var doc chunkIndexDoc
	if err := seal.OpenEnvelope(deriveChunkKeys(oldSecret).enc, b, chunkIndexMagic, "a D1 chunk index", ErrChunkIndex, &doc); err != nil {
		return nil, err
	}
	if doc.Version != chunkIndexVersion {
		return nil, fmt.Errorf("%w: version %d, this cfbackup reads %d", ErrChunkIndex, doc.Version, chunkIndexVersion)
	}
	return seal.SealJSON(deriveChunkKeys(newSecret).enc, chunkIndexMagic, chunkIndexDoc{Version: chunkIndexVersion, Database: doc.Database, Recipients: doc.Recipients})
}

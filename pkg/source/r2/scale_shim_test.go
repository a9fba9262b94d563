package r2

import (
	"io"

	"github.com/cfbackup/cfbackup/pkg/manifest"
)

// WriteSyntheticIndex writes the index the scale benchmark's synthetic parent snapshot stores (items
// sorted by key), in the format this tree writes (2). scripts/bench-scale.sh swaps in a format 1
// version of this file to measure the code before format 2 on the same harness.
func WriteSyntheticIndex(secret []byte, w io.Writer, bucket string, items []manifest.Item) error {
	iw, err := deriveKeys(secret).newIndexWriter(w, bucket)
	if err != nil {
		return err
	}
	for _, it := range items {
		if err := iw.Add(it); err != nil {
			return err
		}
	}
	return iw.Close()
}

package r2

import (
	"io"

	"github.com/cfbackup/cfbackup/pkg/manifest"
)

// WriteSyntheticIndexFunc writes the index the scale benchmark's synthetic parent snapshot stores:
// n entries, item(0) … item(n-1) in key order, in the format this tree writes (2), streamed.
// scripts/bench-scale.sh swaps in a format 1 version of this file to measure code before format 2.
func WriteSyntheticIndexFunc(secret []byte, w io.Writer, bucket string, n int, item func(int) manifest.Item) error {
	iw, err := deriveKeys(secret).newIndexWriter(w, bucket)
	if err != nil {
		return err
	}
	for i := range n {
		if err := iw.Add(item(i)); err != nil {
			return err
		}
	}
	return iw.Close()
}

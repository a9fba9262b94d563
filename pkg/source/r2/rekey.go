package r2

import (
	"bytes"
)

// RekeyIndex re-seals an R2 incremental index (as stored, format 1 or 2) under a new writer secret:
// opened with the old secret's keys and written in format 2 with the new one (entries are found by
// key there, so none needs renaming). 'cfbackup key rotate-writer' uses it so the next backup still
// finds its parent's index (invariant 2: backup hosts read it with the writer secret alone). It
// streams page by page, but holds the two whole objects as the caller hands them.
func RekeyIndex(oldSecret, newSecret, b []byte) ([]byte, error) {
	ok, nk := deriveKeys(oldSecret), deriveKeys(newSecret)
	in, err := ok.openIndexStream(bytes.NewReader(b), "")
	if err != nil {
		return nil, err
	}
	var out bytes.Buffer
	w, err := nk.newIndexWriter(&out, "")
	if err != nil {
		return nil, err
	}
	for {
		it, more, err := in.Next()
		if err != nil {
			return nil, err
		}
		if !more {
			break
		}
		if err := w.Add(it); err != nil {
			return nil, err
		}
	}
	w.foot.Bucket = in.Bucket()
	if err := w.Close(); err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}

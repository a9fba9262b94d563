package store

import (
	"context"
	"fmt"
	"path"
	"strings"
	"time"
)

// TempFile is a store's own temporary file: what a write killed before it published its object
// (kill -9, power loss) leaves behind. Name is slash-separated and relative to the store's root; its
// last element starts with TempPrefix.
type TempFile struct {
	Name    string
	Size    int64
	ModTime time.Time
}

// TempCollector is implemented by stores that write objects through temporary files (the local
// store). List never shows such files and no key can name them, so without this capability nothing
// would ever remove them: prune's sweep lists them and removes those older than its grace period
// (a write in progress keeps touching its file, so its ModTime stays recent).
type TempCollector interface {
	// ListTemp calls fn for every temporary file, in no particular order.
	ListTemp(ctx context.Context, fn func(TempFile) error) error
	// RemoveTemp removes one temporary file named by ListTemp; a file already gone is not an error.
	RemoveTemp(ctx context.Context, name string) error
}

// AsTempCollector finds the TempCollector capability of s or of any store it wraps.
func AsTempCollector(s Store) (TempCollector, bool) { return find[TempCollector](s) }

// ValidateTempName checks a TempFile name: a valid key but for its last element, which starts with
// TempPrefix (and so can never be an object's key).
func ValidateTempName(name string) error {
	dir, base := path.Split(name)
	if !strings.HasPrefix(base, TempPrefix) || len(base) == len(TempPrefix) || strings.ContainsAny(base, "\\\x00") {
		return fmt.Errorf("%w: %q is not a temporary file name", ErrInvalidKey, name)
	}
	if dir != "" {
		if err := ValidateKey(strings.TrimSuffix(dir, "/")); err != nil {
			return err
		}
	}
	return nil
}

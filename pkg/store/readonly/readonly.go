// Package readonly wraps a store so that commands which must not change a repository (list,
// verify, restore, report) cannot, whatever bug lies above: Put and Delete fail with ErrReadOnly.
package readonly

import (
	"context"
	"fmt"
	"io"

	"github.com/cfbackup/cfbackup/pkg/store"
)

// Store refuses writes and passes reads through.
type Store struct{ inner store.Store }

var _ store.Store = (*Store)(nil)

// New wraps s.
func New(s store.Store) *Store { return &Store{inner: s} }

// Unwrap returns the wrapped store.
func (s *Store) Unwrap() store.Store { return s.inner }

// Put always fails with ErrReadOnly and does not read r.
func (s *Store) Put(_ context.Context, key string, _ io.Reader, _ store.PutOptions) error {
	return fmt.Errorf("put %s: %w", key, store.ErrReadOnly)
}

// Delete always fails with ErrReadOnly.
func (s *Store) Delete(_ context.Context, key string) error {
	return fmt.Errorf("delete %s: %w", key, store.ErrReadOnly)
}

// Open delegates.
func (s *Store) Open(ctx context.Context, key string, offset, length int64) (io.ReadCloser, error) {
	return s.inner.Open(ctx, key, offset, length)
}

// Stat delegates.
func (s *Store) Stat(ctx context.Context, key string) (store.ObjectInfo, error) {
	return s.inner.Stat(ctx, key)
}

// List delegates.
func (s *Store) List(ctx context.Context, prefix string, fn func(store.ObjectInfo) error) error {
	return s.inner.List(ctx, prefix, fn)
}

// Location is the wrapped store's.
func (s *Store) Location() string { return s.inner.Location() }

// ListTemp delegates to the wrapped store's TempCollector, if any (none: nothing to list).
func (s *Store) ListTemp(ctx context.Context, fn func(store.TempFile) error) error {
	if tc, ok := store.AsTempCollector(s.inner); ok {
		return tc.ListTemp(ctx, fn)
	}
	return nil
}

// RemoveTemp always fails with ErrReadOnly: the capability found beneath must not bypass the guard.
func (s *Store) RemoveTemp(_ context.Context, name string) error {
	return fmt.Errorf("remove temp %s: %w", name, store.ErrReadOnly)
}

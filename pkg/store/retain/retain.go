// Package retain wraps a store whose bucket has S3 Object Lock so that every object written through
// it gets a retention period (init --object-lock-retention): from then on the store itself refuses
// to delete or overwrite it until the period ends, whoever asks. Lock objects, prune's marks and
// resume journals are exempt: they must be deleted when their holder is done.
package retain

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/cfbackup/cfbackup/pkg/layout"
	"github.com/cfbackup/cfbackup/pkg/store"
)

// Exempt lists key prefixes written without retention (short-lived bookkeeping).
var Exempt = layout.Bookkeeping()

// Store sets retention on every Put of the store it wraps.
type Store struct {
	inner  store.Store
	locker store.ObjectLocker
	mode   string
	period time.Duration
	now    func() time.Time
}

var _ store.Store = (*Store)(nil)

// New wraps s; it fails when s has no Object Lock capability.
func New(s store.Store, mode string, period time.Duration, now func() time.Time) (*Store, error) {
	lk, ok := store.AsObjectLocker(s)
	if !ok {
		return nil, fmt.Errorf("%s has no S3 Object Lock: the repository's config.json asks for object_lock retention", s.Location())
	}
	if now == nil {
		now = time.Now
	}
	return &Store{inner: s, locker: lk, mode: strings.ToUpper(mode), period: period, now: now}, nil
}

// Unwrap returns the wrapped store.
func (s *Store) Unwrap() store.Store { return s.inner }

// Put stores the object, then sets its retention; an object whose retention could not be set is an
// error (fail closed: the caller must not believe it is protected).
func (s *Store) Put(ctx context.Context, key string, r io.Reader, opts store.PutOptions) error {
	if err := s.inner.Put(ctx, key, r, opts); err != nil {
		return err
	}
	for _, p := range Exempt {
		if strings.HasPrefix(key, p) {
			return nil
		}
	}
	if err := s.locker.SetRetention(ctx, key, s.mode, s.now().Add(s.period)); err != nil {
		return fmt.Errorf("%s stored, but setting its Object Lock retention failed: %w", key, err)
	}
	return nil
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

// Delete removes every version of key (a plain DELETE in a versioned bucket would only hide the bytes
// behind a delete marker, where prune could never find them again); the store refuses while the
// retention lasts.
func (s *Store) Delete(ctx context.Context, key string) error {
	return s.locker.DeleteVersions(ctx, key)
}

// Location is the wrapped store's.
func (s *Store) Location() string { return s.inner.Location() }

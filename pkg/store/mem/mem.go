// Package mem is an in-memory store for fast unit tests of code above the store layer. It honours
// the whole store contract (including atomic conditional create) so tests written against it also
// hold for the real stores; it is not bounded in memory and is not meant for production data.
package mem

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/cfbackup/cfbackup/pkg/store"
)

type object struct {
	data    []byte
	modTime time.Time
}

// Store is a map of immutable byte slices guarded by a mutex.
type Store struct {
	mu   sync.RWMutex
	objs map[string]object
	now  func() time.Time
}

var _ store.Store = (*Store)(nil)

// New returns an empty store.
func New() *Store { return &Store{objs: map[string]object{}, now: time.Now} }

// Location identifies the store in messages.
func (s *Store) Location() string { return "mem://" }

// Put reads r fully, then publishes the object under the lock so conditional creates are atomic.
func (s *Store) Put(ctx context.Context, key string, r io.Reader, opts store.PutOptions) error {
	if err := store.ValidateKey(key); err != nil {
		return err
	}
	var buf bytes.Buffer
	if _, err := io.Copy(&buf, store.ContextReader(ctx, r)); err != nil {
		return fmt.Errorf("put %s: %w", key, err)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.objs[key]; ok && opts.IfNotExists {
		return fmt.Errorf("put %s: %w", key, store.ErrExists)
	}
	s.objs[key] = object{data: slices.Clip(buf.Bytes()), modTime: s.now()}
	return nil
}

// Open returns a reader over a range of the object.
func (s *Store) Open(ctx context.Context, key string, offset, length int64) (io.ReadCloser, error) {
	if err := store.ValidateKey(key); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if offset < 0 {
		return nil, fmt.Errorf("open %s: negative offset %d", key, offset)
	}
	s.mu.RLock()
	o, ok := s.objs[key]
	s.mu.RUnlock()
	if !ok {
		return nil, fmt.Errorf("open %s: %w", key, store.ErrNotFound)
	}
	d := o.data
	if offset > int64(len(d)) {
		offset = int64(len(d))
	}
	d = d[offset:]
	if length >= 0 && length < int64(len(d)) {
		d = d[:length]
	}
	return io.NopCloser(bytes.NewReader(d)), nil
}

// Stat reports an object's size and time of Put.
func (s *Store) Stat(ctx context.Context, key string) (store.ObjectInfo, error) {
	if err := store.ValidateKey(key); err != nil {
		return store.ObjectInfo{}, err
	}
	if err := ctx.Err(); err != nil {
		return store.ObjectInfo{}, err
	}
	s.mu.RLock()
	o, ok := s.objs[key]
	s.mu.RUnlock()
	if !ok {
		return store.ObjectInfo{}, fmt.Errorf("stat %s: %w", key, store.ErrNotFound)
	}
	return store.ObjectInfo{Key: key, Size: int64(len(o.data)), ModTime: o.modTime}, nil
}

// List calls fn in key order on a snapshot taken at the start, so fn may call back into the store.
func (s *Store) List(ctx context.Context, prefix string, fn func(store.ObjectInfo) error) error {
	if err := store.ValidatePrefix(prefix); err != nil {
		return err
	}
	s.mu.RLock()
	var infos []store.ObjectInfo
	for k, o := range s.objs {
		if strings.HasPrefix(k, prefix) {
			infos = append(infos, store.ObjectInfo{Key: k, Size: int64(len(o.data)), ModTime: o.modTime})
		}
	}
	s.mu.RUnlock()
	slices.SortFunc(infos, func(a, b store.ObjectInfo) int { return strings.Compare(a.Key, b.Key) })
	for _, info := range infos {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := fn(info); err != nil {
			return err
		}
	}
	return nil
}

// Delete removes an object.
func (s *Store) Delete(ctx context.Context, key string) error {
	if err := store.ValidateKey(key); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.objs[key]; !ok {
		return fmt.Errorf("delete %s: %w", key, store.ErrNotFound)
	}
	delete(s.objs, key)
	return nil
}

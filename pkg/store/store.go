// Package store is the one narrow door through which cfbackup reads and writes a repository.
//
// Everything the repository holds (config, segments, manifests, indexes, holds, locks, audit records)
// is an immutable object addressed by a slash-separated key. Keeping the interface this small lets the
// same engine and the same conformance suite (storetest) run over a local directory, any S3-compatible
// server, and decorators (retry, read-only, fault injection) stacked in any order.
//
// Contract every implementation must honour:
//   - Put streams r to key without knowing its size in advance and without holding the whole object in
//     memory or on local disk. The object becomes visible only when Put returns nil; a failed or
//     cancelled Put leaves no object (or, on S3, at most an aborted multipart upload) under key.
//   - With PutOptions.IfNotExists, Put fails with an error matching ErrExists when key already exists,
//     atomically: of two concurrent creators exactly one succeeds. A Put that retries after an attempt
//     of its own whose answer was lost, and then finds the key holding exactly the bytes it sent,
//     succeeds: that object is its own create (the S3 store and the retry decorator check this).
//   - Open returns bytes [offset, offset+length) of the object; length < 0 means to the end. A missing
//     key is an error matching ErrNotFound. A stream may fail mid-way (a cut connection); the retry
//     decorator resumes it, so a short read is never passed off as the whole object.
//   - Stat and Delete report a missing key with ErrNotFound.
//   - List calls fn for every object whose key starts with prefix, in lexical key order.
//   - Keys are relative ("snapshots/2026-…json"), never start with "/" and never contain "..".
package store

import (
	"context"
	"errors"
	"io"
	"time"
)

// Sentinel errors; implementations wrap them with %w so callers can branch with errors.Is.
var (
	// ErrNotFound: the key does not exist.
	ErrNotFound = errors.New("object not found")
	// ErrExists: a conditional create found the key already there.
	ErrExists = errors.New("object already exists")
	// ErrReadOnly: a mutating call was made through a read-only store.
	ErrReadOnly = errors.New("store is read-only")
)

// ObjectInfo describes one stored object.
type ObjectInfo struct {
	Key     string
	Size    int64
	ModTime time.Time
}

// PutOptions tunes one Put.
type PutOptions struct {
	// IfNotExists makes the Put a conditional create (S3 If-None-Match: *, local O_EXCL/link):
	// it fails with ErrExists instead of replacing an existing object.
	IfNotExists bool
	// StorageClass, when set, is the S3 storage class of the new object (CheckStorageClass); stores
	// without classes (local, memory) ignore it. Only segments are written with one.
	StorageClass string
}

// Store is a flat key space of immutable objects. See the package comment for the contract.
type Store interface {
	Put(ctx context.Context, key string, r io.Reader, opts PutOptions) error
	Open(ctx context.Context, key string, offset, length int64) (io.ReadCloser, error)
	Stat(ctx context.Context, key string) (ObjectInfo, error)
	List(ctx context.Context, prefix string, fn func(ObjectInfo) error) error
	Delete(ctx context.Context, key string) error
	// Location is a human-readable, secret-free description ("/srv/repo", "s3://bucket/prefix").
	Location() string
}

package store

import (
	"context"
	"errors"
	"time"
)

// ErrObjectLocked: the store refused to delete or overwrite an object under S3 Object Lock (a legal
// hold or an unexpired retention). It is a definite answer, never retried.
var ErrObjectLocked = errors.New("object is locked (S3 Object Lock)")

// Object Lock retention modes.
const (
	RetentionGovernance = "GOVERNANCE"
	RetentionCompliance = "COMPLIANCE"
)

// ObjectLocker is the optional S3 Object Lock capability of a store, found by type assertion
// (AsObjectLocker). It works on the current version of each key.
type ObjectLocker interface {
	// ObjectLockEnabled reports whether the bucket was created with Object Lock.
	ObjectLockEnabled(ctx context.Context) (bool, error)
	// SetLegalHold turns the legal hold of key on or off.
	SetLegalHold(ctx context.Context, key string, on bool) error
	// LegalHold reports whether key has a legal hold.
	LegalHold(ctx context.Context, key string) (bool, error)
	// SetRetention sets (or extends) key's retention; a store refuses to shorten COMPLIANCE retention.
	SetRetention(ctx context.Context, key, mode string, until time.Time) error
	// Retention reports key's retention mode and date ("" and zero when none).
	Retention(ctx context.Context, key string) (mode string, until time.Time, err error)
	// DeleteVersions deletes every version of key (and its delete markers), so the bytes are really
	// gone; a locked version fails with an error matching ErrObjectLocked.
	DeleteVersions(ctx context.Context, key string) error
}

// Unwrapper is implemented by decorators (retry, read-only, …) so capabilities beneath them are found.
type Unwrapper interface{ Unwrap() Store }

// AsObjectLocker finds the Object Lock capability of s or of any store it wraps.
func AsObjectLocker(s Store) (ObjectLocker, bool) { return find[ObjectLocker](s) }

// find returns the first of s and the stores it wraps that implements T.
func find[T any](s Store) (T, bool) {
	for s != nil {
		if t, ok := s.(T); ok {
			return t, true
		}
		u, ok := s.(Unwrapper)
		if !ok {
			break
		}
		s = u.Unwrap()
	}
	var zero T
	return zero, false
}

// UploadBufferer is implemented by stores that hold uploads in memory while they send them (the S3
// store's part buffers).
type UploadBufferer interface {
	// UploadBufferBytes is the most memory the store's upload buffers take.
	UploadBufferBytes() int64
}

// UploadBufferBytes is the memory s (or a store it wraps) takes for uploads in flight; 0 for stores
// that write through (local, memory). A process that sets a soft memory limit adds it, or the live
// heap sits at the limit and GC runs back to back.
func UploadBufferBytes(s Store) int64 {
	if b, ok := find[UploadBufferer](s); ok {
		return b.UploadBufferBytes()
	}
	return 0
}

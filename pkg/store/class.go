package store

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/cfbackup/cfbackup/pkg/errclass"
)

// Storage classes (S3's x-amz-storage-class values). Only segments are ever written to or moved into
// a class other than the bucket's default: manifests, config.json, locks, holds, marks, indexes and
// the audit trail are read on every run and must stay in the hot class (docs/STORAGE_CLASSES.md).
const (
	ClassStandard           = "STANDARD"
	ClassStandardIA         = "STANDARD_IA"
	ClassOneZoneIA          = "ONEZONE_IA"
	ClassIntelligentTiering = "INTELLIGENT_TIERING"
	ClassGlacierIR          = "GLACIER_IR"
	ClassGlacier            = "GLACIER"
	ClassDeepArchive        = "DEEP_ARCHIVE"
)

// S3Classes are the classes cfbackup accepts for AWS S3 and other S3-compatible stores.
var S3Classes = []string{ClassStandard, ClassStandardIA, ClassOneZoneIA, ClassIntelligentTiering, ClassGlacierIR, ClassGlacier, ClassDeepArchive}

// R2Classes are the classes Cloudflare R2 has (Standard and Infrequent Access).
var R2Classes = []string{ClassStandard, ClassStandardIA}

var (
	// ErrStorageClass: a storage class name this store does not have; the message lists the valid ones.
	ErrStorageClass = errclass.New(errclass.Usage, "unknown storage class")
	// ErrArchived: the object is in an archive class (GLACIER, DEEP_ARCHIVE) and must be restored
	// (RestoreObject) before it can be read; nothing was read. It is a definite answer, never retried.
	ErrArchived = errclass.New(errclass.Refused, "object is in an archive storage class and must be restored before it can be read")
	// ErrTierRefused: the store cannot move this object to another class in place (Object Lock, a
	// store without classes); nothing was changed.
	ErrTierRefused = errclass.New(errclass.Refused, "storage class change refused")
)

// CheckStorageClass normalises class (upper case, "-" as "_") and checks it is one the store has:
// R2Classes for Cloudflare R2, S3Classes otherwise. "" (the bucket's default) is always valid.
func CheckStorageClass(class string, r2 bool) (string, error) {
	c := strings.ToUpper(strings.ReplaceAll(strings.TrimSpace(class), "-", "_"))
	if c == "" {
		return "", nil
	}
	valid, where := S3Classes, "S3"
	if r2 {
		valid, where = R2Classes, "R2"
	}
	if !slices.Contains(valid, c) {
		return "", fmt.Errorf("%w %q: %s accepts %s", ErrStorageClass, class, where, strings.Join(valid, ", "))
	}
	return c, nil
}

// IsArchiveClass reports whether objects in class need a restore request before a GET succeeds.
func IsArchiveClass(class string) bool { return class == ClassGlacier || class == ClassDeepArchive }

// Tierer is the optional capability of a store whose objects have storage classes (S3, R2), found
// through decorators with AsTierer. The local directory and memory stores have none: a storage class
// given for them is ignored.
type Tierer interface {
	// SetStorageClass moves key to class with a server-side copy onto itself (no bytes pass through
	// cfbackup); the copy also records the class in the object's metadata, for stores that keep
	// no classes of their own.
	SetStorageClass(ctx context.Context, key, class string) error
	// StorageClass reports key's class as the server reports it ("STANDARD" when it reports none) and
	// the class cfbackup last moved it to ("" when never).
	StorageClass(ctx context.Context, key string) (server, recorded string, err error)
}

// AsTierer finds the storage class capability of s or of any store it wraps.
func AsTierer(s Store) (Tierer, bool) { return find[Tierer](s) }

package store

import (
	"context"
	"errors"
	"io"
)

// ErrChanged: a read pinned to one version of an object found another version there (the object was
// replaced between two requests of one read). Objects are immutable, so this is never retried: the
// caller sees it instead of a stream spliced from two different objects.
var ErrChanged = errors.New("object changed while it was being read")

// PinnedOpener is implemented by stores that can pin the requests of one read to one version of an
// object (S3: the ETag of the first response, sent back with If-Match), so a read resumed after a cut
// connection continues the same bytes it started.
type PinnedOpener interface {
	// OpenPinned is Open that also returns the version it read; with version != "" it fails with an
	// error matching ErrChanged unless the object still has that version.
	OpenPinned(ctx context.Context, key string, offset, length int64, version string) (rc io.ReadCloser, v string, err error)
}

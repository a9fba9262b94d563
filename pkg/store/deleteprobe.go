package store

import "context"

// DeleteProber is implemented by stores whose delete permission depends on credentials (S3): 'doctor
// --role' asks whether this host may delete without deleting anything, by deleting a key that does
// not exist. Store.Delete cannot ask it: it answers ErrNotFound for a missing key before asking the
// server.
type DeleteProber interface {
	// ProbeDelete sends a delete of key, which the caller made sure does not exist: nil when the
	// credentials may delete there, the server's refusal (AccessDenied) otherwise.
	ProbeDelete(ctx context.Context, key string) error
}

// AsDeleteProber finds the DeleteProber of s or of a store it wraps.
func AsDeleteProber(s Store) (DeleteProber, bool) { return find[DeleteProber](s) }
